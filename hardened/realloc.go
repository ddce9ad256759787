package hardened

import (
	"sync/atomic"
	"unsafe"
)

// This file is resizing: Realloc and ReallocAligned, in place where the
// slot allows (release builds; the hardening layer's inPlace always
// moves), and UsableSize.

// Realloc resizes b to n bytes, keeping min(len(b), n) of its bytes, and
// returns the new slice (possibly at the same address), aligned as Alloc
// aligns (Options.MinAlign). Realloc(nil, n) allocates. On error b is
// still valid and unchanged.
func (a *Allocator) Realloc(b []byte, n int) ([]byte, error) {
	return a.realloc("Realloc", b, n, 0)
}

// ReallocAligned is Realloc for a block that must stay aligned to align
// (a power of two no larger than MaxAlign), as AllocAligned's are: it
// resizes in place when b's address already has the alignment, and moves
// the bytes into a new aligned block otherwise.
func (a *Allocator) ReallocAligned(b []byte, n, align int) ([]byte, error) {
	if !validAlign(align) {
		return nil, &OpError{Op: "ReallocAligned", Size: n, Align: align, Err: ErrAlignment}
	}
	if uintptr(align) <= a.minAlign {
		align = 0
	}
	return a.realloc("ReallocAligned", b, n, align)
}

func (a *Allocator) realloc(op string, b []byte, n, align int) ([]byte, error) {
	p := unsafe.Pointer(unsafe.SliceData(b))
	if p == nil {
		return a.alloc(op, n, align)
	}
	if n < 0 || n > maxAllocSize {
		return nil, &OpError{Op: op, Size: n, Align: align, Err: ErrInvalidSize}
	}
	if a.closed.Load() {
		return nil, &OpError{Op: op, Size: n, Align: align, Err: ErrClosed}
	}
	size, err := a.liveSize(op, p)
	if err != nil {
		return nil, err
	}
	if uintptr(p)&(uintptr(max(align, 1))-1) == 0 {
		if nb, ok := a.inPlace(p, size, n); ok {
			return nb, nil
		}
	}
	nb, err := a.alloc(op, n, align)
	if err != nil {
		return nil, err
	}
	keep := min(len(b), size, n)
	if bug(bugReallocShort) && keep > 0 {
		keep-- // seeded bug
	}
	copy(nb, unsafe.Slice((*byte)(p), keep))
	// If the old block changed state under us (a concurrent Free), free
	// reports it; the caller keeps the new block either way.
	a.free(op, p)
	return nb, nil
}

// UsableSize returns how far b can grow in place: the size Realloc can
// resize it to without moving it (at least len(b)). Release builds resize
// a small block within its slot; hardened builds always move a block on
// Realloc (a moved block catches stale pointers, and canaries never move
// under a Check), so there it is len(b). A b that is not a live block is
// reported, as Realloc would report it.
func (a *Allocator) UsableSize(b []byte) (int, error) {
	p := unsafe.Pointer(unsafe.SliceData(b))
	if p == nil {
		return 0, nil
	}
	if a.closed.Load() {
		return 0, &OpError{Op: "UsableSize", Err: ErrClosed}
	}
	size, err := a.liveSize("UsableSize", p)
	if err != nil {
		return size, err
	}
	return a.usable(p, size), nil
}

// slotRoom is how far the live size-byte block at p can grow in place:
// to its slot's end if it is small, not at all if it is large (large
// blocks move on Realloc).
//
//lint:ignore U1000 release builds' Realloc (harden0.go)
func (a *Allocator) slotRoom(p unsafe.Pointer, size int) int {
	off := uintptr(p) - uintptr(a.base)
	if off >= a.regionSize() {
		return size
	}
	slot, c, _, _ := a.locate(off)
	return int(uintptr(classSize[c]) - (uintptr(p) - uintptr(slot) - headerSize))
}

// liveSize validates p as a live block's start and returns its size. On a
// bad pointer it reports and returns the report as an *Error.
func (a *Allocator) liveSize(op string, p unsafe.Pointer) (int, error) {
	off := uintptr(p) - uintptr(a.base)
	if off >= a.regionSize() {
		if a.zeroContains(uintptr(p)) {
			return a.zeroSize(op, p)
		}
		if a.sampleContains(uintptr(p)) {
			return a.sampleSize(op, p)
		}
		return a.largeSize(op, p)
	}
	ref, got := a.validate(op, p, off, UseAfterFree, op+" of a block that is already free", false)
	if got == nil {
		return ref.h.size, nil
	}
	a.report(got)
	return 0, &Error{Report: got}
}

// resizeInPlace resizes the live size-byte small block at p to n bytes
// within its slot when n still fits, updating the header by
// compare-and-swap (release builds; hardened and -asan ones always move,
// so no shadow changes here).
//
//lint:ignore U1000 release builds' Realloc (harden0.go)
func (a *Allocator) resizeInPlace(p unsafe.Pointer, size, n int) ([]byte, bool) {
	if n == size {
		return unsafe.Slice((*byte)(p), n), true
	}
	off := uintptr(p) - uintptr(a.base)
	if off >= a.regionSize() || n > maxSmall {
		return nil, false
	}
	slot, c, _, _ := a.locate(off)
	old := loadHeader(slot)
	h, ok := a.decode(slot, old)
	if !ok || h.state != stateAllocated {
		return nil, false
	}
	if headerSize+h.off+uintptr(n) > uintptr(classSize[c])+headerSize {
		return nil, false
	}
	// Shrinking far is better served by a smaller class.
	if c > 0 && uintptr(n)+h.off <= uintptr(classSize[c-1])/2 {
		return nil, false
	}
	nh := h
	nh.size = n
	// Through busy, so that the word and its mirror change together: a
	// Free racing this Realloc sees a block in use, never an allocated
	// word whose mirror disagrees (which it would report as damage).
	if !atomic.CompareAndSwapUint64(hdrWord(slot), old, restate(old, stateBusy)) {
		return nil, false
	}
	a.publishLive(slot, a.encode(slot, nh))
	b := unsafe.Slice((*byte)(p), n)
	if n > size {
		clear(b[size:])
	}
	pc := a.pin()
	pc.requested += int64(n - size)
	a.unpin(pc)
	return b, true
}
