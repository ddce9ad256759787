//go:build !asan

package hardened

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math/bits"
)

// auditSlots checks slot conservation, for fuzz harnesses and tests: every
// slot handed out since its slab was carved (or Reset) is in exactly one
// place, as its header says: allocated (live), quarantined (in the
// quarantine or a P's batch of frees on their way there), or free (in
// exactly one of a P's cache and its class's central bitmap); a slot
// never handed out is free in the bitmap only. A slot in two places would
// be handed out twice; a slot in none is lost for good.
//
// It also checks the memory bound, what the allocator keeps mapped beyond
// its live blocks: per class, the slabs whose every slot is free are the
// ones the class counts, and at most one of them stays mapped (the others
// were purged when they emptied), so memory freed comes back to the OS
// whatever the program did; the large-block cache holds no more than its
// budget, and counts what it holds; and Stats.Mapped, which Limit
// enforces, adds up to what is mapped. Audit must not run concurrently
// with any other call.
func (a *Allocator) auditSlots() error {
	if a.closed.Load() {
		return &OpError{Op: "Audit", Err: ErrClosed}
	}
	// The free lists and queues as sorted keys, class then offset: the
	// walk below visits slots in that order and merges them in (maps cost
	// a fuzz exec more than the walk itself).
	cached, queued := &a.audit[0], &a.audit[1]
	cached.keys, queued.keys = cached.keys[:0], queued.keys[:0]
	for _, pc := range a.allCaches() {
		pc.lockForRead()
		for c0 := 0; c0 < numClasses; c0 += 8 {
			if c0+8 <= numClasses && binary.LittleEndian.Uint64(pc.n[c0:]) == 0 {
				continue // eight empty classes at a time: most are
			}
			for c := c0; c < min(c0+8, numClasses); c++ {
				for _, off := range pc.free[c][:pc.n[c]] {
					cached.keys = append(cached.keys, auditKey(c, off))
				}
			}
		}
		pc.unlockForRead()
	}
	a.quarantined(func(c int, off uint32) { queued.keys = append(queued.keys, auditKey(c, off)) })
	cached.start("in %d per-P caches, but never handed out by a refill (or outside every slab)")
	queued.start("quarantined %d times, but never handed out (or outside every slab)")
	var errs []error
	bad := func(c int, off uint32, format string, args ...any) {
		if len(errs) < 8 {
			errs = append(errs, fmt.Errorf("class %d slot %#x: %s", c, off, fmt.Sprintf(format, args...)))
		}
	}
	// Only the classes that handed out a slot since New or Reset: the
	// others' slabs are all reserve, as Reset left them (and verified
	// them), and a slot of theirs in a cache or a queue is reported below
	// as never handed out.
	var handed [numClasses]uint8
	for _, hc := range a.handedList(&handed) {
		c := int(hc)
		cl := &a.classes[c]
		cl.mu.Lock()
		stride := classSize[c] + headerSize
		empty, kept := 0, 0
		for s := range cl.slabs {
			if st := &cl.slabs[s]; !st.reserve && st.free == classSlots[c] {
				empty++
				if !st.purged && !st.damaged {
					kept++
				}
			}
		}
		if empty != cl.empty {
			bad(c, 0, "%d slabs have every slot free, the class counts %d (purges go wrong)", empty, cl.empty)
		}
		if kept > 1 {
			bad(c, 0, "%d slabs with every slot free and no damage stay mapped: one is kept, the others purged", kept)
		}
		for s := range cl.slabs {
			st := &cl.slabs[s]
			base := uint32(s) << classSlabShift[c]
			// Slots at or above the used mark (all of a purged or
			// reserve slab's) have never left the bitmap: a popcount
			// says they are all there, and a free list or queue naming
			// one is left over below. Only handed slots are looked at
			// one by one, so a pooled allocator's reserve slabs cost
			// nothing per audit.
			used := st.used
			if st.purged || st.reserve {
				used = 0
			}
			var free uint32
			for _, w := range st.bits {
				free += uint32(bits.OnesCount64(w))
			}
			if free != st.free {
				bad(c, base, "slab %d counts %d free slots, its bitmap holds %d", s, st.free, free)
			}
			// Every bit from used up to the slot count must be set: a
			// word at a time (a bit at a time was a fifth of a fuzz
			// worker's time, over every never-used slot of every slab).
			for w := used / 64; w*64 < classSlots[c]; w++ {
				lo, hi := max(used, w*64), min(classSlots[c], w*64+64)
				mask := (^uint64(0) >> (64 - (hi - lo))) << (lo - w*64)
				if m := st.bits[w] & mask; m != mask {
					i := w*64 + uint32(bits.TrailingZeros64(^st.bits[w]&mask))
					bad(c, base+i*stride, "never handed out since its slab was carved, purged or Reset, but missing from the bitmap")
					break
				}
			}
			for i := range used {
				off := base + i*stride
				inBits := st.bits[i/64]>>(i%64)&1 != 0
				k := auditKey(c, off)
				nc, nq := 0, 0
				if cached.next() <= k { // the common case, no key here, inline
					nc = cached.count(k, bad)
				}
				if queued.next() <= k {
					nq = queued.count(k, bad)
				}
				n := nc + nq
				if inBits {
					n++
				}
				v := loadHeader(a.slotAt(c, off))
				h, ok := a.decode(a.slotAt(c, off), v)
				switch {
				case v == 0: // handed out by a refill, never allocated yet
					if n != 1 {
						bad(c, off, "never allocated, but in %d free lists (cached %d, bitmap %v)", n, nc, inBits)
					}
				case !ok:
					continue // damaged: reported when found, never reused
				case (h.state == stateFree || h.state == stateFreePoisoned) && n != 1:
					bad(c, off, "free, but in %d free lists (cached %d, bitmap %v)", n, nc, inBits)
				case h.state == stateQuarantined && n != 1:
					// In the quarantine, or evicted from it to one free
					// list with its header left to its next Alloc.
					bad(c, off, "quarantined, but in %d places (cached %d, queued %d, bitmap %v)", n, nc, nq, inBits)
				case h.state == stateWithdrawn && n > 1:
					// Withdrawn while quarantined (Check found its
					// poison damaged): it may still wait in the queue,
					// or on the free list its eviction put it on, until
					// the Alloc that takes it drops it.
					bad(c, off, "withdrawn, but in %d free lists and queues", n)
				case (h.state == stateAllocated || h.state == stateDamaged) && n != 0:
					bad(c, off, "state %d, but also in %d free lists or queues", h.state, n)
				}
			}
		}
		cl.mu.Unlock()
	}
	l := &a.large
	l.mu.Lock()
	var spans int64
	for _, lb := range l.cache {
		spans += int64(lb.span)
	}
	if spans != l.cacheBytes || l.cacheBytes+l.kept > a.largeCacheBudget() {
		errs = append(errs, fmt.Errorf("large-block cache: %d blocks of %d bytes, counted as %d (+%d kept), budget %d",
			len(l.cache), spans, l.cacheBytes, l.kept, a.largeCacheBudget()))
	}
	// Stats.Mapped, which Limit enforces, is what is mapped readable:
	// every committed slab not purged, every large block's pages (live,
	// cached, kept in the quarantine, withdrawn) and the live sampled
	// pages.
	large := spans + l.kept
	for _, lb := range l.live {
		large += int64(lb.span)
	}
	for _, lb := range l.withdrawn {
		large += int64(lb.span)
	}
	l.mu.Unlock()
	if want, got := a.mappedBytes()+large, a.mapped.Load(); got != want {
		errs = append(errs, fmt.Errorf("Stats.Mapped is %d bytes; the committed slabs, large blocks and sampled pages add up to %d", got, want))
	}
	// What is left names slots never handed out (still in the bitmap:
	// now in two places) or outside every carved slab.
	cached.count(^uint64(0), bad)
	queued.count(^uint64(0), bad)
	return errors.Join(errs...)
}

