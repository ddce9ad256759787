//go:build !asan

package hardened

import (
	"errors"
	"sync"
	"sync/atomic"
)

// This file is the per-P caches: each P's stock of free slots per class,
// the refill from the central list (popSlot), the borrowing of a slot
// from a larger class (spill), and the flush back (pushSlot).

// cache is one P's stock of free slots per class: an array, not an in-band
// list, so a write after free can never redirect the allocator.
type cache struct {
	shared bool       // the spare cache (and all under the harness's Cache (ctl.Extra)): locked, not pinned
	mu     sync.Mutex // used only under -race and for the spare cache
	n      [numClasses]uint8
	free   [numClasses][cacheCap]uint32
	// allocs and frees count each class's allocations and frees and
	// their requested bytes in one word each (acct), so that an
	// operation updates one counter, not two (the release pair at
	// 16-256 B is 5-7% faster so). fold moves both words into the wide
	// totals before a field can overflow.
	allocs, frees         [numClasses]acct
	allocsWide, freesWide [numClasses]int64
	// requested is the requested bytes of live blocks outside the acct
	// words: large and sampled blocks, Realloc in place, and every fold.
	requested int64
	// foldGen is odd while a fold runs (stats reads other Ps' counters
	// without their Ps: it retries while a fold is under way).
	foldGen atomic.Uint32
	// tick counts down the allocations until the next sampled one
	// (Options.SampleRate; sample.go); rng draws the next interval.
	tick      int64
	rng       uint64
	cacheHard // the hardening layer's per-P state (empty in release builds)
	_         [64]byte
}

// allCaches returns every per-P cache and the spare one.
func (a *Allocator) allCaches() []*cache {
	return a.caches[:len(a.caches)+1] // New put the spare after them
}

// chosen is the per-P cache the harness's Cache (ctl.Extra) picks for this operation.
func (a *Allocator) chosen() *cache { return a.caches[uint(a.x.Cache())%uint(len(a.caches))] }

// pop takes a free slot of class c from the cache (pinned or locked),
// counting an n-byte allocation; false if it has none, or if a sample is
// due or the class's acct word must fold first (the general path does
// both; pop and push are inlined, and a call would not be).
func (pc *cache) pop(c, n int) (uint32, bool) {
	k := pc.n[c]
	pc.tick--
	w := pc.allocs[c]
	if k == 0 || pc.tick <= 0 || w&acctFull != 0 {
		return 0, false
	}
	k--
	pc.n[c] = k
	pc.allocs[c] = w.add(n)
	return pc.free[c][k], true
}

// push puts a freed size-byte slot of class c on the cache (pinned or
// locked) if it holds fewer than max, counting the free; false if it is
// full, or the class's acct word must fold first.
func (pc *cache) push(c int, off uint32, size int, max uint8) bool {
	k := pc.n[c]
	w := pc.frees[c]
	if k >= max || w&acctFull != 0 {
		return false
	}
	pc.free[c][k] = off
	pc.n[c] = k + 1
	pc.frees[c] = w.add(size)
	return true
}

// noteAlloc counts an n-byte allocation of class c on this cache's P
// (pinned or locked); Stats sums the caches.
func (pc *cache) noteAlloc(c, n int) {
	w := pc.allocs[c].add(n)
	pc.allocs[c] = w
	if w&acctFull != 0 {
		pc.fold(c)
	}
}

// noteFree counts the free of a size-byte block of class c.
func (pc *cache) noteFree(c, size int) {
	if pc.countFree(c, size) {
		pc.fold(c)
	}
}

// countFree is noteFree without the fold, which the caller makes when it
// returns true: small enough to inline into the hardened Free path
// (noteFree is not, by the cost of its call to fold).
func (pc *cache) countFree(c, size int) bool {
	w := pc.frees[c].add(size)
	pc.frees[c] = w
	return w&acctFull != 0
}

// acct is a count of operations (the low acctCountBits bits) and their
// requested bytes (the rest), since the last fold.
type acct uint64

