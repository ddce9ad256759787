//go:build hardened && !asan

package hardened

import (
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/hardalloc/hardalloc/quarantine"
	"github.com/hardalloc/hardalloc/redzone"
)

// This file is the hardening layer's small blocks: where a slot is armed
// (canaries, allocation site, header) and where it is verified, poisoned
// and quarantined on free (quarantineSmall, smallDies' hardened half),
// and Check's and Close's looks at a slot that others may be changing.
//
// Small slot layout in hardened builds:
//
//	| header 16 | front redzone (+ alignment slack) | payload n | rear redzone ... slot end |
//
// Both redzones hold the block's keyed canary; the rear one runs to the
// end of the slot, so an overflow of one byte past n is caught. On Free
// the canaries are verified, the first free site is recorded, the whole
// slot body is filled with keyed poison and the slot enters the
// quarantine. When it leaves, nothing of it changes: its header says
// quarantined until the Alloc that takes it claims it (free, poisoned
// then: the state drainQuarantine's evictions set directly); the poison
// is verified then, the payload's in the same pass that zeroes it
// (redzone.VerifyClear: a 64 KiB pair read and wrote its payload twice
// there, once to verify and once to zero), by Check until then, and at
// Close (WriteAfterFree). A write after free is thus caught wherever the
// freed slot waits: in the quarantine or on a free list (Check, its
// reuse, Close, or the purge of its slab, which keeps a damaged slot's
// pages for them); verified at eviction, a write after it went unseen.

// armSmall is the hardening layer's part of smallBorn: it verifies the
// header of a free slot about to be handed out (an overflow into a free
// neighbour shows there), fills both redzones with the canary and records
// the allocation site, all before smallBorn publishes the header, so a
// concurrent Check never sees a half-armed block. zeroed says it zeroed
// the payload too (a poisoned slot's, in the pass that verifies it).
func (a *Allocator) armSmall(slot unsafe.Pointer, c int, soff uint32, n int, payOff uintptr, seq uint64, fp unsafe.Pointer) (ok, zeroed bool) {
	if old := loadHeader(slot); old == 0 {
		if a.x.JunkFill != 0 {
			a.junkPayload(slot, c, soff, payOff, n)
		}
	} else {
		// The word is intact if, restated, it is the block's last live
		// word, which the mirror holds (mirrorOf): no checksum to
		// compute. Otherwise freeHeaderDamaged's checksum says which of
		// the two words was written while the slot was free.
		if !a.mirrored(slot, restate(old, stateAllocated)) {
			a.freeHeaderDamaged(slot, c, soff, old)
			return false, false
		}
		hd := fields(old)
		if hd.state == stateQuarantined {
			// Evicted with its header untouched (quarantineBatch): claim
			// it, since Check may be verifying it, or have withdrawn it,
			// right now. Busy makes Check pass it by; a lost race means
			// Check withdrew it (reported): it is dropped.
			busy := restate(old, stateBusy)
			if !atomic.CompareAndSwapUint64(hdrWord(slot), old, busy) {
				return false, false
			}
			old, hd.state = busy, stateFreePoisoned
			if !patterns || injecting && bug(bugEvictedUnverified) {
				hd.state = stateFree // -asan builds hold no poison
			}
		}
		if hd.state == stateWithdrawn {
			return false, false // reported when it was withdrawn
		}
		if hd.state != stateFree && hd.state != stateFreePoisoned {
			a.reportHeader("Alloc", slot, c, old)
			return false, false
		}
		if hd.state == stateFreePoisoned {
			// Nothing else reaches a slot popped from a free list once
			// it is free or claimed (Check leaves both alone), so no more
			// compare-and-swaps. The seeded bugs that skip smallBorn's
			// zeroing keep it.
			zeroed = patterns && n >= verifyClearMin && !(injecting && (bug(bugNoZero) || bug(bugSpillNoZero)))
			var r *Report
			if zeroed {
				r = a.verifyPoisonClear("Alloc", slot, c, soff, hd, payOff, n)
			} else {
				r = a.verifyPoison("Alloc", slot, c, soff, hd)
			}
			if r != nil {
				a.withdraw(slot, old)
				a.report(r)
				return false, false
			}
		}
	}
	h := a.h
	body := unsafe.Add(slot, headerSize)
	end := uintptr(classSize[c])
	w := redzone.Canary(h.canaryKey, uintptr(slot))
	p := unsafe.Add(body, payOff)
	rear := unsafe.Add(p, n)
	if patterns {
		redzone.Arm(body, payOff, rear, end-payOff-uintptr(n), w)
	}

	rec := a.rec(c, soff)
	if seq == 0 { // not taken when the slot was popped (slow paths)
		seq = a.nextSeq(rec.freeSeq)
	}
	g, st := uint64(0), uint32(0)
	if h.depth > 0 {
		g, st = a.who(fp)
	} else {
		g = goid() // without stacks, no call to who
	}
	if h.guard.on {
		closeMeta := h.guard.open(unsafe.Pointer(rec))
		*rec = siteRec{allocSeq: seq, allocG: g, allocStack: st}
		closeMeta()
	} else {
		*rec = siteRec{allocSeq: seq, allocG: g, allocStack: st}
	}

	if h.profile != nil {
		a.profileAdd(uintptr(p))
	}
	return true, zeroed
}

