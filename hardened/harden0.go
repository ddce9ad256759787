//go:build !hardened && !asan

package hardened

import (
	"errors"
	"unsafe"
)

var errProfileRelease = errors.New("Options.ProfileName needs -tags hardened: release builds record no allocation stacks")

// The hardening layer's entry points in release builds: the same names as
// in harden*.go, empty, so that shared code calls them unconditionally and
// a release build compiles them away (internal/race's norace.go). A
// release Allocator carries no hardening state.

// hardening is false: release builds have no hardening layer.
const hardening = false

//lint:ignore U1000 embedded in Allocator, empty here
type hardAlloc struct{}

type cacheHard struct{}

func newCacheHard(int) cacheHard { return cacheHard{} }
func (pc *cache) resetHard()     {}

func (a *Allocator) initHardened() error {
	if a.opts.ProfileName != "" {
		return &OpError{Op: "New", Err: errProfileRelease}
	}
	return nil
}
func (a *Allocator) closeHardened()                               {}
func hardenedSpace(shift uint) uintptr                            { return 0 }
func (a *Allocator) reconfigureHardened()                         {}
func (a *Allocator) resetHardened()                               {}
func (a *Allocator) pads() (front, rear int)                      { return 0, 0 }
func (a *Allocator) allocSeq(pc *cache, c int, off uint32) uint64 { return 0 }
func (a *Allocator) fillSites(r *Report, c int, soff uint32)      {}
func (a *Allocator) profileRemove(p uintptr)                      {}
func (a *Allocator) quarantineStats() (int64, int64)              { return 0, 0 }
func (a *Allocator) quarantined(fn func(c int, off uint32))       {}
func (a *Allocator) drainQuarantine()                             {}
func (a *Allocator) drainBatches()                                {}
func (a *Allocator) explainHardened(addr uintptr) *Report         { return nil }
func (a *Allocator) alwaysQuarantine(n int)                       {}
func (a *Allocator) siteRecordOf(b []byte) []byte                 { return nil }

// siteRecords is where the hardening layer keeps small blocks' sites:
// nowhere in release builds.
func (a *Allocator) siteRecords() (meta, metaStart, depot uintptr) { return 0, 0, 0 }

// armSmall (release builds) has nothing to arm, and leaves the zeroing
// to smallBorn. Release builds trust a free slot's header: the free
// lists are out of band, so a damaged free header cannot redirect
// anything. Only fuzz harnesses set JunkFill: the test of it is a load
// and a branch never taken, and the rest is out of line, so that armSmall
// stays inlined in smallBorn (a call there cost the pair 10%).
//
//go:norace
//go:nocheckptr
func (a *Allocator) armSmall(slot unsafe.Pointer, c int, soff uint32, n int, payOff uintptr, seq uint64, fp unsafe.Pointer) (ok, zeroed bool) {
	old := loadHeader(slot)
	if !a.freeWordOK(slot, old) {
		a.freeHeaderDamaged(slot, c, soff, old)
		return false, false
	}
	if old == 0 && a.x.JunkFill != 0 {
		a.junkPayload(slot, c, soff, payOff, n)
	}
	return true, false
}

// publish stores a newly live block's header word: a plain store, as
// nothing is armed before it that a concurrent reader must see.
//
//go:norace
//go:nocheckptr
func publish(slot unsafe.Pointer, v uint64) { storeHeader(slot, v) }

// publishPair is publish with the header's second word m stored first.
//
//go:norace
//go:nocheckptr
func publishPair(slot unsafe.Pointer, v, m uint64) {
	*mirrorWord(slot) = m
	storeHeader(slot, v)
}

// cacheBytes is about what each P's cache holds of one class (in
// slots, from 2 to cacheCap).
const cacheBytes = 32 << 10

// stateFreeing is the state Free's compare-and-swap moves a live block
// to: release builds recycle it at once.
const stateFreeing = stateFree

func (a *Allocator) quarantineSmall(op string, slot unsafe.Pointer, c int, soff uint32, old uint64, fp unsafe.Pointer) (done, ok bool) {
	return false, true
}
func (a *Allocator) verifyStable(op string, slot unsafe.Pointer, c int, soff uint32, hd header, old uint64) *Report {
	return nil
}

// armLarge (release builds) records a large block's allocation site
// (in the block, for the record book and the crash monitor).
func (a *Allocator) armLarge(lb *largeBlock) { lb.alloc = a.releaseSite(0, &lb.pcs[0]) }

// retireLarge (release builds; a.large.mu held, released here) records
// the free site and parks the block in the large cache.
func (a *Allocator) retireLarge(op string, lb *largeBlock) bool {
	lb.free = a.releaseSite(lb.alloc.Seq, &lb.pcs[1])
	lb.booked()
	a.park(lb)
	a.large.mu.Unlock()
	return true
}

func (a *Allocator) verifyLarge(op string, lb *largeBlock) *Report { return nil }
func (a *Allocator) unquarantine(lb *largeBlock, cache bool)       {}

// Realloc (release builds) resizes a small block within its slot when
// it can.
func (a *Allocator) inPlace(p unsafe.Pointer, size, n int) ([]byte, bool) {
	return a.resizeInPlace(p, size, n)
}
func (a *Allocator) usable(p unsafe.Pointer, size int) int { return a.slotRoom(p, size) }

// quarantineHolds reports whether freed blocks wait in quarantine that a
// class at its Limit could take back (release builds have none).
func (a *Allocator) quarantineHolds() bool { return false }

// seal and unseal: release builds leave a purged slab writable (its
// pages read as zeros until used again).
func (a *Allocator) seal(mem []byte)         {}
func (a *Allocator) unseal(mem []byte) error { return nil }

// keepDamaged: release builds have no poison to verify before a purge.
func (a *Allocator) keepDamaged(c, s int, used uint32) bool { return false }

// The zero-size region: release builds give Alloc(0) a slot.
func (a *Allocator) zeroContains(p uintptr) bool                       { return false }
func (a *Allocator) allocZero(align uintptr) []byte                    { return nil }
func (a *Allocator) freeZero(op string, p unsafe.Pointer) bool         { return false }
func (a *Allocator) zeroSize(op string, p unsafe.Pointer) (int, error) { return 0, nil }
func (a *Allocator) zeroLeaks(op string) []*Report                     { return nil }

// releaseSite captures a large block's allocation or free site in
// release builds (hardened builds record sites for every block): large
// blocks cost a mapping or a clear of at least 144 KiB, beside which a
// stack is cheap, and their records let the crash monitor and leak
// reports say where they came from. after is the block's previous event.
func (a *Allocator) releaseSite(after uint64, pcs *[bookDepth + 8]uintptr) Site {
	site := a.capture(pcs[:])
	site.Seq = a.largeSeq.Add(1)
	if site.Seq <= after {
		site.Seq = after + 1
	}
	return site
}
