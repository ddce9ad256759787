package hardened

import (
	"encoding/binary"
	"runtime"
	"sync/atomic"
	"unsafe"
)

// This file is where blocks are freed: Free's fast path, the general
// path and its one validator (validate). A small block dies in smallDies
// (lifecycle.go).

// Free releases b. Free(nil) is a no-op. Freeing anything but a live block
// from this allocator (again, partially, or from elsewhere) is reported and
// changes nothing.
//
// Never inlined, for the site's stack walk, as Alloc.
//
//go:noinline
//go:norace
//go:nocheckptr
func (a *Allocator) Free(b []byte) {
	p := unsafe.Pointer(unsafe.SliceData(b))
	if p == nil {
		return
	}
	// Fast path, the same in every build (release builds inline its
	// smallDies, below): a live small block with a good
	// header, freed through the start of its payload (aligned ones too),
	// is released with one compare-and-swap and dies. Anything else (and
	// everything after Close, when no slab is committed any more) takes
	// the general path, which reports.
	if off := uintptr(p) - uintptr(a.base); off < a.regionSize() {
		slot, c, soff, ok := a.locate(off)
		if ok {
			// The word as published, intact (its mirror matches: live,
			// this slot's), and the payload where it says.
			old := loadHeader(slot)
			if a.mirrored(slot, old) &&
				unsafe.Add(slot, headerSize+uintptr(old>>hdrOffShift&(1<<hdrOffBits-1))*16) == p &&
				a.releaseSlot(slot, old, stateFreeing) {
				if releaseFast {
					// Release builds: smallDies (no shadow, no
					// quarantine: pushFast) in this frame.
					pid := procPin()
					if uint(pid) < uint(len(a.pinned)) && a.pinned[pid].push(c, soff, int(old&(1<<hdrSizeBits-1)), a.ccap[c]) {
						procUnpin()
						return
					}
					procUnpin()
				}
				a.smallDies("Free", slot, c, soff, old, frame())
				return
			}
		}
	}
	a.free("Free", p)
}

// locate maps a payload pointer inside the class regions to its slot.
// ok is false when p is in no committed slot. Kept small enough to
// inline (Free's fast path calls it; the inlined call is 3% faster on the
// release pair at 16-256 B): words only (uintptr is 64 bits on every
// platform hardalloc builds for), one table, no conversions.
//
//go:norace
func (a *Allocator) locate(off uintptr) (unsafe.Pointer, int, uint32, bool) {
	// The callers pass off below regionSize, so c is a class (and a
	// bounds check stops any other).
	c := int(off >> a.shift)
	l := &a.loc[c]
	coff := off & a.regionMask
	in := coff & l.slabMask
	idx := in * l.divMul >> 32
	back := idx*l.stride - in // from off to its slot (wraps: minus the offset in the slot)
	// Beyond the committed slabs, or in a slab's unused tail: no slot.
	return unsafe.Add(a.base, off+back), c, uint32(coff + back), coff < l.committed.Load() && idx < l.slots
}

// classLoc is what locate needs of a class, in one place: a Free reads
// one line of it rather than a word of five tables. Words, all of them,
// so that locate converts nothing (and is cheap enough to inline).
type classLoc struct {
	committed atomic.Uintptr // bytes carved into slabs
	divMul    uintptr        // slot index in a slab = offset*divMul>>32
	slabMask  uintptr        // slab size - 1
	stride    uintptr        // a slot with its header
	slots     uintptr        // slots in a slab
}

// initLoc fills the tables of loc that never change.
func (a *Allocator) initLoc() {
	for c := range a.loc {
		stride := classSize[c] + headerSize
		l := &a.loc[c]
		l.slabMask, l.divMul, l.stride, l.slots = 1<<uintptr(classSlabShift[c])-1, uintptr(^uint32(0)/stride+1), uintptr(stride), uintptr(classSlots[c])
	}
}

