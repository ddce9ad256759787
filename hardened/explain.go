package hardened

import (
	"runtime/debug"
	"unsafe"
)

// This file turns an address into a report: Explain (for faults, and for
// AddressSanitizer's reports under -asan) and CatchFault.

// Explain says what the allocator knows about addr: which block it is in
// or next to, and what that means for an access there. It is how a fault
// becomes a report (see CatchFault). It returns nil for an address the
// allocator knows nothing wrong about.
func (a *Allocator) Explain(addr uintptr) *Report {
	if a.closed.Load() {
		return nil
	}
	if r := a.explainHardened(addr); r != nil {
		return r
	}
	off := addr - uintptr(a.base)
	if off < a.regionSize() {
		return a.explainSmall(addr, off)
	}
	if a.sampleContains(addr) {
		return a.explainSampled(addr)
	}
	// Under the lock: a concurrent Free writes the block's state and sites.
	a.large.mu.Lock()
	defer a.large.mu.Unlock()
	lb := a.large.find(addr)
	if lb == nil {
		return nil
	}
	p := unsafe.Add(lb.p, addr-uintptr(lb.p))
	switch {
	case lb.freed:
		return a.largeReport(UseAfterFree, "fault", p, lb, "an access to a freed large block")
	case addr < uintptr(lb.p):
		return a.largeReport(Underflow, "fault", p, lb, "an access to the guard page before a large block")
	case addr >= uintptr(lb.p)+uintptr(lb.size):
		return a.largeReport(Overflow, "fault", p, lb, "an access past the end of a large block")
	}
	return nil
}

func (a *Allocator) explainSmall(addr, off uintptr) *Report {
	slot, c, soff, ok := a.locate(off)
	p := unsafe.Add(a.base, off)
	if !ok {
		if r := a.explainTail(off, c); r != nil {
			return r
		}
		return &Report{Kind: Overflow, Op: "fault", Addr: addr, Size: -1, Class: int(off >> a.shift),
			Detail: "an access to reserved allocator address space that holds no block"}
	}
	old := loadHeader(slot)
	hd, ok := a.decode(slot, old)
	live := ok && (hd.state == stateAllocated || hd.state == stateDamaged)
	// In a slot's header, right after a live block in the slot before it:
	// that block's overflow (a linear overflow gets there first), unless
	// the block here is live and this is its underflow.
	if addr < uintptr(slot)+headerSize && !live {
		if r := a.explainPrev(p, c, soff); r != nil {
			return r
		}
	}
	switch {
	case old == 0 && a.slabPurged(c, soff):
		// A block freed before its slab emptied and went back to the
		// OS (hardened builds seal the slab read-only, so a write there
		// faults). The site record outlives the pages.
		r := &Report{Kind: UseAfterFree, Op: "fault", Addr: addr, Size: -1, Class: c,
			Detail: "an access to a freed slot whose slab's pages went back to the OS"}
		a.fillSites(r, c, soff)
		return r
	case old == 0:
		return &Report{Kind: InvalidAccess, Op: "fault", Addr: addr, Size: -1, Class: c,
			Detail: "an access to a slot that holds no block: never allocated, or forgotten by Reset"}
	case !ok:
		return &Report{Kind: HeaderCorruption, Op: "fault", Addr: addr, Block: uintptr(slot) + headerSize,
			Size: -1, Class: c, Header: old, Detail: "an access to a slot whose header is damaged"}
	}
	pay := uintptr(slot) + headerSize + hd.off
	switch {
	case !live:
		return a.newReport(UseAfterFree, "fault", p, slot, c, soff, hd, "an access to a freed block")
	case addr < uintptr(slot)+headerSize:
		if r := a.explainPrev(p, c, soff); r != nil {
			return r
		}
		return a.newReport(Underflow, "fault", p, slot, c, soff, hd, "an access to a block's header")
	case addr < pay:
		return a.newReport(Underflow, "fault", p, slot, c, soff, hd, "an access before the start of a block")
	case addr >= pay+uintptr(hd.size):
		return a.newReport(Overflow, "fault", p, slot, c, soff, hd, "an access past the end of a block")
	}
	return nil
}

// explainPrev explains an access at p in the header of slot soff as an
// overflow of the live block in the slot before it, if there is one.
func (a *Allocator) explainPrev(p unsafe.Pointer, c int, soff uint32) *Report {
	stride := classSize[c] + headerSize
	if soff&(1<<classSlabShift[c]-1) < stride {
		return nil // the first slot of its slab
	}
	prev := soff - stride
	slot := a.slotAt(c, prev)
	hd, ok := a.decode(slot, loadHeader(slot))
	if !ok || (hd.state != stateAllocated && hd.state != stateDamaged) {
		return nil
	}
	return a.newReport(Overflow, "fault", p, slot, c, prev, hd, "an access past the end of a block, into the next slot's header")
}

// explainTail explains a fault in the PROT_NONE tail of a committed slab
// (see slabCommit): a linear overflow out of the slab's last slot gets
// there first, so the report is about that block when it is live.
func (a *Allocator) explainTail(off uintptr, c int) *Report {
	coff := uint64(off & (a.classRegion() - 1))
	if coff >= uint64(a.loc[c].committed.Load()) {
		return nil
	}
	stride := uint64(classSize[c] + headerSize)
	last := coff&^(uint64(1)<<classSlabShift[c]-1) + (uint64(classSlots[c])-1)*stride
	slot := a.slotAt(c, uint32(last))
	old := loadHeader(slot)
	hd, ok := a.decode(slot, old)
	if !ok || hd.state != stateAllocated {
		return nil
	}
	return a.newReport(Overflow, "fault", unsafe.Add(a.base, off), slot, c, uint32(last), hd,
		"an access past the end of the last block of a slab, into the slab's unused tail")
}

// CatchFault runs fn with runtime/debug.SetPanicOnFault on the calling
// goroutine (it is per goroutine: faults in goroutines fn starts are not
// caught). If fn faults at an address Explain can account for, the report
// goes to OnReport and is returned; any other panic propagates unchanged.
// Hardened builds make most bad accesses to large blocks, freed large
// blocks, 0-byte blocks and protected metadata fault.
func (a *Allocator) CatchFault(fn func()) *Report {
	if r := a.catch(fn); r != nil {
		// Reported once the recovery has finished, so that a panicking
		// OnReport (the default) panics with the report alone, not under
		// the fault's "[recovered]" header.
		a.report(r)
		return r
	}
	return nil
}

// catch runs fn with panic-on-fault and returns the report for a fault
// Explain accounts for; any other panic propagates from its own frame.
func (a *Allocator) catch(fn func()) (r *Report) {
	old := setPanicOnFault(true)
	defer setPanicOnFault(old)
	defer func() {
		v := recover()
		if v == nil {
			return
		}
		if f, ok := v.(interface{ Addr() uintptr }); ok {
			if r = a.Explain(f.Addr()); r != nil {
				return
			}
		}
		panic(v)
	}()
	fn()
	return nil
}

func setPanicOnFault(on bool) bool { return debug.SetPanicOnFault(on) }
