package hardened

import "unsafe"

// This file is the four points of a block's life, each the one place it
// happens on every path of every build, Alloc's and Free's fast paths
// included: a small block is born (smallBorn) and dies (smallDies), a
// large block is born (largeBorn) and dies (largeDies). Each calls the
// debug layers in one block, in a fixed order, the way mallocgc notifies
// the race detector, MSan and ASan at its end. A layer is a set of
// methods with an on and an off file; the off half is empty (or, where
// the layer replaces a step, the release step) and compiles away:
//
//	layer             on                     off
//	hardening         harden*.go (-tags      harden0.go
//	                  hardened)
//	ASan shadow       asan.go (-asan)        asan0.go; shadow.go's
//	                                         bodies test asanEnabled
//	fault injection   bug_on.go              bug_off.go
//	                  (-tags faultinject)
//
// The sampling layer (sample.go, Options.SampleRate) is not notified: as
// Scudo hosts GWP-ASan, it takes a whole allocation at one early return
// (the per-P countdown in popFast says a sample is due) and a whole Free
// or Realloc at one branch on its address range, and its blocks never
// reach these four points. The record book (book.go) is written at the
// large-block points and where memory is mapped.

// smallBorn is where a small block becomes live, on every Alloc path of
// every build: the slot at offset off of class c, just taken from a free
// list, gets an n-byte payload at payOff. The hardening layer verifies
// the free header and arms the redzones and the allocation site before
// the header says "allocated" (a concurrent Check must never see a
// half-armed block); the shadow follows it; the payload is zeroed last.
// It returns the payload, or nil if the slot's header showed damage done
// while it was free (reported; the slot is dropped). spilled says the
// slot was borrowed from a larger class than n's. The hardening layer
// zeroes the payload itself when it verifies a poisoned slot's poison
// (one pass over the bytes, not two).
//
//go:norace
//go:nocheckptr
func (a *Allocator) smallBorn(c int, off uint32, n int, payOff uintptr, seq uint64, spilled bool, fp unsafe.Pointer) []byte {
	slot := a.slotAt(c, off)
	ok, zeroed := a.armSmall(slot, c, off, n, payOff, seq, fp)
	if !ok {
		return nil
	}
	v := uint64(n) | uint64(payOff/16)<<hdrOffShift | uint64(c)<<hdrClsShift | uint64(stateAllocated)<<hdrStShift | hdrUsedBit
	if old := loadHeader(slot); (old^v)&(1<<hdrSumShift-1)&^(7<<hdrStShift) == 0 {
		// The free header holds these very fields (freed from a block of
		// this size and place, the common case): only the state differs,
		// and restate re-seals the old word with one table load instead
		// of checksum's six. A word damaged while free stays damaged
		// under restate (the CRC is linear; the key part is the slot's),
		// so Free reports it where a fresh seal would have hidden it.
		v = restate(old, stateAllocated)
	} else {
		v |= a.checksum(slot, v) << hdrSumShift // encode, inlined
	}
	a.publishLive(slot, v)
	asanSlotLive(slot, c, payOff, n)

	b := unsafe.Slice((*byte)(unsafe.Add(slot, headerSize+payOff)), n)
	if injecting && (bug(bugNoZero) || spilled && bug(bugSpillNoZero)) {
		return b // seeded bugs: not zeroed
	}
	if !zeroed {
		clear(b)
	}
	return b
}

// smallDies is where a small block dies, on every Free and Realloc path
// of every build, once releaseSlot has moved its header word old to
// stateFreeing (free in release builds; busy in hardened ones). The
// shadow marks it freed before anything can hand it out again; the
// hardening layer verifies its canaries, records the free, poisons and
// quarantines it (done true), or leaves it to be recycled here as
// release builds do. It returns false if the block was reported (damaged
// redzones).
//
//go:norace
func (a *Allocator) smallDies(op string, slot unsafe.Pointer, c int, soff uint32, old uint64, fp unsafe.Pointer) bool {
	asanSlotDead(slot, c)
	if done, ok := a.quarantineSmall(op, slot, c, soff, old, fp); done {
		return ok
	}
	size := int(old & (1<<hdrSizeBits - 1))
	if !a.pushFast(c, soff, size) {
		a.pushSlot(c, soff, size)
	}
	return true
}

// largeBorn is where a large block becomes live, fresh from mapGuarded
// or out of the large cache: the hardening layer arms its rear canary
// and records its site (release builds: the site alone), the record
// book and the shadow learn of it, and it joins the live table.
func (a *Allocator) largeBorn(lb *largeBlock) []byte {
	a.armLarge(lb)
	lb.rec = bookRecord(recLarge, a.id, uintptr(unsafe.Pointer(&lb.mem[0])), uintptr(unsafe.Pointer(&lb.mem[0]))+uintptr(len(lb.mem)), uintptr(lb.p), lb.size)
	if lb.rec != nil {
		lb.rec.alloc.setSite(lb.alloc)
	}
	asanLargeLive(lb)

	a.large.mu.Lock()
	a.large.forgetOverlapping(lb)
	a.large.live[uintptr(lb.p)] = lb
	a.large.mu.Unlock()
	pc := a.pin()
	pc.requested += int64(lb.size)
	a.unpin(pc)
	return unsafe.Slice((*byte)(lb.p), lb.size)
}

// largeDies is where a large block dies, freeLarge having taken it out
// of the live table (a.large.mu held; released here): the shadow marks
// it freed, then the hardening layer verifies, records and quarantines
// it, or release builds record the free and park it in the large cache
// (retireLarge). It returns false if the block was reported.
func (a *Allocator) largeDies(op string, lb *largeBlock) bool {
	lb.freed = true
	asanLargeDead(lb)
	if !a.retireLarge(op, lb) {
		return false
	}
	pc := a.pin()
	pc.requested -= int64(lb.size)
	a.unpin(pc)
	return true
}

// freeHeaderDamaged reports a free slot about to be handed out whose
// header words disagree (the free word and its last live word's mirror):
// one of them was written while the slot was free, and the checksum says
// which. The slot is dropped, never handed out again: a damaged header
// word stays so, for Close to report once more; a slot whose word is
// intact is withdrawn (one withdrawn already was reported then).
//
//go:noinline
func (a *Allocator) freeHeaderDamaged(slot unsafe.Pointer, c int, soff uint32, old uint64) {
	h, ok := a.decode(slot, old)
	switch {
	case !ok:
		a.report(a.headerReport("Alloc", slot, c, old))
	case h.state == stateWithdrawn:
		// Reported when it was withdrawn (Close or Reset found its
		// mirror written; verifyMirror).
	default:
		// Withdrawn, so that Close does not report it again.
		a.withdraw(slot, old)
		a.report(a.freeMirrorReport(slot, c, soff, h, old))
	}
}

// freeMirrorReport reports a free slot, header word old, intact, whose
// second word no longer mirrors its last live word.
func (a *Allocator) freeMirrorReport(slot unsafe.Pointer, c int, soff uint32, h header, old uint64) *Report {
	return a.mirrorReport(WriteAfterFree, "Alloc", slot, c, soff, h, restate(old, stateAllocated),
		"the header's second word, below the block, was overwritten while the block was free (it mirrors the block's last header word); the slot is not used again")
}
