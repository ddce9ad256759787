//go:build asan

package asanrt

import "unsafe"

// The fuzz layer checks every block of its model against the shadow after
// every op; a cgo call into __asan_region_is_poisoned per block cost more
// than the op. The functions below read the shadow directly, with ASan's
// own encoding (compiler-rt asan_mapping.h): the shadow byte k of the
// 8-byte granule at g says that the granule's first k bytes are
// addressable (k in 1..7), all of them (0), or none (k negative). They
// read nothing but shadow memory, and are //go:norace: an instrumented
// load of the shadow would check the shadow's shadow, ASan's protected gap.

var shadowScale, shadowOffset = ShadowMapping()

//go:norace
//go:nocheckptr
func shadowByte(p uintptr) int8 {
	s := p>>shadowScale + shadowOffset
	return *(*int8)(*(*unsafe.Pointer)(unsafe.Pointer(&s)))
}

// PoisonedAt reports whether ASan would stop a one-byte access at p.
//
//go:norace
//go:nocheckptr
func PoisonedAt(p uintptr) bool {
	k := shadowByte(p)
	return k != 0 && int8(p&7) >= k
}

// FirstPoisoned returns the first byte of [p, p+n) ASan would stop an
// access to, and true; or false if every byte is addressable. It reads
// one shadow byte per granule, eight at a time where they are whole.
//
//go:norace
//go:nocheckptr
func FirstPoisoned(p, n uintptr) (uintptr, bool) {
	end := p + n
	for ; p < end && p&7 != 0; p++ {
		if PoisonedAt(p) {
			return p, true
		}
	}
	// Whole granules: each shadow byte must be 0. Eight granules (one
	// shadow word) at a time where the shadow is word aligned.
	whole := end &^ 7
	for p < whole {
		if s := p>>shadowScale + shadowOffset; s&7 == 0 && p+64 <= whole {
			if *(*uint64)(*(*unsafe.Pointer)(unsafe.Pointer(&s))) == 0 {
				p += 64
				continue
			}
		}
		if k := shadowByte(p); k != 0 {
			if k > 0 {
				return p + uintptr(k), true
			}
			return p, true
		}
		p += 8
	}
	for ; p < end; p++ {
		if PoisonedAt(p) {
			return p, true
		}
	}
	return 0, false
}
