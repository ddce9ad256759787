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
// The budget is shared by reservation. A shard holds at most what it has
// reserved; it reserves more from the shared count while the budget has
// room, and when it has none, it evicts its own blocks or takes another
// shard's (the reservation moves with them). Once the budget is full and
// the load even, a push therefore writes nothing another P reads: each
// shard publishes what it holds (for the others' choice of a victim) only
// when that moved by a sixty-fourth of the budget. A shared count written
// by every push, and every shard's size stored on one line, made two
// goroutines' hardened pair 1.2-1.45 times one goroutine's instead of
// 1.75-1.8 with nothing shared.
//
// After PushAll returns, the budgeted bytes of all shards together are
// within the budget, unless other pushes are under way at that moment.
// Always classes keep their own FIFO, AlwaysDepth deep, in every shard.
type Shards struct {
	shards []*Quarantine
	budget int64
	slack  int64        // how far a shard's published size may lag
	bytes  atomic.Int64 // bytes reserved by all shards
}

// NewShards returns n shards sharing budget (0 or less: nothing but the
// Always classes is held); seed drives the random placement.
func NewShards(n, classes int, budget int64, seed uint64) *Shards {
	s := &Shards{shards: make([]*Quarantine, n)}
	s.budget = max(budget, 0)
	s.slack = s.budget / 64
	for i := range s.shards {
		// Each shard may hold the whole budget; the reservations are
		// what is enforced (PushAll).
		s.shards[i] = New(classes, s.budget, shardSeed(seed, i))
	}
	return s
}

// NewShardsFIFO returns n shards sharing budget, each a FIFO quarantine
// (NewFIFO).
func NewShardsFIFO(n, classes int, budget int64) *Shards {
	s := NewShards(n, classes, budget, 0)
	for _, q := range s.shards {
		q.fifoOnly = true
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
//
// What the shard still needs to reserve is read from its state each time
// its lock is taken again, never carried across an unlock: another shard
// may take blocks from it meanwhile.
func (s *Shards) PushAll(i int, items []Item, buf []Item) []Item {
	q := s.shards[i]
	q.mu.Lock()
	evicted := buf[:0]
	for _, it := range items {
		evicted = q.push(it, evicted)
	}
	for {
		need := q.bytes - q.reserved
		if need <= 0 {
			break
		}
		if got := s.reserve(need); got > 0 {
			q.reserved += got
			q.reserves++
			continue
		}
		v := s.victim(i, q.bytes)
		if v < 0 {
			break // nothing held anywhere: then need = -q.reserved <= 0, so not reached
		}
		if v == i {
			evicted, _ = q.evict(need, evicted)
			continue
		}
		s.publish(q)
		q.mu.Unlock()
		vq := s.shards[v]
		vq.mu.Lock()
		var freed int64
		evicted, freed = vq.evict(need, evicted)
		// The reservation moves with the blocks, as far as the victim
		// has one: a victim in the middle of its own push may hold more
		// than it has reserved, and its need shrinks by the rest.
		give := min(freed, max(vq.reserved, 0))
		vq.reserved -= give
		s.publishExact(vq) // so the next victim choice does not pick it again for nothing
		vq.mu.Unlock()
		q.mu.Lock()
		q.reserved += give
	}
	s.publish(q)
	q.mu.Unlock()
	return evicted
}

// reserve takes up to want bytes of the budget's room for a shard and
// returns how many it took. A full budget is read, not written.
func (s *Shards) reserve(want int64) int64 {
	for {
		cur := s.bytes.Load()
		take := min(want, s.budget-cur)
		if take <= 0 {
			return 0
		}
		if s.bytes.CompareAndSwap(cur, cur+take) {
			return take
		}
	}
}

// publish stores q's size for other shards' victim choice (q.mu held)
// when it moved by more than the slack since it was last stored, or
// became zero (an empty shard must read as empty, or the victim choice
// would keep picking it).
func (s *Shards) publish(q *Quarantine) {
	if d := q.bytes - q.published; d > s.slack || -d > s.slack || q.bytes == 0 && q.published != 0 {
		s.publishExact(q)
	}
}

// publishExact stores q's size for other shards' victim choice (q.mu
// held).
func (s *Shards) publishExact(q *Quarantine) {
	if q.bytes != q.published {
		q.published = q.bytes
		q.shown.Store(q.bytes)
		q.publishes++
	}
}

// victim picks the shard to evict from for shard own, which holds
// ownBytes: own while it holds at least 7/8 of what the fullest shard
// holds (as published), else the fullest; -1 if all are empty.
func (s *Shards) victim(own int, ownBytes int64) int {
	best, most := own, ownBytes
	for k, q := range s.shards {
		if k == own {
			continue
		}
		if b := q.shown.Load(); b > most {
			best, most = k, b
		}
	}
	if most == 0 {
		return -1
	}
	if ownBytes > 0 && ownBytes >= most-most/8 {
		return own
	}
	return best
}

// Drain removes and returns everything held in every shard.
func (s *Shards) Drain() []Item {
	var out []Item
	for _, q := range s.shards {
		q.mu.Lock()
		out = q.drain(out)
		s.bytes.Add(-q.reserved)
		q.reserved = 0
		s.publish(q)
		q.mu.Unlock()
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
	s.slack = s.budget / 64
	for i, q := range s.shards {
		q.Reset(s.budget, shardSeed(seed, i))
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
