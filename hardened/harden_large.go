//go:build hardened && !asan

package hardened

import (
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/hardalloc/hardalloc/redzone"
)

// This file is the hardening layer's large blocks: the rear canary in
// the page slack, verified on free, and the large-block quarantine, whose
// blocks are PROT_NONE until they leave it (a use after free faults).

func (a *Allocator) armLarge(lb *largeBlock) {
	g, seq, st := a.site(0)
	lb.alloc = a.siteOf(g, seq, st)
	a.profileAdd(uintptr(lb.p))
	rear := unsafe.Add(lb.p, lb.size)
	if !patterns {
		return
	}
	redzone.FillRear(slice(rear, lb.span-uintptr(lb.size)), uintptr(rear), redzone.Canary(a.h.canaryKey, uintptr(lb.p)))
}

func (a *Allocator) verifyLarge(op string, lb *largeBlock) *Report {
	if !patterns {
		return nil
	}
	w := redzone.Canary(a.h.canaryKey, uintptr(lb.p))
	rear := unsafe.Add(lb.p, lb.size)
	n := lb.span - uintptr(lb.size)
	if i := redzone.VerifyRear(slice(rear, n), uintptr(rear), w); i >= 0 {
		bad := unsafe.Add(rear, i)
		r := a.largeReport(Overflow, op, bad, lb, "the rear redzone (page slack) of a large block was overwritten")
		m := min(16, int(n)-i)
		r.Got = snapshot(bad, uintptr(m))
		r.Want = redzone.ExpectedRear(w, uintptr(rear), uintptr(bad), m)
		return r
	}
	return nil
}

// retireLarge is the hardening layer's part of largeDies (a.large.mu
// held, released here). lb is remembered before the lock is dropped: a
// Free of lb racing with this one must find it (a double free), not
// nothing (an invalid free); FuzzAllocFree's racing frees found the gap.
func (a *Allocator) retireLarge(op string, lb *largeBlock) bool {
	l := &a.large
	l.remember(lb)
	l.mu.Unlock()
	if !a.freeLargeHardened(op, lb) {
		l.mu.Lock()
		l.withdrawn = append(l.withdrawn, lb)
		l.mu.Unlock()
		return false
	}
	lb.booked()
	return true
}

// freeLargeHardened (lb already out of the live table, a.large.mu not
// held): verify the slack canary, make the pages inaccessible and give
// their memory back, and hold the address range in a bounded quarantine so
// late accesses fault. A damaged block is reported and kept as it is.
func (a *Allocator) freeLargeHardened(op string, lb *largeBlock) bool {
	if r := a.verifyLarge(op, lb); r != nil {
		a.report(r)
		return false
	}
	g, seq, st := a.site(lb.alloc.Seq)
	free := a.siteOf(g, seq, st)
	a.profileRemove(uintptr(lb.p))
	l := &a.large
	l.mu.Lock()
	defer l.mu.Unlock()
	lb.free = free // under the lock: a racing Free's report reads it (-race found it)
	// Keep the pages (PROT_NONE) when the cache will take the block after
	// the quarantine, so its reuse costs no page faults; otherwise give
	// them back now.
	if a.cacheable(lb.span) && l.kept+l.cacheBytes+int64(lb.span) <= a.largeCacheBudget() &&
		(injecting && bug(bugLargeKept) || unix.Mprotect(lb.payload(), unix.PROT_NONE) == nil) { // seeded bug: not protected
		lb.kept, lb.none = true, true
		l.kept += int64(lb.span)
	} else {
		retire(lb.payload(), false)
		a.mapped.Add(-int64(lb.span))
	}
	l.quarantined = append(l.quarantined, lb)
	l.qbytes += int64(len(lb.mem))
	for len(l.quarantined) > 256 || l.qbytes > a.h.largeBudget {
		old := l.quarantined[0]
		l.quarantined = l.quarantined[1:]
		l.qbytes -= int64(len(old.mem))
		a.unquarantine(old, true)
	}
	return true
}

// unquarantine releases a block leaving the large-block quarantine
// (a.large.mu held): to the cache if its pages were kept and cache is
// set, otherwise unmapped.
func (a *Allocator) unquarantine(lb *largeBlock, cache bool) {
	l := &a.large
	if lb.kept {
		lb.kept = false
		l.kept -= int64(lb.span)
		if cache {
			a.park(lb)
			return
		}
		a.unmapFreed(lb)
		return
	}
	a.unmapLarge(lb) // its pages already left the mapped count
	l.remember(lb)
}