const (
	acctCountBits = 24
	// acctFull: the count has reached half its field, or the bytes half
	// theirs; one more operation (at most maxSmall < 2^18 bytes) then
	// still fits, and the next one folds.
	acctFull = acct(1)<<(acctCountBits-1) | acct(1)<<63
)

// add is w with one more operation of n bytes.
func (w acct) add(n int) acct { return w + 1 + acct(n)<<acctCountBits }

func (w acct) count() int64 { return int64(w & (1<<acctCountBits - 1)) }
func (w acct) bytes() int64 { return int64(w >> acctCountBits) }

// fold moves class c's acct words into the wide totals (pinned or
// locked), about once in four million operations of a class.
//
//go:noinline
func (pc *cache) fold(c int) {
	pc.foldGen.Add(1)
	a, f := pc.allocs[c], pc.frees[c]
	pc.allocsWide[c] += a.count()
	pc.freesWide[c] += f.count()
	pc.requested += a.bytes() - f.bytes()
	pc.allocs[c], pc.frees[c] = 0, 0
	pc.foldGen.Add(1)
}

// counts returns class c's allocations and frees and the requested bytes
// of its live blocks, as this cache counted them.
func (pc *cache) counts(c int) (allocs, frees, requested int64) {
	a, f := pc.allocs[c], pc.frees[c]
	return pc.allocsWide[c] + a.count(), pc.freesWide[c] + f.count(), a.bytes() - f.bytes()
}

var (
	errClassFull = errors.New("size class region exhausted")
	errSampleDue = errors.New("a sample is due") // popSlot: serve this request from the sampled pool
)

// popSlot takes a free slot for an n-byte request of class c: from this
// P's cache if it has one, else a batch from the class's central list;
// when that is empty, one free slot of a slightly larger class (spill)
// before carving a new slab. It returns the class of the slot it took.
func (a *Allocator) popSlot(c int, n int) (int, uint32, uint64, error) {
	if off, seq, ok := a.popFast(c, n); ok {
		return c, off, seq, nil
	} else if seq == seqSample {
		return 0, 0, 0, errSampleDue
	}

	var batch [cacheCap]uint32
	cl := &a.classes[c]
	want := max(1, int(a.ccap[c]+1)/2)
	owner := a.owner()
	cl.mu.Lock()
	k, err := a.take(c, batch[:want], false, owner)
	if err == nil && k == 0 {
		cl.mu.Unlock()
		if d, off, seq, ok := a.spill(c, n, owner); ok {
			return d, off, seq, nil
		}
		cl.mu.Lock()
		k, err = a.take(c, batch[:want], true, owner)
	}
	if err == nil && k == 0 {
		err = a.grow(c)
		if err != nil && errors.Is(err, ErrOutOfMemory) && a.quarantineHolds() {
			// Over the limit with freed blocks waiting in quarantine:
			// release them all (their poison is verified when they are
			// handed out again) and try again.
			cl.mu.Unlock()
			a.drainQuarantine()
			cl.mu.Lock()
			k, err = a.take(c, batch[:want], true, owner)
			if err == nil && k == 0 {
				err = a.grow(c)
			}
		}
		if err == nil && k == 0 {
			k, err = a.take(c, batch[:want], true, owner)
		}
	}
	cl.mu.Unlock()
	if err != nil {
		return 0, 0, 0, err
	}

	// Keep one, stock this P's cache with the rest.
	k--
	off := batch[k]
	pc := a.pin()
	pc.noteAlloc(c, n)
	room := int(a.ccap[c]) - int(pc.n[c])
	m := min(room, k)
	if bug(bugRefillDup) && m < room {
		m++ // seeded bug: batch[k], the slot kept, is stocked too
		copy(pc.free[c][pc.n[c]:], batch[k-m+1:k+1])
	} else {
		copy(pc.free[c][pc.n[c]:], batch[k-m:k])
	}
	pc.n[c] += uint8(m)
	a.unpin(pc)
	if m < k {
		cl.mu.Lock()
		a.put(c, batch[:k-m])
		cl.mu.Unlock()
	}
	return c, off, 0, nil // hardened builds take the sequence number in armSmall
}