// publish stores a newly live block's header word with release
// ordering: whoever loads it and sees "allocated" (Check, from another
// goroutine) sees the canaries and the site record armSmall wrote.
func publish(slot unsafe.Pointer, v uint64) { storeRelease(hdrWord(slot), v) }

// publishPair is publish with the header's second word m stored first,
// in one call (storePair; under -asan both words are heap redzone, which
// a Go store would be instrumented to check).
func publishPair(slot unsafe.Pointer, v, m uint64) { storePair(hdrWord(slot), v, m) }

// verifyCanaries checks both redzones of an allocated small block.
func (a *Allocator) verifyCanaries(op string, slot unsafe.Pointer, c int, soff uint32, hd header) *Report {
	if !patterns {
		return nil
	}
	body := unsafe.Add(slot, headerSize)
	w := redzone.Canary(a.h.canaryKey, uintptr(slot))
	pay := unsafe.Add(body, hd.off)
	if bug(bugCanarySkip) && c == 5 {
		return nil // seeded bug: one size class's canaries are never checked
	}
	rear := unsafe.Add(pay, hd.size)
	n := uintptr(classSize[c]) - hd.off - uintptr(hd.size)
	if redzone.Intact(body, hd.off, rear, n, w) {
		return nil
	}
	// Damaged: find the first bad byte.
	if i := redzone.Verify(slice(body, hd.off), uintptr(body), w); i >= 0 {
		bad := unsafe.Add(body, i)
		return a.damage(Underflow, op, bad, slot, c, soff, hd, w, int(hd.off)-i,
			"the front redzone was overwritten")
	}
	if i := redzone.VerifyRear(slice(rear, n), uintptr(rear), w); i >= 0 {
		bad := unsafe.Add(rear, i)
		r := a.newReport(Overflow, op, bad, slot, c, soff, hd, "the rear redzone was overwritten")
		m := min(16, int(n)-i)
		r.Got = snapshot(bad, uintptr(m))
		r.Want = redzone.ExpectedRear(w, uintptr(rear), uintptr(bad), m)
		return r
	}
	return nil
}

// damage builds a report about pattern damage at bad, with up to 16 bytes
// found and expected (avail bytes of pattern remain from bad).
func (a *Allocator) damage(k Kind, op string, bad, slot unsafe.Pointer, c int, soff uint32, hd header, w uint64, avail int, detail string) *Report {
	r := a.newReport(k, op, bad, slot, c, soff, hd, detail)
	n := min(16, avail)
	r.Got = snapshot(bad, uintptr(n))
	r.Want = redzone.Expected(w, uintptr(bad), n)
	return r
}

