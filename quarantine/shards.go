//go:build !asan

package quarantine

import "sync/atomic"

// Shards is a quarantine split into shards that share one byte budget,
// one shard per CPU (P) of the caller. A block is pushed into the shard
// of the P that freed it, and the blocks a push evicts come from that
// same shard while it holds about as much as any other: in a steady
// state every P recycles the blocks it freed itself. With one shared
// quarantine, blocks freed on one P were evicted, verified and reused on
// another, so the slots of a slab ended up owned by different CPUs and
// their cache lines bounced between them (two header CASes were 42% of a
// parallel hardened Alloc+Free). A program that frees on one P only
// still gets the whole budget: shards are not given a fixed share.
//
// After PushAll returns, the budgeted bytes of all shards together are
// within the budget, unless other pushes are under way at that moment.
// Always classes keep their own FIFO, AlwaysDepth deep, in every shard.
type Shards struct {
	shards []*Quarantine
	held   []atomic.Int64 // budgeted bytes per shard, mirrored for lock-free reads
	budget int64
	bytes  atomic.Int64 // budgeted bytes in all shards
}

// NewShards returns n shards sharing budget (0 or less: nothing but the
// Always classes is held); seed drives the random placement.
func NewShards(n, classes int, budget int64, seed uint64) *Shards {
	s := &Shards{shards: make([]*Quarantine, n), held: make([]atomic.Int64, n), budget: max(budget, 0)}
	for i := range s.shards {
		// Each shard may hold the whole budget; the shared count is
		// what is enforced (PushAll).
		s.shards[i] = New(classes, s.budget, shardSeed(seed, i))
	}
	return s
}

// shardSeed is shard i's placement seed.
func shardSeed(seed uint64, i int) uint64 { return seed + uint64(i)*0x9e3779b97f4a7c15 }

// SetAlways makes class c always quarantined, outside the budget.
func (s *Shards) SetAlways(c int) {
	for _, q := range s.shards {
		q.SetAlways(c)
	}
}

// PushAll quarantines items in shard i and returns the items evicted to
// bring all shards back within the budget, appended to buf[:0].
func (s *Shards) PushAll(i int, items []Item, buf []Item) []Item {
	q := s.shards[i]
	q.mu.Lock()
	before := q.bytes
	evicted := buf[:0]
	for _, it := range items {
		evicted = q.push(it, evicted)
	}
	delta := q.bytes - before
	s.held[i].Store(q.bytes)
	q.mu.Unlock()
	over := s.bytes.Add(delta) - s.budget
	for over > 0 {
		v := s.victim(i)
		if v < 0 {
			break // nothing left to evict anywhere
		}
		vq := s.shards[v]
		vq.mu.Lock()
		var freed int64
		evicted, freed = vq.evict(over, evicted)
		s.held[v].Store(vq.bytes)
		vq.mu.Unlock()
		over = s.bytes.Add(-freed) - s.budget
	}
	return evicted
}

// victim picks the shard to evict from: shard own while it holds at least
// 7/8 of what the fullest shard holds, else the fullest; -1 if all are
// empty.
func (s *Shards) victim(own int) int {
	best, most := -1, int64(0)
	for k := range s.held {
		if b := s.held[k].Load(); b > most {
			best, most = k, b
		}
	}
	if most == 0 {
		return -1
	}
	if b := s.held[own].Load(); b > 0 && b >= most-most/8 {
		return own
	}
	return best
}

// Drain removes and returns everything held in every shard.
func (s *Shards) Drain() []Item {
	var out []Item
	for i, q := range s.shards {
		d := q.Drain()
		for _, it := range d {
			if q.always[it.Class] == nil {
				s.bytes.Add(-it.Bytes)
			}
		}
		s.held[i].Store(0)
		out = append(out, d...)
	}
	return out
}

// Count returns the number of items and the budgeted bytes held.
func (s *Shards) Count() (items int, bytes int64) {
	for _, q := range s.shards {
		n, b := q.Len()
		items += n
		bytes += b
	}
	return items, bytes
}

// Reset forgets everything held, as Quarantine.Reset does, in every
// shard.
func (s *Shards) Reset(budget int64, seed uint64) {
	s.budget = max(budget, 0)
	for i, q := range s.shards {
		q.Reset(s.budget, shardSeed(seed, i))
		s.held[i].Store(0)
	}
	s.bytes.Store(0)
}

// evict removes the oldest queued items, then random-array entries,
// until at least want budgeted bytes are freed or nothing budgeted is
// left (q.mu held). It returns the evicted items appended to out and the
// bytes freed.
func (q *Quarantine) evict(want int64, out []Item) ([]Item, int64) {
	var freed int64
	for freed < want && q.bytes > 0 {
		var it Item
		if q.queue.len() > 0 {
			it = q.queue.pop()
		} else {
			it = q.takeRandom(0, -1)
		}
		q.bytes -= it.Bytes
		q.count--
		freed += it.Bytes
		out = append(out, it)
	}
	return out, freed
}

// Each calls fn for every item held in any shard.
func (s *Shards) Each(fn func(Item)) {
	for _, q := range s.shards {
		q.Each(fn)
	}
}
