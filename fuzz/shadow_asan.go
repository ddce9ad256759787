//go:build asan

package fuzz

import (
	"os"
	"runtime"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/hardalloc/hardalloc/internal/asanrt"
	"github.com/hardalloc/hardalloc/internal/harness"
)

// Under -asan the model's blocks are checked against AddressSanitizer's
// shadow: a live block is addressable for exactly its length (every byte
// of it, and not the byte after it), and a freed block is addressable
// nowhere (or no longer mapped: a large block the cache does not keep is
// unmapped at Free, and its shadow cleared for whoever maps the range
// next). A shadow left wrong lets a bad access through silently, which no
// other oracle sees.
//
// What is checked when, so that the oracle costs less than the op:
//
//	after every op      each block the op made (and each never checked):
//	                    every byte; every other live block: its first and
//	                    last byte, and the byte after it
//	a block just freed  every granule (checkFreed)
//	every shadowSweep   every byte of every live block of the slots and
//	ops, and at the end orphans, every bulk block, and every block freed
//	                    in the program that the quarantine must still
//	                    hold (residency.go), every granule
//
// The shadow is read directly (asanrt.FirstPoisoned, ASan's encoding); a
// cgo call into __asan_region_is_poisoned per block cost more than the op.
// The functions here read the model's own records and the shadow, never a
// block's bytes, and are //go:norace: ASan has nothing to check there
// (this file is never part of a race build).

// shadowSweep is how many ops pass between full sweeps.
const shadowSweep = 16

// checkShadow is the check after op i.
//
//go:norace
func (r *runner) checkShadow(i int) error {
	return r.sweepShadow(i, i%shadowSweep == shadowSweep-1)
}

// sweepShadow checks the live blocks of the slots and orphans, every byte
// of each if full (or if it was never checked), and with full the bulk
// set and the blocks the quarantine holds.
//
//go:norace
func (r *runner) sweepShadow(i int, full bool) error {
	for s, b := range r.live() {
		if err := r.checkLive(i, "block", s, b.b, full || !b.shadowed); err != nil {
			return err
		}
		b.shadowed = true
	}
	if !full {
		return nil
	}
	for k := range r.bulk {
		if err := r.checkLive(i, "bulk block", k, r.bulk[k].b, true); err != nil {
			return err
		}
	}
	if q := &r.resid; q.on && r.misused == nil && q.bytes < residencyWindow {
		for _, b := range q.held {
			if err := r.checkDead(i, "freed and quarantined", b); err != nil {
				return err
			}
		}
	}
	return nil
}

// checkLive checks the live block b (number k of its kind): all of it, or
// its first and last byte; and the byte after it.
//
//go:norace
func (r *runner) checkLive(i int, kind string, k int, b []byte, all bool) error {
	p, n := addrOf(b), uintptr(len(b))
	if all {
		if bad, ok := asanrt.FirstPoisoned(p, n); ok {
			return r.fail(i, "ASan shadow: %s %d (%#x, %d bytes) is unaddressable at byte %d", kind, k, p, n, bad-p)
		}
	} else if n > 0 {
		for _, off := range [2]uintptr{0, n - 1} {
			if asanrt.PoisonedAt(p + off) {
				return r.fail(i, "ASan shadow: %s %d (%#x, %d bytes) is unaddressable at byte %d", kind, k, p, n, off)
			}
		}
	}
	if !asanrt.PoisonedAt(p + n) {
		return r.fail(i, "ASan shadow: the byte after %s %d (%#x, %d bytes) is addressable", kind, k, p, n)
	}
	return nil
}

// checkFreed checks that the block b, just freed, is unaddressable. In a
// program whose other goroutines allocate (its threads, a free racing on
// another goroutine), a slot freed without a quarantine (QuarantineBytes
// < 0, a full budget) can be handed out again before this look, and its
// shadow is then the new block's, rightly addressable. There an
// addressable granule fails the program only if, for a while, the slot is
// neither allocated again (harness.SlotLive) nor poisoned again (freed by
// whoever took it: Free changes the header before the shadow, so a look
// between the two sees an addressable granule in a slot not allocated).
// A Free that leaves the shadow addressable is still caught there unless
// another goroutine takes the slot within that while, and always in the
// programs that run on one goroutine.
func (r *runner) checkFreed(i int, b []byte) error {
	err := r.checkDead(i, "freed", b)
	if err == nil || !concurrent(r.p) {
		return err
	}
	for range 1000 {
		if harness.SlotLive(r.a, b) || r.checkDead(i, "freed", b) == nil {
			return nil
		}
		runtime.Gosched()
	}
	return err
}

// checkDead checks that no granule of the freed block b is addressable:
// one byte of each, and its last byte.
//
//go:norace
func (r *runner) checkDead(i int, what string, b []byte) error {
	if len(b) == 0 {
		return nil
	}
	p, n := addrOf(b), uintptr(len(b))
	for off := uintptr(0); off < n; off += 8 {
		if !asanrt.PoisonedAt(p+off) && !unmapped(p+off) {
			return r.fail(i, "ASan shadow: byte %d of the %d-byte %s block %#x is addressable", off, n, what, p)
		}
	}
	if !asanrt.PoisonedAt(p+n-1) && !unmapped(p+n-1) {
		return r.fail(i, "ASan shadow: the last byte of the %d-byte %s block %#x is addressable", n, what, p)
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
func unmapped(p uintptr) bool {
	page := p &^ (pageSize - 1)
	return unix.Msync(unsafe.Slice((*byte)(ptrAt(page)), pageSize), unix.MS_ASYNC) == unix.ENOMEM
}

func ptrAt(p uintptr) unsafe.Pointer { return *(*unsafe.Pointer)(unsafe.Pointer(&p)) }
