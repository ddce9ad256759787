//go:build !asan

package hardened

import (
	"math/bits"
	"sync"

	"golang.org/x/sys/unix"
)

// central is a class's stock of free slots that are in no per-P cache,
// kept per slab as a bitmap. Refills take slots from the lowest-address
// slab that has any (jemalloc's and hardened_malloc's policy), among
// the slabs of the refilling P's cache first (take), so the highest
// slabs drain; a slab whose every slot is free here is purged
// (MADV_DONTNEED, no longer counted as mapped) once the class already
// holds one empty slab, which damps purge/refault thrash, and unless a
// free slot in it shows a write after free (purgeIntact). Purged slabs
// are reused, lowest first, before a new slab is carved. All fields are
// guarded by mu.
type slabState struct {
	free uint32   // free slots held here
	bits []uint64 // 1 = slot free here
	// owner is the cache (its index + 1) whose refills took from this
	// slab first since it was last wholly free; 0: none. Refills prefer
	// their own slabs (take), so two Ps' blocks do not share cache lines.
	owner  uint16
	purged bool
	// reserve: set by Reset on every slab. A reserve slab is invisible
	// to takes and spills and not counted in central.empty until the
	// class would grow, when the lowest one is revived instead of a new
	// slab being carved (without an mprotect; with page faults if it was
	// also purged). So a Reset allocator hands out exactly the slots a
	// new one would, whatever earlier programs left committed: fuzz
	// failures replay.
	reserve bool
	// used bounds the slots handed out since the slab was carved, purged
	// or Reset: slots at or above it have header 0, so walks stop there.
	// Lowest-first takes keep it tight.
	used uint32
	// touched bounds the slots handed out since the slab was carved or
	// Reset, purges included: -asan builds make the shadow of those, and
	// of no other, redzone again at Reset (asanClasses).
	touched uint32
	// damaged: the slab emptied but was not purged, because a free
	// slot's poison was damaged (hardened builds, keepDamaged): it stays
	// mapped, so the write after free is reported when that slot is
	// handed out again, or by Close or Reset, instead of vanishing with
	// the pages.
	damaged bool
}

// slabIndex returns the slab and slot index of a class-region offset.
func (a *Allocator) slabIndex(c int, off uint32) (slab int, idx uint32) {
	slab = int(off >> classSlabShift[c])
	in := uint64(off) & (uint64(1)<<classSlabShift[c] - 1)
	return slab, uint32(in * uint64(a.loc[c].divMul) >> 32)
}

// take moves up to len(dst) free slots into dst (cl.mu held) for the
// cache owner names (0: none), lowest slab first among the slabs that
// cache has taken from or nobody has (claiming those), else from any
// other cache's; only when no slab has free slots, and if revive, it
// revives the lowest purged or reserve slab, as a new class would carve
// its next one. It returns how many it took; 0 means the class must grow.
// Keeping each P's blocks in slabs of its own keeps two Ps from writing
// the same cache lines: hardened builds' quarantine hands a P a stream of
// different slots, and with lowest-first takes alone two Ps' slots
// interleave (a third to a half of the allocations of a two-P pair
// shared a line with the other P's block).
func (a *Allocator) take(c int, dst []uint32, revive bool, owner uint16) (int, error) {
	cl := &a.classes[c]
	stride := classSize[c] + headerSize
	n := 0
	// Slabs owner has taken from, or nobody has, first (claiming those);
	// then, rather than carve or revive a slab, any.
	for pass := 0; pass < 2 && n == 0; pass++ {
		for s := cl.lowest; s < len(cl.slabs) && n < len(dst); s++ {
			st := &cl.slabs[s]
			if st.free == 0 || st.purged || st.reserve {
				continue
			}
			if pass == 0 {
				if st.owner != owner && st.owner != 0 {
					continue
				}
				st.owner = owner
			}
			if st.free == classSlots[c] {
				cl.empty-- // an empty slab is in use again
			}
			if pass == 0 {
				n += takeBits(st, dst[n:], uint32(s)<<classSlabShift[c], stride)
			} else {
				n += takeBitsHigh(st, dst[n:], uint32(s)<<classSlabShift[c], stride)
			}
		}
	}
	if n > 0 {
		cl.advanceLowest()
		a.setHanded(c)
		return n, nil
	}
	if !revive {
		return 0, nil
	}
	for s := range cl.slabs {
		st := &cl.slabs[s]
		if st.purged || st.reserve {
			if st.purged {
				if err := a.reserve(int64(slabCommit[c])); err != nil {
					return 0, err
				}
				if err := a.unseal(a.slabMem(c, s)); err != nil {
					a.mapped.Add(-int64(slabCommit[c]))
					return 0, err
				}
			}
			if !st.reserve {
				cl.empty-- // a purged slab counted as empty; a reserve one did not
			}
			a.setFresh(c, s, st.purged) // a purged slab's pages come back zero
			if st.purged {
				cl.unpurged++
			}
			st.purged, st.reserve = false, false
			st.owner = owner
			n = takeBits(st, dst, uint32(s)<<classSlabShift[c], stride)
			a.setHanded(c)
			cl.lowest = min(cl.lowest, s)
			cl.advanceLowest()
			return n, nil
		}
	}
	return 0, nil
}

