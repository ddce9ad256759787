//go:build !asan

package hardened

import (
	"errors"
	"sync/atomic"
	"unsafe"
)

// This file is the looks at the whole allocator and its end: Check
// (every block verified), Trim (free memory back to the OS) and Close
// (leaks reported, everything unmapped), with walk, the one pass over
// the slots they and Reset share.

// walk calls fn for every slot with a non-zero header among those handed
// out since its slab was carved, purged or Reset, and the one after them
// (slots above a slab's used mark have never left the free bitmap, so
// only a stray write could have made their headers non-zero).
func (a *Allocator) walk(fn func(slot unsafe.Pointer, c int, soff uint32)) {
	var used []uint32
	var handed [numClasses]uint8
	for _, hc := range a.handedList(&handed) { // the others have handed nothing out since New or Reset: all headers 0
		c := int(hc)
		cl := &a.classes[c]
		cl.mu.Lock()
		used = used[:0]
		for s := range cl.slabs {
			used = append(used, cl.slabs[s].used)
		}
		cl.mu.Unlock()
		slab := uint64(1) << classSlabShift[c]
		stride := uint64(classSize[c] + headerSize)
		for s, n := range used {
			if n == 0 {
				continue // nothing handed out of this slab (reserve slabs, mostly)
			}
			// One slot past the mark too: a linear overflow out of the
			// last slot handed out lands in its header first.
			for i := range uint64(min(n+1, classSlots[c])) {
				soff := uint32(uint64(s)*slab + i*stride)
				slot := a.slotAt(c, soff)
				if loadHeader(slot) != 0 {
					fn(slot, c, soff)
				}
			}
		}
	}
}

// Check verifies every block now: each header's checksum and, in hardened
// builds, the canaries of live blocks and the poison of quarantined ones.
// Every problem is reported through OnReport and returned, joined.
func (a *Allocator) Check() error {
	if a.closed.Load() {
		return &OpError{Op: "Check", Err: ErrClosed}
	}
	return a.check("Check", false, false)
}

// check walks every block, reporting damage (and, if leaks, every live
// block as a Leak). With forget (Reset), each slot's header is cleared
// once it has been looked at, so Reset needs one walk, not two.
func (a *Allocator) check(op string, leaks, forget bool) error {
	var errs []error
	var leaked []*Report
	emit := func(r *Report) {
		switch {
		case r.Kind != Leak || a.opts.OnReport != nil:
			a.report(r)
		case op == "Close":
			leaked = append(leaked, r) // printed below, as LeakSanitizer does at exit
		}
		if r.Kind == Leak {
			a.profileRemove(r.Block) // the block is gone with Close or Reset
		}
		errs = append(errs, &Error{Report: r})
	}
	a.walk(func(slot unsafe.Pointer, c int, soff uint32) {
		if forget {
			defer storeHeader(slot, 0)
		}
		old := loadHeader(slot)
		h, ok := a.decode(slot, old)
		if !ok {
			emit(a.headerReport(op, slot, c, old))
			return
		}
		if h.state == stateFreePoisoned && !leaks {
			// Check runs beside Allocs, one of which may be handing the
			// slot out and arming it right now: a free slot's poison is
			// verified when it is handed out again, and at Close.
			return
		}
		if r := a.verifyMirror(op, slot, c, soff, h, old, leaks); r != nil {
			emit(r)
			return
		}
		if r := a.verifyStable(op, slot, c, soff, h, old); r != nil {
			emit(r)
			return
		}
		if leaks && h.state == stateAllocated {
			emit(a.newReport(Leak, op, unsafe.Add(slot, headerSize+h.off), slot, c, soff, h,
				plural(h.size, "byte")+" still allocated at "+op)) // not Sprintf: fuzz execs end with dozens of these
		}
	})
	if leaks {
		for _, r := range a.zeroLeaks(op) {
			emit(r)
		}
	}
	// Large blocks are verified under the lock: a concurrent Free would
	// otherwise retire (unmap or guard) pages while they are read.
	var found []*Report
	a.large.mu.Lock()
	for _, lb := range a.large.live {
		if r := a.verifyLarge(op, lb); r != nil {
			found = append(found, r)
			continue
		}
		if leaks {
			found = append(found, a.largeReport(Leak, op, lb.p, lb, plural(lb.size, "byte")+" still allocated at "+op+" (large block)"))
		}
	}
	a.large.mu.Unlock()
	if leaks {
		found = append(found, a.sampleLeaks(op)...)
	}
	for _, r := range found {
		emit(r)
	}
	a.printLeaks(leaked)
	return errors.Join(errs...)
}

