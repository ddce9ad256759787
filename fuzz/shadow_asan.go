//go:build asan

package fuzz

import (
	"os"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/hardalloc/hardalloc/internal/asanrt"
)

// Under -asan the model's blocks are checked against AddressSanitizer's
// shadow after every op: a live block is addressable for exactly its
// length (every byte of it, and not the byte after it), and a block just
// freed is addressable nowhere (or no longer mapped: a large block the
// cache does not keep is unmapped at Free, and its shadow cleared for
// whoever maps the range next). A shadow left wrong lets a bad access
// through silently, which no other oracle sees.

// checkShadow checks every live block of the model (the slots and
// orphans) against the shadow.
func (r *runner) checkShadow(i int) error {
	for s, b := range r.live() {
		p := unsafe.Pointer(unsafe.SliceData(b.b))
		if bad := asanrt.RegionPoisoned(p, uintptr(len(b.b))); bad != nil {
			return r.fail(i, "ASan shadow: block %d (%#x, %d bytes) is unaddressable at byte %d", s, b.start(), len(b.b), uintptr(bad)-uintptr(p))
		}
		if !asanrt.Poisoned(unsafe.Add(p, len(b.b))) {
			return r.fail(i, "ASan shadow: the byte after block %d (%#x, %d bytes) is addressable", s, b.start(), len(b.b))
		}
	}
	return nil
}

// checkFreed checks that the block b, just freed, is unaddressable: its
// first and last byte and one byte in every 8-byte granule between (at
// most 64 of them, spread evenly).
func (r *runner) checkFreed(i int, b []byte) error {
	if len(b) == 0 {
		return nil
	}
	p := unsafe.Pointer(unsafe.SliceData(b))
	step := max(8, len(b)/64&^7)
	for off := 0; off < len(b); off += step {
		if q := unsafe.Add(p, off); !asanrt.Poisoned(q) && !unmapped(q) {
			return r.fail(i, "ASan shadow: byte %d of the %d-byte block %#x is still addressable after Free", off, len(b), uintptr(p))
		}
	}
	if q := unsafe.Add(p, len(b)-1); !asanrt.Poisoned(q) && !unmapped(q) {
		return r.fail(i, "ASan shadow: the last byte of the %d-byte block %#x is still addressable after Free", len(b), uintptr(p))
	}
	return nil
}

var pageSize = uintptr(os.Getpagesize())

// asanBuild says the program is built with -asan: the hardening layer
// writes no canaries or poison there (the shadow stops those writes at
// the access, which ASan would abort on), so the misuse ops that only
// patterns catch are not made.
const asanBuild = true

// unmapped reports whether the page holding p is not mapped.
func unmapped(p unsafe.Pointer) bool {
	page := unsafe.Add(p, -int(uintptr(p)&(pageSize-1)))
	return unix.Msync(unsafe.Slice((*byte)(page), pageSize), unix.MS_ASYNC) == unix.ENOMEM
}