// free validates p and releases its block. It returns false if it reported.
func (a *Allocator) free(op string, p unsafe.Pointer) bool {
	if a.closed.Load() {
		a.report(&Report{Kind: UseAfterClose, Op: op, Addr: uintptr(p), Size: -1, Class: -1,
			Detail: "the allocator was closed; its memory is gone"})
		return false
	}
	off := uintptr(p) - uintptr(a.base)
	if off >= a.regionSize() {
		if a.zeroContains(uintptr(p)) {
			return a.freeZero(op, p)
		}
		if a.sampleContains(uintptr(p)) {
			return a.freeSampled(op, p)
		}
		return a.freeLarge(op, p)
	}
	for {
		ref, r := a.validate(op, p, off, DoubleFree, "the block is already free", true)
		if r != nil {
			a.report(r)
			return false
		}
		slot, c, soff, h, old := ref.slot, ref.c, ref.soff, ref.h, ref.old
		if h.state == stateDamaged {
			// Check already reported this block's damage; this Free ends
			// its life.
			if a.retire(slot, c, h.size, old) {
				return true
			}
			continue
		}
		if h.state == stateAllocated && !a.mirrored(slot, old) {
			// The word is intact, its mirror is not: the header's second
			// word was overwritten.
			if a.retire(slot, c, h.size, old) {
				a.report(a.mirrorReport(Underflow, op, slot, c, soff, h, old,
					"the header's second word, below the block, was overwritten while the block was live (it mirrors the header word); the block is not used again"))
				return false
			}
			continue
		}
		if a.releaseSlot(slot, old, stateFreeing) {
			return a.smallDies(op, slot, c, soff, old, nil)
		}
		// Lost a race with another Free/Realloc of the same block: look again.
	}
}

// retire ends the life of a reported live block, header word old, of n
// bytes in class c: withdrawn, never reused, and counted freed. False if
// the word moved on first (another Free or Realloc of the block).
func (a *Allocator) retire(slot unsafe.Pointer, c, n int, old uint64) bool {
	if !a.withdraw(slot, old) {
		return false
	}
	asanSlotDead(slot, c)
	a.countFree(c, n)
	return true
}

// smallRef is a pointer into the class regions, located and validated:
// its slot, class and offset, and the header word as loaded and decoded.
type smallRef struct {
	slot unsafe.Pointer
	c    int
	soff uint32
	old  uint64
	h    header
}

// validate is the one classification of a pointer p (at offset off in the
// class regions) that must be the start of a live block, shared by Free
// and Realloc: in no slot, never allocated, a damaged header, withdrawn
// after a report, freed (reported as freed, with detail: DoubleFree for
// Free, UseAfterFree for Realloc), or interior. A block whose redzone
// damage Check already reported (stateDamaged) is live for Free only
// (damagedLive), which ends its life.
func (a *Allocator) validate(op string, p unsafe.Pointer, off uintptr, freed Kind, detail string, damagedLive bool) (smallRef, *Report) {
	slot, c, soff, ok := a.locate(off)
	if !ok {
		return smallRef{}, &Report{Kind: InvalidFree, Op: op, Addr: uintptr(p), Size: -1, Class: c,
			Detail: "the pointer is inside the allocator's address range but in no slot"}
	}
	old := loadHeader(slot)
	h, ok := a.decode(slot, old)
	ref := smallRef{slot: slot, c: c, soff: soff, old: old, h: h}
	pay := unsafe.Add(slot, headerSize+h.off)
	switch {
	case old == 0 && a.slabPurged(c, soff):
		// Freed, and its slab emptied and went back to the OS (headers
		// read zero again): a second Free, racing or late.
		return ref, &Report{Kind: freed, Op: op, Addr: uintptr(p), Size: -1, Class: c,
			Detail: "the pointer is in a free slot whose slab's pages went back to the OS since (" + detail + ")"}
	case old == 0:
		return ref, &Report{Kind: InvalidFree, Op: op, Addr: uintptr(p), Size: -1, Class: c,
			Detail: "the pointer is in a slot that was never allocated"}
	case !ok:
		return ref, a.headerReport(op, slot, c, old)
	case h.state == stateDamaged && damagedLive && pay == p:
		return ref, nil
	case h.state == stateWithdrawn:
		return ref, a.newReport(InvalidFree, op, p, slot, c, soff, h, "the block was withdrawn from use after an earlier report")
	case h.state != stateAllocated:
		if uintptr(p) < uintptr(pay) || uintptr(p) >= uintptr(pay)+uintptr(max(h.size, 1)) {
			return ref, a.newReport(InvalidFree, op, p, slot, c, soff, h,
				"the pointer is not the start of a block (and the block there is already free)")
		}
		return ref, a.newReport(freed, op, p, slot, c, soff, h, detail)
	case pay != p:
		return ref, a.newReport(InvalidFree, op, p, slot, c, soff, h, "the pointer is not the start of a block (an interior pointer)")
	}
	return ref, nil
}

