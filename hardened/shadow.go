package hardened

import "unsafe"

// This file is the allocator's one seam to AddressSanitizer: every place
// a block becomes live or dead, and every mapping made or dropped, calls
// one of the functions below. Without -asan they are empty (asanEnabled is
// false) and compile away; with -asan they keep ASan's shadow memory true
// for everything the allocator maps, using the shadow values of ASan's
// own heap so its reports read "heap-buffer-overflow" and
// "heap-use-after-free":
//
//	slab carved, Reset           every slot heap redzone (never allocated)
//	small block live             header, front redzone, alignment slack and
//	                             everything after the payload's last byte
//	                             to the slot's end redzone; exactly len
//	                             bytes addressable
//	small block freed            the slot's body freed (quarantine, then
//	                             the free list) until it is handed out again
//	large block live             guard pages and page slack redzone
//	large block freed, cached    freed
//	zero-size block              redzone while live, freed after Free
//	unmapped (large)             shadow cleared: the address space may be
//	                             reused by anyone
//	closed allocator             freed, and kept reserved PROT_NONE for the
//	                             last few closed allocators (keepClosed),
//	                             then cleared and unmapped
//
// The allocator's own accesses to non-addressable bytes (headers,
// canaries, poison, Reset's and Check's walks) never trip ASan: header
// words are read and written with sync/atomic or assembly, which Go's
// ASan instrumentation does not see, and package redzone's fills and
// checks, and snapshot below, are //go:norace, which turns the
// instrumentation off.

// Speed under -asan: the compiler instruments every load and store of an
// -asan build with a call into the ASan runtime, the allocator's own
// bookkeeping included, which made an Alloc+Free pair ten times Go's make
// (the runtime, which implements make, is never instrumented). The
// functions of the release Alloc and Free paths therefore carry
// //go:norace: they touch only allocator-owned state (header words
// through sync/atomic, the pinned per-P cache in pin_norace.go, lookup
// tables), which neither ASan nor the race detector has anything to say
// about. The race detector still sees the locked per-P caches of race
// builds (pin_race.go, not marked). Those that convert pointers also carry
// //go:nocheckptr (checkptr, on in every -asan build, would look each
// pointer up in Go's heap), except the small helpers that must inline
// (slotAt, locate, releaseSlot, the header's loads and stores;
// asangen.InlineHelpers): while checkptr is on, the inliner refuses every
// function marked so, and checkptr instruments an inlined body by its
// caller's pragma, so those carry none and every caller carries it
// (internal/asangen marks the generated copies by the same rule;
// TestAsanPairUninstrumented reads the -asan assembly of the pair).

// ASan's shadow values for its heap (compiler-rt asan_internal.h).
const (
	shadowRedzone = 0xfa // kAsanHeapLeftRedzoneMagic
	shadowFreed   = 0xfd // kAsanHeapFreeMagic
)

// asanSlotLive makes the n-byte payload at payOff of slot (class c) the
// only addressable bytes of the slot.
//
//go:norace
func asanSlotLive(slot unsafe.Pointer, c int, payOff uintptr, n int) {
	if !asanEnabled {
		return
	}
	shadowSlot(uintptr(slot), (headerSize+uintptr(classSize[c]))>>3, (headerSize+payOff)>>3, uintptr(n))
}

// asanSlotDead marks a freed slot's body freed. It must run before the
// slot can be handed out again.
//
//go:norace
func asanSlotDead(slot unsafe.Pointer, c int) {
	if asanEnabled {
		shadowDead(uintptr(slot)+headerSize, uintptr(classSize[c])>>3)
	}
}

// asanSlab marks a whole slab of class c, starting at class offset start,
// never allocated (the uncommitted tail included), and the slab after it
// too while it is not carved: a block that ends at its slab's end is
// followed by that slab's first byte, PROT_NONE, which a shadow of zero
// would let an overflow reach as a bare fault instead of an ASan report.
func (a *Allocator) asanSlab(c int, start uint64) {
	if asanEnabled {
		slab := uint64(1) << classSlabShift[c]
		n := slab
		if start+2*slab <= uint64(a.classRegion()) {
			n += slab // not past the class's region: the next class's slabs are its own
		}
		shadowSet(uintptr(a.slotAt(c, uint32(start))), uintptr(n), shadowRedzone)
	}
}