// stateFreeing is the state Free's compare-and-swap moves a live block
// to: busy, while quarantineSmall verifies and poisons it.
const stateFreeing = stateBusy

// quarantineSmall is the hardening layer's part of smallDies, for a
// block whose header releaseSlot moved from old to busy: verify its
// canaries, record the free site, poison it and put it in this P's
// quarantine batch. Without a quarantine budget (and outside the
// always-quarantined classes) the slot is reused at once, so poison would
// be overwritten before anything could check it: the free is recorded,
// the header set free, and smallDies recycles the slot as release
// builds do (done false).
func (a *Allocator) quarantineSmall(op string, slot unsafe.Pointer, c int, soff uint32, old uint64, fp unsafe.Pointer) (done, ok bool) {
	h := a.h
	hd := fields(old)
	if patterns { // -asan builds have no canaries: the shadow stops the write
		if r := a.verifyCanaries(op, slot, c, soff, hd); r != nil {
			a.withdraw(slot, restate(old, stateBusy))
			a.report(r)
			return true, false
		}
	}
	rec := a.rec(c, soff)
	g, st := uint64(0), uint32(0)
	if h.depth > 0 {
		g, st = a.who(fp)
	} else {
		g = goid() // without stacks, no call to who
	}
	if h.profile != nil {
		a.profileRemove(uintptr(slot) + headerSize + hd.off)
	}
	quarantined := !h.noBudget || a.always[c].Load()
	if quarantined && patterns {
		body := unsafe.Add(slot, headerSize)
		redzone.Fill(slice(body, uintptr(classSize[c])), uintptr(body), redzone.Poison(h.poisonKey, uintptr(slot)))
	}

	// One pin for the sequence number, the record, the state change and
	// this P's quarantine batch (lock-free; a full batch goes to the
	// shared quarantine under one lock acquisition). The metadata guard
	// may take a lock, so it is opened before (closeMeta nil when it is
	// off: no call to make on every free).
	var closeMeta func()
	if h.guard.on {
		closeMeta = h.guard.open(unsafe.Pointer(rec))
	}
	pc := a.pin()
	rec.freeSeq, rec.freeG, rec.freeStack = a.takeSeq(pc, rec.allocSeq), g, st
	if !quarantined {
		a.unpin(pc)
		if closeMeta != nil {
			closeMeta()
		}
		storeRelease(hdrWord(slot), restate(old, stateFree))
		return false, true
	}
	it := quarantine.Item{Class: c, ID: uint64(soff), Bytes: int64(classSize[c] + headerSize)}
	storeRelease(hdrWord(slot), restate(old, stateQuarantined))
	if pc.countFree(c, hd.size) {
		pc.fold(c)
	}
	if pc.qn < len(pc.qpend) && pc.qbytes+it.Bytes <= h.pendCap {
		pc.qpend[pc.qn] = it
		pc.qn++
		pc.qbytes += it.Bytes
		a.unpin(pc)
		if closeMeta != nil {
			closeMeta()
		}
		return true, true
	}
	var batch [len(pc.qpend) + 1]quarantine.Item
	n := copy(batch[:], pc.qpend[:pc.qn])
	batch[n] = it
	pc.qn, pc.qbytes = 0, 0
	a.unpin(pc)
	if closeMeta != nil {
		closeMeta()
	}
	a.quarantineBatch(pc.qi, batch[:n+1])
	return true, true
}

func (a *Allocator) verifyPoison(op string, slot unsafe.Pointer, c int, soff uint32, hd header) *Report {
	if !patterns {
		return nil
	}
	if i, w := a.poisonBroken(slot, c); i >= 0 {
		return a.poisonDamage(op, slot, c, soff, hd, w, i)
	}
	return nil
}