// releaseSlot moves a slot's header from old (allocated) to state by
// compare-and-swap; false means another goroutine changed it first.
// Every Free and Realloc of a small block passes here between loading the
// header and changing it: the window racing frees must lose cleanly in,
// where the fault-injection layer's tests act (releaseInjected).
//
//go:norace
func (a *Allocator) releaseSlot(slot unsafe.Pointer, old uint64, state slotState) bool {
	if injecting {
		return releaseInjected(slot, old, state)
	}
	return atomic.CompareAndSwapUint64(hdrWord(slot), old, restate(old, state))
}

// releaseInjected is releaseSlot with the test hook and the seeded bug
// BugPlainFree.
func releaseInjected(slot unsafe.Pointer, old uint64, state slotState) bool {
	hookRelease(slot)
	if bug(bugPlainFree) {
		return releasePlain(slot, old, state)
	}
	return atomic.CompareAndSwapUint64(hdrWord(slot), old, restate(old, state))
}

// releasePlain is the seeded bug BugPlainFree: a load, a compare and a
// store where the state change must be one atomic step.
//
//go:noinline
func releasePlain(slot unsafe.Pointer, old uint64, state slotState) bool {
	if loadHeader(slot) != old {
		return false
	}
	runtime.Gosched() // widen the window the CAS closes
	storeHeader(slot, restate(old, state))
	return true
}

// mirrorReport reports the small block in slot whose header word is
// intact and whose second word is not the mirror of live, the block's
// live word (mirrorOf): an underflow below the block (in release builds
// the word ends at the payload) or a stray write, while it was live (k
// Underflow, at Free) or free (WriteAfterFree, at the Alloc taking the
// slot). Addr is the first byte that differs; Got the word's bytes from
// there, as found (read atomically: under -asan they are heap redzone).
// What the word should hold is not shown: with the header word it would
// give away the mirror key.
func (a *Allocator) mirrorReport(k Kind, op string, slot unsafe.Pointer, c int, soff uint32, h header, live uint64, detail string) *Report {
	got := atomic.LoadUint64(mirrorWord(slot))
	var gb, db [8]byte
	binary.NativeEndian.PutUint64(gb[:], got)
	binary.NativeEndian.PutUint64(db[:], got^a.mirrorOf(slot, live))
	first := 0
	for first < 7 && db[first] == 0 {
		first++
	}
	r := a.newReport(k, op, unsafe.Add(unsafe.Pointer(mirrorWord(slot)), first), slot, c, soff, h, detail)
	r.Got = gb[first:]
	return r
}

// newReport builds a report about the small block in slot.
func (a *Allocator) newReport(k Kind, op string, addr, slot unsafe.Pointer, c int, soff uint32, h header, detail string) *Report {
	blk := uintptr(slot) + headerSize + h.off
	r := &Report{Kind: k, Op: op, Addr: uintptr(addr), Block: blk, Size: h.size, Class: c,
		Offset: int(uintptr(addr) - blk), Detail: detail}
	a.fillSites(r, c, soff)
	return r
}
