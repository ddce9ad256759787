//go:build !asan

// Package quarantine holds freed blocks back from reuse, so that a write
// after free lands in poisoned memory that is checked later, and a double
// free finds the block still marked freed.
//
// Each size class has a small random array: a freed block takes a random
// place in it and the block it displaces moves to a FIFO queue shared by
// all classes (hardened_malloc's random array plus queue: reuse order is
// unpredictable, but every block waits). The queue is bounded by a byte
// budget: Push evicts the oldest queued blocks, then random-array entries,
// until the total is within budget again, so the budget is never exceeded
// once Push returns. Classes marked Always keep a FIFO of their own with
// a fixed depth, outside the budget: they are quarantined even when the
// budget is zero.
//
// NewFIFO and NewShardsFIFO make a quarantine without the random arrays:
// every block waits in the one queue, so each stays exactly as long as
// the budget allows, and a push costs less (AddressSanitizer's
// quarantine). Reuse order is then predictable, which matters against an
// attacker shaping the heap, not against a bug.
//
// Shards splits a quarantine per CPU under one shared budget, so that
// blocks are recycled on the CPU that freed them (see Shards).
//
// A Quarantine is safe for concurrent use. It stores opaque items; what
// they mean is the caller's business. The package is a leaf.
package quarantine

import (
	"sync"
	"sync/atomic"
)

// Item is a quarantined block.
type Item struct {
	Class int
	ID    uint64 // the caller's handle for the block
	Bytes int64
}

// RandomSlots is the size of each class's random array (place depends on
// it being 16).
const RandomSlots = 16

// AlwaysDepth is how many blocks an Always class holds.
const AlwaysDepth = 256

// Quarantine is a size-class quarantine with a byte budget.
type Quarantine struct {
	_      [64]byte // Shards: no line shared with a neighbouring shard
	mu     sync.Mutex
	budget int64
	bytes  int64
	count  int
	rng    uint64              // splitmix64 state: random placement that replays
	random [][RandomSlots]Item // ID 0 with Bytes 0 marks an empty place
	used   [][RandomSlots]bool
	nused  []int // used places per class
	held   int   // used places in all classes
	queue  fifo
	always []*fifo // nil unless the class is Always
	// fifoOnly: no random arrays, every budgeted item in queue (NewFIFO).
	fifoOnly bool
	// touched lists the classes pushed since New or Reset, so Reset
	// visits only those (a fuzz harness resets per exec).
	touched   []int
	isTouched []bool

	// As a shard of Shards (mu held): the budget it has reserved, and
	// its size as last published in shown, which other shards read
	// without its lock on every push that evicts; reserves and publishes
	// count the reservations and the stores to shown. On a line of their
	// own, which a push that reserves nothing and publishes nothing does
	// not write.
	_         [64]byte
	reserved  int64
	published int64
	shown     atomic.Int64
	reserves  int
	publishes int
	_         [64]byte
}

// New returns a quarantine for classes size classes with a budget in
// bytes (0 or less: nothing but the Always classes is held). seed drives
// the random placement, so runs replay.
func New(classes int, budget int64, seed uint64) *Quarantine {
	return &Quarantine{
		budget: max(budget, 0),
		rng:    seed,
		random: make([][RandomSlots]Item, classes),
		used:   make([][RandomSlots]bool, classes),
		nused:  make([]int, classes),
		always: make([]*fifo, classes),

		isTouched: make([]bool, classes),
	}
}

// NewFIFO returns a quarantine that holds its budgeted items in one
// FIFO queue, without random arrays (see the package doc).
func NewFIFO(classes int, budget int64) *Quarantine {
	q := New(classes, budget, 0)
	q.fifoOnly = true
	return q
}

// SetAlways makes class c always quarantined, outside the budget.
func (q *Quarantine) SetAlways(c int) {
	q.mu.Lock()
	if q.always[c] == nil {
		q.always[c] = new(fifo)
	}
	q.mu.Unlock()
}

// Push quarantines it and returns the items evicted to make room, oldest
// first (possibly it itself, if the budget cannot hold it), appended to
// buf: pass a small stack array's slice to avoid allocating.
func (q *Quarantine) Push(it Item, buf []Item) (evicted []Item) {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.push(it, buf[:0])
}

func (q *Quarantine) push(it Item, evicted []Item) []Item {
	q.count++
	if !q.isTouched[it.Class] {
		q.isTouched[it.Class] = true
		q.touched = append(q.touched, it.Class)
	}
	if f := q.always[it.Class]; f != nil {
		f.push(it)
		if f.len() > AlwaysDepth {
			evicted = append(evicted, f.pop())
			q.count--
		}
		return evicted
	}
	q.bytes += it.Bytes
	i := -1 // its place in its class's random array
	if q.fifoOnly {
		q.queue.push(it)
	} else {
		i = q.place()
		if q.used[it.Class][i] {
			q.queue.push(q.random[it.Class][i])
		} else {
			q.used[it.Class][i] = true
			q.nused[it.Class]++
			q.held++
		}
		q.random[it.Class][i] = it
	}
	for q.bytes > q.budget {
		var out Item
		if q.queue.len() > 0 {
			out = q.queue.pop()
		} else {
			out = q.takeRandom(it.Class, i)
		}
		q.bytes -= out.Bytes
		q.count--
		evicted = append(evicted, out)
	}
	return evicted
}