// mappedBytes is what the committed, unpurged slabs of every class (as
// their purged states count them) and the live sampled pages map, for
// Audit.
func (a *Allocator) mappedBytes() int64 {
	var n int64
	for c := range numClasses {
		n += int64(a.classes[c].unpurged) * int64(slabCommit[c]) // Audit runs alone: no lock
	}
	if s := a.samp; s != nil {
		s.mu.Lock()
		for i := range s.blocks {
			if s.blocks[i].live {
				n += int64(pageSize)
			}
		}
		s.mu.Unlock()
	}
	return n
}

func auditKey(c int, off uint32) uint64 { return uint64(c)<<32 | uint64(off) }

// auditList is one of Audit's sorted key lists (a slot in a per-P cache,
// or in a quarantine), consumed in order as the walk visits slots.
type auditList struct {
	keys     []uint64
	i        int
	leftover string // the report for a key the walk never visited
}

// next returns the smallest key not yet consumed (all ones: none left).
func (l *auditList) next() uint64 {
	if l.i < len(l.keys) {
		return l.keys[l.i]
	}
	return ^uint64(0)
}

func (l *auditList) start(leftover string) {
	sortKeys(l.keys)
	l.i, l.leftover = 0, leftover
}

// sortKeys sorts k in increasing order (a quicksort, median of three,
// insertion sort below 12). Not slices.Sort: the standard library is
// instrumented under -asan, a call into ASan per load and store, and a
// fuzz exec audits thousands of keys; this file's -asan copy is not.
func sortKeys(k []uint64) {
	for len(k) > 12 {
		m, last := len(k)/2, len(k)-1
		if k[m] < k[0] {
			k[0], k[m] = k[m], k[0]
		}
		if k[last] < k[0] {
			k[0], k[last] = k[last], k[0]
		}
		if k[last] < k[m] {
			k[m], k[last] = k[last], k[m]
		}
		p := k[m]
		i, j := 0, last
		for i <= j {
			for k[i] < p {
				i++
			}
			for k[j] > p {
				j--
			}
			if i <= j {
				k[i], k[j] = k[j], k[i]
				i, j = i+1, j-1
			}
		}
		// Recurse into the smaller part and loop on the larger: the
		// stack stays logarithmic.
		if j+1 < len(k)-i {
			sortKeys(k[:j+1])
			k = k[i:]
		} else {
			sortKeys(k[i:])
			k = k[:j+1]
		}
	}
	for i := 1; i < len(k); i++ {
		for j := i; j > 0 && k[j] < k[j-1]; j-- {
			k[j], k[j-1] = k[j-1], k[j]
		}
	}
}

// count returns how many times k is in the list, after reporting every
// smaller key left in it: one the walk passed by without visiting, so a
// slot never handed out, or outside every slab.
func (l *auditList) count(k uint64, bad func(c int, off uint32, format string, args ...any)) int {
	for x := l.next(); x < k; x = l.next() {
		bad(int(x>>32), uint32(x), l.leftover, l.take(x))
	}
	return l.take(k)
}

// take consumes the run of key k at the list's head and returns its length.
func (l *auditList) take(k uint64) int {
	n := 0
	for l.i < len(l.keys) && l.keys[l.i] == k {
		l.i, n = l.i+1, n+1
	}
	return n
}