func takeBits(st *slabState, dst []uint32, base, stride uint32) int {
	n := 0
	for w := 0; w < len(st.bits) && n < len(dst); w++ {
		for st.bits[w] != 0 && n < len(dst) {
			dst[n] = st.claim(w, uint32(bits.TrailingZeros64(st.bits[w])), base, stride)
			n++
		}
	}
	st.free -= uint32(n)
	return n
}

// claim takes slot 64*w+b, whose bit is set, out of the slab's free bits
// and returns its class-region offset.
func (st *slabState) claim(w int, b, base, stride uint32) uint32 {
	st.bits[w] &^= 1 << b
	i := uint32(w)*64 + b
	st.used = max(st.used, i+1)
	st.touched = max(st.touched, i+1)
	return base + i*stride
}

// takeBitsHigh is takeBits from the top of the slab down, for a take
// from a slab another cache owns, which takes from the bottom up: their
// slots then meet only when the slab is full. Taken lowest first, the
// two caches' slots would be neighbours, and a slot's header shares a
// cache line with the end of the slot below it (strides are 16 bytes
// past a multiple of 64): two Ps on one 64 KiB pair each, in the one
// slab the class had, spent a quarter of the pair on that line (loading
// and swapping the header in Free) and ran 1.5 times as fast as one P.
func takeBitsHigh(st *slabState, dst []uint32, base, stride uint32) int {
	n := 0
	for w := len(st.bits) - 1; w >= 0 && n < len(dst); w-- {
		for st.bits[w] != 0 && n < len(dst) {
			dst[n] = st.claim(w, uint32(63-bits.LeadingZeros64(st.bits[w])), base, stride)
			n++
		}
	}
	st.free -= uint32(n)
	return n
}

// advanceLowest moves the search start past slabs with nothing to give.
func (cl *central) advanceLowest() {
	for cl.lowest < len(cl.slabs) && (cl.slabs[cl.lowest].free == 0 || cl.slabs[cl.lowest].purged || cl.slabs[cl.lowest].reserve) {
		cl.lowest++
	}
}

// put returns free slots (cl.mu held), purging slabs that become empty
// beyond the first.
func (a *Allocator) put(c int, offs []uint32) {
	cl := &a.classes[c]
	for _, off := range offs {
		s, idx := a.slabIndex(c, off)
		st := &cl.slabs[s]
		st.bits[idx/64] |= 1 << (idx % 64)
		emptied := st.free+1 == classSlots[c]
		if bug(bugPurgeSkip) {
			emptied = st.free == classSlots[c] // seeded bug: the count read before its increment
		}
		st.free++
		if s < cl.lowest {
			cl.lowest = s
		}
		if emptied {
			st.owner = 0
			cl.empty++
			if cl.empty > 1 {
				a.purgeIntact(c, s)
			}
		}
	}
}

// purgeIntact purges slab s of class c (cl.mu held) unless a free slot
// in it shows a write after free (keepDamaged), which would vanish with
// its pages: such a slab stays mapped and is marked damaged.
func (a *Allocator) purgeIntact(c, s int) {
	st := &a.classes[c].slabs[s]
	if st.damaged = a.keepDamaged(c, s, st.used); !st.damaged {
		a.purge(c, s)
	}
}