// takeRandom removes some random-array entry, preferring class c, and
// the newest item (class c, place newest; -1 for none) only when nothing
// else is held: every block gets what residency the budget allows.
func (q *Quarantine) takeRandom(c, newest int) Item {
	isNewest := newest >= 0 && q.used[c][newest]
	if q.held > 1 || !isNewest {
		for k := range len(q.random) {
			cl := (c + k) % len(q.random)
			if q.nused[cl] == 0 {
				continue
			}
			for i, u := range q.used[cl] {
				if u && !(cl == c && i == newest) {
					return q.take(cl, i)
				}
			}
		}
	}
	if isNewest {
		return q.take(c, newest)
	}
	panic("quarantine: over budget with nothing held")
}

// place draws a random place in a class's array (splitmix64: a few
// instructions, where math/rand's IntN cost more than the rest of push).
func (q *Quarantine) place() int {
	q.rng += 0x9e3779b97f4a7c15
	z := q.rng
	z = (z ^ z>>30) * 0xbf58476d1ce4e5b9
	z = (z ^ z>>27) * 0x94d049bb133111eb
	z ^= z >> 31
	return int(z >> 60) // RandomSlots == 16
}

func (q *Quarantine) take(c, i int) Item {
	q.used[c][i] = false
	q.nused[c]--
	q.held--
	return q.random[c][i]
}

// Reset forgets everything held, without returning it, and starts over
// with a new budget and seed; Always classes stay Always. It reuses q's
// memory (an allocator that is Reset per fuzz exec would otherwise make a
// new quarantine's 30 KiB of arrays garbage each time).
func (q *Quarantine) Reset(budget int64, seed uint64) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for _, c := range q.touched {
		q.used[c] = [RandomSlots]bool{}
		q.nused[c] = 0
		if f := q.always[c]; f != nil {
			f.head, f.size = 0, 0
		}
		q.isTouched[c] = false
	}
	q.touched = q.touched[:0]
	q.queue.head, q.queue.size = 0, 0
	q.held, q.bytes, q.count = 0, 0, 0
	q.budget, q.rng = max(budget, 0), seed
	q.reserved, q.published = 0, 0
	q.shown.Store(0)
}

// Drain removes and returns everything held.
func (q *Quarantine) Drain() []Item {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.drain(nil)
}

// drain is Drain appending to out (q.mu held).
func (q *Quarantine) drain(out []Item) []Item {
	for q.queue.len() > 0 {
		out = append(out, q.queue.pop())
	}
	for c := range q.random {
		for i, u := range q.used[c] {
			if u {
				out = append(out, q.take(c, i))
			}
		}
		if f := q.always[c]; f != nil {
			for f.len() > 0 {
				out = append(out, f.pop())
			}
		}
	}
	q.bytes, q.count = 0, 0
	return out
}

// Len returns the number of items and the budgeted bytes held.
func (q *Quarantine) Len() (items int, bytes int64) {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.count, q.bytes
}

// fifo is a growable ring of items.
type fifo struct {
	buf        []Item
	head, size int
}

func (f *fifo) len() int { return f.size }

// Its length is a power of two, so positions wrap with a mask.
func (f *fifo) push(it Item) {
	if f.size == len(f.buf) {
		nb := make([]Item, max(16, 2*len(f.buf)))
		for i := range f.size {
			nb[i] = f.buf[(f.head+i)&(len(f.buf)-1)]
		}
		f.buf, f.head = nb, 0
	}
	f.buf[(f.head+f.size)&(len(f.buf)-1)] = it
	f.size++
}

func (f *fifo) pop() Item {
	it := f.buf[f.head]
	f.head = (f.head + 1) & (len(f.buf) - 1)
	f.size--
	return it
}

// Each calls fn for every item held (the caller must not push or evict
// meanwhile; fn must not call back into q).
func (q *Quarantine) Each(fn func(Item)) {
	q.mu.Lock()
	defer q.mu.Unlock()
	each := func(f *fifo) {
		for i := range f.size {
			fn(f.buf[(f.head+i)&(len(f.buf)-1)])
		}
	}
	each(&q.queue)
	for _, c := range q.touched { // the others hold nothing
		if q.nused[c] > 0 {
			for i, u := range q.used[c] {
				if u {
					fn(q.random[c][i])
				}
			}
		}
		if f := q.always[c]; f != nil {
			each(f)
		}
	}
}