// Spilling: a class whose free slots have all been handed out borrows one
// free slot from the next few larger classes, at most spillRatio times
// its size, before it carves a new slab. Segregated size classes each
// hold memory up to their own high-water mark; on a workload whose
// per-class demand drifts (BenchmarkMixed: 4096 live blocks of 96 sizes,
// replaced at random), the free slots of all classes at once came to 43%
// of the live bytes. Letting neighbours share them costs a spilled block
// at most spillRatio-1 of its size in slack (which hardened builds fill
// with canary: more overflow is caught, not less), and costs time only on
// the path that would otherwise mprotect a new slab.
const (
	spillClasses = 6
	spillRatio   = 1.75
)

// spill takes one free slot for an n-byte request from a class above c,
// from this P's cache or the class's central list (preferring owner's
// slabs, as take does), without reviving a purged slab. Always-quarantined classes (thread capsules) neither
// borrow nor lend: their blocks must stay in their own class, and a
// smaller request's block in their slots would be quarantined on every
// free too, pushing their own blocks out of the queue sooner.
func (a *Allocator) spill(c, n int, owner uint16) (int, uint32, uint64, bool) {
	if a.always[c].Load() {
		return 0, 0, 0, false
	}
	for d := c + 1; d < numClasses && d <= c+spillClasses && float64(classSize[d]) <= spillRatio*float64(classSize[c]); d++ {
		if a.always[d].Load() {
			continue
		}
		if off, seq, ok := a.popFast(d, n); ok {
			return d, off, seq, true
		}
		var one [1]uint32
		cl := &a.classes[d]
		cl.mu.Lock()
		k, _ := a.take(d, one[:], false, owner)
		cl.mu.Unlock()
		if k == 1 {
			pc := a.pin()
			pc.noteAlloc(d, n)
			a.unpin(pc)
			return d, one[0], 0, true
		}
	}
	return 0, 0, 0, false
}

// pushSlot returns a free slot to this P's cache, spilling half the cache
// to the central list when it is full.
func (a *Allocator) pushSlot(c int, off uint32, size int) {
	pc := a.pin()
	if size >= 0 { // size -1: already counted as freed (hardened quarantine)
		pc.noteFree(c, size)
	}
	k := pc.n[c]
	if bug(bugDoublePush) && (off>>4)%16 == 0 && k+1 < a.ccap[c] {
		pc.free[c][k] = off // seeded bug: the slot is handed out twice
		k++
		pc.n[c] = k
	}
	if a.ccap[c] == 0 {
		a.unpin(pc)
		cl := &a.classes[c]
		cl.mu.Lock()
		a.put(c, []uint32{off})
		cl.mu.Unlock()
		return
	}
	if k < a.ccap[c] {
		pc.free[c][k] = off
		pc.n[c] = k + 1
		a.unpin(pc)
		return
	}
	var batch [cacheCap]uint32
	half := k / 2
	m := copy(batch[:], pc.free[c][k-half:k])
	pc.free[c][k-half] = off
	pc.n[c] = k - half + 1
	a.unpin(pc)
	if bug(bugFlushLoses) {
		m-- // seeded bug: the flush hands back one slot less than it took out
	}
	cl := &a.classes[c]
	cl.mu.Lock()
	a.put(c, batch[:m])
	cl.mu.Unlock()
}

// settle releases the quarantine and moves every cache's free slots to
// the central lists (harness.Settle). The allocator must be quiet: the
// per-P caches are read and emptied without their Ps.
func (a *Allocator) settle() {
	a.drainBatches()
	a.drainQuarantine()
	for _, pc := range a.allCaches() {
		pc.lockForRead()
		for c := range numClasses {
			if k := pc.n[c]; k > 0 {
				cl := &a.classes[c]
				cl.mu.Lock()
				a.put(c, pc.free[c][:k])
				cl.mu.Unlock()
				pc.n[c] = 0
			}
		}
		pc.unlockForRead()
	}
}

// countFree counts a free of a size-byte block without recycling its slot.
func (a *Allocator) countFree(c int, size int) {
	pc := a.pin()
	pc.noteFree(c, size)
	a.unpin(pc)
}