func (a *Allocator) purge(c, s int) {
	cl := &a.classes[c]
	size := uintptr(1) << classSlabShift[c]
	lo := a.classBase(c) + uintptr(s)*size
	unix.Madvise(a.mem[lo:lo+size], unix.MADV_DONTNEED) // headers read as zero: "never used"
	a.seal(a.slabMem(c, s))
	if !cl.slabs[s].purged {
		cl.unpurged--
	}
	cl.slabs[s].purged = true
	cl.slabs[s].used = 0
	a.mapped.Add(-int64(slabCommit[c]))
}

// slabCommit is the length of the prefix of each class's slab that is
// made accessible: its slots, rounded up to a page. The rest of the
// power-of-two slab (up to one slot less a byte, 12% of the 512 KiB slab of
// 64 KiB slots) stays PROT_NONE, so it costs no memory, is not counted as
// mapped, and faults if an overflow out of the last slot runs that far.
var slabCommit = func() (sc [numClasses]uintptr) {
	for c := range numClasses {
		used := uintptr(classSlots[c]) * uintptr(classSize[c]+headerSize)
		sc[c] = min(alignUp(used, pageSize), uintptr(1)<<classSlabShift[c])
	}
	return
}()

// fillAll marks all n slots of the slab free here.
func (st *slabState) fillAll(n uint32) {
	st.free = n
	for w := range st.bits {
		st.bits[w] = ^uint64(0)
	}
	if r := n % 64; r != 0 {
		st.bits[len(st.bits)-1] = 1<<r - 1
	}
}

// newSlab records a freshly carved slab with every slot free (cl.mu held).
func (cl *central) newSlab(c int) {
	n := classSlots[c]
	st := slabState{bits: make([]uint64, (n+63)/64)}
	st.fillAll(n)
	cl.slabs = append(cl.slabs, st)
	cl.unpurged++
	cl.empty++
	if len(cl.slabs)-1 < cl.lowest {
		cl.lowest = len(cl.slabs) - 1
	}
}

// setHanded marks class c as having handed out slots since Reset.
func (a *Allocator) setHanded(c int) {
	w, bit := &a.handed[c/64], uint64(1)<<(c%64)
	if w.Load()&bit == 0 {
		w.Or(bit)
	}
}

// handedList returns the classes marked by setHanded, in order, in buf. A
// list rather than an iterator: the body of a range-over-func loop is a
// closure, and the -asan copies' //go:norace does not reach closures, so
// under -asan every load and store in such a body would call into ASan.
func (a *Allocator) handedList(buf *[numClasses]uint8) []uint8 {
	n := 0
	for i := range a.handed {
		for m := a.handed[i].Load(); m != 0; m &= m - 1 {
			buf[n] = uint8(i*64 + bits.TrailingZeros64(m))
			n++
		}
	}
	return buf[:n]
}

// central holds a class's free slots that are in no per-P cache, and the
// bump pointer that carves new slabs out of the class region.
type central struct {
	mu     sync.Mutex
	slabs  []slabState // per slab carved (central.go)
	lowest int         // no slab below this has free slots to give
	empty  int         // slabs whose every slot is free here (purged or not)
	// unpurged counts the carved slabs not purged, kept at each purged
	// state change (newSlab, purge, a revival in take): Audit checks
	// Stats.Mapped against it.
	unpurged int
	_        [64]byte
}

// slabMem is the committed part of slab s of class c (slabCommit).
func (a *Allocator) slabMem(c, s int) []byte {
	lo := a.classBase(c) + uintptr(s)<<classSlabShift[c]
	return a.mem[lo : lo+slabCommit[c]]
}

// slabPurged reports whether the slab holding class c's slot soff is
// purged now (its pages given back, headers zero): validate's question
// about a zero header, an error path, so it takes the class lock.
func (a *Allocator) slabPurged(c int, soff uint32) bool {
	cl := &a.classes[c]
	cl.mu.Lock()
	defer cl.mu.Unlock()
	s, _ := a.slabIndex(c, soff)
	return s < len(cl.slabs) && cl.slabs[s].purged
}