// asanClasses marks the slots Reset forgets redzone again: nothing is
// allocated any more. Only the slots handed out since the last Reset
// (slabState.touched, in the classes that handed any) have another
// shadow; the rest kept the redzone the carve or the last Reset gave
// them. (Marking every committed byte instead was 14% of an -asan fuzz
// worker, which Resets a pooled allocator per program.)
func (a *Allocator) asanClasses() {
	if !asanEnabled {
		return
	}
	var handed [numClasses]uint8
	for _, hc := range a.handedList(&handed) {
		c := int(hc)
		cl := &a.classes[c]
		stride := uintptr(classSize[c] + headerSize)
		for s := range cl.slabs { // Reset runs alone: no lock
			if n := cl.slabs[s].touched; n > 0 {
				shadowSet(uintptr(a.slotAt(c, uint32(s)<<classSlabShift[c])), uintptr(n)*stride, shadowRedzone)
			}
		}
	}
}

// asanLargeLive makes a large block's payload the only addressable bytes
// of its mapping (guard pages, alignment slack and page slack redzone).
func asanLargeLive(lb *largeBlock) {
	if !asanEnabled {
		return
	}
	base := uintptr(unsafe.Pointer(&lb.mem[0]))
	p := uintptr(lb.p)
	shadowSet(base, p-base, shadowRedzone)
	n := uintptr(lb.size)
	if bug(bugAsanGranule) {
		n = alignUp(n, 8) // seeded bug: the last granule whole, up to 7 bytes past the end addressable
	}
	shadowLive(p, n)
	tail := alignUp(p+uintptr(lb.size), 8)
	shadowSet(tail, base+uintptr(len(lb.mem))-tail, shadowRedzone)
}

// asanLargeDead marks a freed large block's pages freed.
func asanLargeDead(lb *largeBlock) {
	if asanEnabled {
		shadowSet(uintptr(lb.p), lb.span, shadowFreed)
	}
}

// asanUnmap clears the shadow of a mapping about to be unmapped.
func asanUnmap(mem []byte) {
	if asanEnabled && len(mem) > 0 {
		shadowSet(uintptr(unsafe.Pointer(&mem[0])), alignUp(uintptr(len(mem)), 8), 0)
	}
}

// asanZero marks a 16-byte zero-size block redzone (live) or freed.
//
//lint:ignore U1000 used by the hardening layer (harden*.go, -tags hardened)
func asanZero(p unsafe.Pointer, freed bool) {
	if !asanEnabled {
		return
	}
	v := byte(shadowRedzone)
	if freed {
		v = shadowFreed
	}
	shadowSet(uintptr(p), 16, v)
}

// snapshot copies n bytes at p, which may be poisoned for ASan (a report's
// found bytes), without instrumentation.
//
//lint:ignore U1000 used by the hardening layer (harden*.go, -tags hardened)
//go:norace
//go:noinline
func snapshot(p unsafe.Pointer, n uintptr) []byte {
	out := make([]byte, n)
	for i := range out {
		out[i] = *(*byte)(unsafe.Add(p, i))
	}
	return out
}

// asanSampled makes a sampled block's n bytes at p addressable (live) or
// freed; the rest of the sampled pool stays redzone (asanPool).
func asanSampled(p unsafe.Pointer, n int, live bool) {
	switch {
	case !asanEnabled:
	case live:
		shadowLive(uintptr(p), uintptr(n))
	default:
		shadowSet(uintptr(p), alignUp(uintptr(n), 8), shadowFreed)
	}
}

// asanPool marks a new sampled pool redzone (every byte but live blocks').
func asanPool(mem []byte) {
	if asanEnabled {
		shadowSet(uintptr(unsafe.Pointer(&mem[0])), uintptr(len(mem)), shadowRedzone)
	}
}