// poisonBroken returns the first byte of a freed slot's body whose poison
// w is damaged, or -1 (the slot's header says it holds poison).
func (a *Allocator) poisonBroken(slot unsafe.Pointer, c int) (i int, w uint64) {
	body := unsafe.Add(slot, headerSize)
	w = redzone.Poison(a.h.poisonKey, uintptr(slot))
	return redzone.Verify(slice(body, uintptr(classSize[c])), uintptr(body), w), w
}

// poisonDamage is the WriteAfterFree report for a freed slot whose
// poison w is damaged from byte i of its body on.
func (a *Allocator) poisonDamage(op string, slot unsafe.Pointer, c int, soff uint32, hd header, w uint64, i int) *Report {
	return a.damage(WriteAfterFree, op, unsafe.Add(slot, headerSize+uintptr(i)), slot, c, soff, hd, w, int(classSize[c])-i,
		"a freed block's poison was overwritten after its Free")
}

// verifyClearMin is the smallest payload verified and zeroed in one
// pass: below it the three short verifies (before, in and after the
// payload) cost more than the second pass they save (the 64-byte pair
// ran 6% slower).
const verifyClearMin = 512

// verifyPoisonClear is verifyPoison for a slot about to be handed out
// with an n-byte payload at payOff: the payload's poison is verified and
// zeroed in one pass, the bytes before and after it verified, and the
// first damaged byte in address order reported (the payload may be
// zeroed already when the damage is after it).
func (a *Allocator) verifyPoisonClear(op string, slot unsafe.Pointer, c int, soff uint32, hd header, payOff uintptr, n int) *Report {
	body := unsafe.Add(slot, headerSize)
	w := redzone.Poison(a.h.poisonKey, uintptr(slot))
	size := uintptr(classSize[c])
	end := payOff + uintptr(n)
	i := redzone.Verify(slice(body, payOff), uintptr(body), w)
	if injecting && bug(bugReuseRedzones) {
		i = -1 // seeded bug: the bytes before the payload are not verified
	}
	if i < 0 {
		p := unsafe.Add(body, payOff)
		if injecting && bug(bugReuseClear) {
			clear(slice(p, uintptr(n))) // seeded bug: the payload is not verified
		} else if i = redzone.VerifyClear(slice(p, uintptr(n)), uintptr(p), w); i >= 0 {
			i += int(payOff)
		}
	}
	if i < 0 {
		rear := unsafe.Add(body, end)
		if i = redzone.Verify(slice(rear, size-end), uintptr(rear), w); i >= 0 {
			i += int(end)
		}
		if injecting && bug(bugReuseRedzones) {
			i = -1 // seeded bug: nor those after it
		}
	}
	if i < 0 {
		return nil
	}
	return a.poisonDamage(op, slot, c, soff, hd, w, i)
}

// verifyStable is verifySmall for a slot other goroutines may be freeing,
// evicting or reallocating right now: damage counts only if the header
// did not change while the slot was read, and is still there when read
// again (a slot freed and reallocated with an identical header in between
// has been re-armed by then).
func (a *Allocator) verifyStable(op string, slot unsafe.Pointer, c int, soff uint32, hd header, old uint64) *Report {
	if hd.state != stateAllocated && hd.state != stateQuarantined && hd.state != stateFreePoisoned {
		return nil
	}
	hookCheck(slot) // tests: another goroutine acts right here
	for range 2 {
		if a.peekSmall(slot, c, soff, hd) == nil || loadHeader(slot) != old {
			return nil
		}
	}
	return a.verifySmall(op, slot, c, soff, hd, old)
}

// peekSmall verifies without side effects.
func (a *Allocator) peekSmall(slot unsafe.Pointer, c int, soff uint32, hd header) *Report {
	if hd.state == stateAllocated {
		return a.verifyCanaries("Check", slot, c, soff, hd)
	}
	return a.verifyPoison("Check", slot, c, soff, hd)
}