// Close verifies the heap, reports every block still live as a Leak with
// its size (and, hardened, its allocation site), and unmaps everything.
// Leaks go to OnReport only when one was set (the default handler would
// panic); they are always returned, joined, as *Error values. Any later
// call fails with ErrClosed or reports UseAfterClose.
//
// With OnReport nil, the leaks are also printed to ReportOutput, so a
// plain `defer a.Close()` shows them. Close first waits for the threads
// of package thread started on the allocator, detached ones included: a
// worker still running keeps its allocator open until it ends.
func (a *Allocator) Close() error {
	a.holds.Wait()
	if a.closed.Swap(true) {
		return &OpError{Op: "Close", Err: ErrClosed}
	}
	err := a.check("Close", true, false)
	a.startClosing()
	a.closeHardened()
	a.dropLarge(false)
	a.dropSampled(true)
	bookCloseRange(a.rangeIdx)
	asanUnregister(a)
	// Nothing is committed any more: the fast paths find no cached slot
	// and no slab, and fall through to the checks that report ErrClosed.
	for _, pc := range a.allCaches() {
		pc.lockForRead()
		pc.n = [numClasses]uint8{}
		pc.unlockForRead()
	}
	for c := range a.loc {
		a.loc[c].committed.Store(0)
	}
	if uerr := a.unmapReservation(); uerr != nil {
		err = errors.Join(err, uerr)
	}
	a.mapped.Store(0)
	return err
}

// Trim gives memory held only for reuse back to the OS, as
// runtime/debug.FreeOSMemory does for Go's heap: every cached large block,
// and every slab whose slots are all free in its class's central list
// (free slots parked in per-P caches keep their slabs). Quarantined
// blocks stay quarantined, but large ones give their pages back. It
// returns the bytes no longer counted in Stats().Mapped; the memory is
// mapped again, zeroed, when it is next needed.
func (a *Allocator) Trim() (int64, error) {
	if a.closed.Load() {
		return 0, &OpError{Op: "Trim", Err: ErrClosed}
	}
	before := a.mapped.Load()
	l := &a.large
	l.mu.Lock()
	for len(l.cache) > 0 {
		a.unmapOldestCached()
	}
	for _, lb := range l.quarantined {
		a.dropKept(lb)
	}
	l.mu.Unlock()
	for c := range numClasses {
		cl := &a.classes[c]
		cl.mu.Lock()
		for s := range cl.slabs {
			if st := &cl.slabs[s]; st.free == classSlots[c] && (!st.purged || bug(bugTrimPurged)) {
				a.purgeIntact(c, s)
			}
		}
		cl.mu.Unlock()
	}
	return before - a.mapped.Load(), nil
}

// verifyMirror is Check's, Close's and Reset's look at a small slot's
// second header word, the mirror of its last live word (mirrorOf): a
// live block's that differs is an underflow (the block is marked damaged:
// its Free retires it), a free slot's a write after free (the slot is
// withdrawn). Check runs beside Allocs, which store a free slot's new
// mirror before its new word (publishPair), so only Close and Reset
// (quiet: nothing runs beside them) look at free slots. A live block
// freed and allocated again since old was loaded has its new mirror
// stored before its new word: loaded again after the mirror, the word
// has moved on then, and nothing is reported.
func (a *Allocator) verifyMirror(op string, slot unsafe.Pointer, c int, soff uint32, h header, old uint64, quiet bool) *Report {
	var live uint64
	var k Kind
	var to slotState
	var detail string
	switch {
	case h.state == stateAllocated:
		live, k, to = old, Underflow, stateDamaged
		detail = "the header's second word, below the block, was overwritten while the block was live (it mirrors the header word)"
	case quiet && (h.state == stateFree || h.state == stateQuarantined || h.state == stateFreePoisoned):
		live, k, to = restate(old, stateAllocated), WriteAfterFree, stateWithdrawn
		detail = "the header's second word, below the block, was overwritten while the block was free (it mirrors the block's last header word); the slot is not used again"
	default:
		return nil
	}
	if a.mirrored(slot, live) || loadHeader(slot) != old || a.mirrored(slot, live) {
		return nil
	}
	if !atomic.CompareAndSwapUint64(hdrWord(slot), old, restate(old, to)) {
		return nil // it moved on
	}
	return a.mirrorReport(k, op, slot, c, soff, h, live, detail)
}