// verifySmall is Check's and Close's look at one slot, whose header
// word old decodes to hd.
func (a *Allocator) verifySmall(op string, slot unsafe.Pointer, c int, soff uint32, hd header, old uint64) *Report {
	switch hd.state {
	case stateAllocated:
		if r := a.verifyCanaries(op, slot, c, soff, hd); r != nil {
			// Reported once; its Free just retires it.
			atomic.CompareAndSwapUint64(hdrWord(slot), old, restate(old, stateDamaged))
			return r
		}
	case stateQuarantined:
		// In the quarantine, or evicted to a free list, where the Alloc
		// that takes it claims it from this very word: the withdrawal
		// settles the race, and a lost one means the damage seen may be
		// that Alloc's zeroing (a real write after free is then that
		// Alloc's to report: it verifies the poison first).
		if r := a.verifyPoison(op, slot, c, soff, hd); r != nil {
			if !a.withdraw(slot, old) {
				return nil
			}
			return r
		}
	case stateFreePoisoned:
		// Close and Reset only (check): the slot is on a free list, and
		// nothing runs beside them that could hand it out.
		return a.verifyPoison(op, slot, c, soff, hd)
	}
	return nil
}

// seal makes a purged slab's committed pages read-only, as
// hardened_malloc maps PROT_NONE over a slab it gives back: a write
// through a stale pointer into it faults at the write (CatchFault, the
// crash monitor: a use after free, with the slot's last sites, which the
// site records keep) instead of landing in a page of zeros that the
// slot's next Alloc clears unseen. Reads still see zeros, which is what
// Free of a stale pointer, Check, Explain and Reset look for in a slot's
// header there (slabPurged); they never write to a slot that reads as
// never used. If the kernel refuses (too many mappings), the slab stays
// writable, as release builds leave it.
func (a *Allocator) seal(mem []byte) { unix.Mprotect(mem, unix.PROT_READ) }

// unseal makes a purged slab writable again before its slots are
// handed out (take's revival).
func (a *Allocator) unseal(mem []byte) error {
	if err := unix.Mprotect(mem, unix.PROT_READ|unix.PROT_WRITE); err != nil {
		return mmapErr(err)
	}
	return nil
}

// keepDamaged says whether slab s of class c, every slot of it free and
// about to be purged (cl.mu held), must stay mapped instead: a slot that
// left the quarantine poisoned and has been written since. A purge makes
// its pages read as zeros, which the slot's next Alloc takes for a fresh
// slot, so the write after free would go unreported. Only the first used
// slots have headers (slabState.used); nothing else runs on them (they
// are all in the central list, whose lock is held). Nothing is reported
// here, under the class lock (OnReport may allocate): the slot reports
// itself when handed out, or Close and Reset do.
func (a *Allocator) keepDamaged(c, s int, used uint32) bool {
	if !patterns {
		return false
	}
	// A slot evicted from the quarantine holds poison under either
	// state: freed, poisoned (drainQuarantine) or still quarantined
	// (quarantineBatch leaves the header to the slot's next Alloc).
	poisoned, evicted := stateFreePoisoned, stateQuarantined
	if bug(bugPurgeUnverified) {
		evicted = stateFreePoisoned // seeded bug: "an evicted slot is free, poisoned"
	}
	stride := uint32(classSize[c] + headerSize)
	base := uint32(s) << classSlabShift[c]
	for i := range used {
		soff := base + i*stride
		slot := a.slotAt(c, soff)
		old := loadHeader(slot)
		if old == 0 {
			continue
		}
		hd, ok := a.decode(slot, old)
		if !ok {
			return true // damaged header: its Alloc reports it
		}
		if hd.state == stateWithdrawn {
			return true // reported; never reused, not even as fresh pages
		}
		if hd.state == poisoned || hd.state == evicted {
			if i, _ := a.poisonBroken(slot, c); i >= 0 {
				return true
			}
		}
	}
	return false
}

// reportHeader reports a slot whose header word v fails its checksum.
func (a *Allocator) reportHeader(op string, slot unsafe.Pointer, c int, v uint64) {
	a.report(a.headerReport(op, slot, c, v))
}
