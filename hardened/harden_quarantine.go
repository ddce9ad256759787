//go:build hardened && !asan

package hardened

import (
	"sync/atomic"
	"unsafe"

	"github.com/hardalloc/hardalloc/internal/ctl"
	"github.com/hardalloc/hardalloc/quarantine"
)

// This file is the hardening layer's quarantine of small blocks: each P
// batches its frees (qBatch) and pushes them into the shared, sharded
// quarantine under one lock; what the quarantine evicts goes back to this
// P's cache as it is. Its header still says quarantined: the Alloc that
// takes the slot claims it from that state with a compare-and-swap (which
// settles any race with Check, which may withdraw it first) and verifies
// its poison in the pass that zeroes it (armSmall, harden_small.go). An
// eviction that changed the header itself would read a line freed a
// quarantine ago, cold in every cache, and swap it (10-13% of the
// 16-256 B pair, measured), for a state change that the Alloc taking the
// slot, which writes that line anyway, makes for almost nothing.
// Also the budgets, the drain an out-of-memory Alloc does, and the walks
// Stats and Audit make.

// qBatch is the most freed blocks a P batches for the quarantine.
const qBatch = ctl.QuarantineBatch

// quarantineBudget is Options.QuarantineBytes with its default applied.
func (a *Allocator) quarantineBudget() int64 {
	if a.opts.QuarantineBytes == 0 {
		return 4 << 20
	}
	return a.opts.QuarantineBytes
}

// evict takes a slot out of quarantine eagerly, for the paths that are
// not a P's push (drainQuarantine, two seeded bugs): one compare-and-swap
// to free, poisoned (free without patterns, -asan builds), which settles
// any race with Check, which may withdraw it first.
func (a *Allocator) evict(c int, soff uint32) bool {
	slot := a.slotAt(c, soff)
	old := loadHeader(slot)
	hd, ok := a.decode(slot, old)
	if !ok || hd.state != stateQuarantined {
		if !ok {
			a.reportHeader("quarantine", slot, c, old)
		}
		return false // withdrawn after a report (e.g. by Check): never reused
	}
	freed := stateFree
	if patterns {
		freed = stateFreePoisoned
	}
	return atomic.CompareAndSwapUint64(hdrWord(slot), old, restate(old, freed))
}

// drainQuarantine releases every quarantined small block.
func (a *Allocator) drainQuarantine() {
	// This P's batch too; other Ps' batches (at most pendCap bytes each)
	// cannot be touched while their owners may be running.
	var buf [qBatch]quarantine.Item
	pc := a.pin()
	batch := pc.takeBatch(&buf)
	a.unpin(pc)
	a.recycle(append(batch, a.h.q.Drain()...))
}

// drainBatches releases every P's batch of freed blocks, as
// drainQuarantine does its own P's (settle: the allocator is quiet, so no
// batch's owner runs meanwhile).
func (a *Allocator) drainBatches() {
	var buf [qBatch]quarantine.Item
	for _, pc := range a.allCaches() {
		pc.lockForRead()
		batch := pc.takeBatch(&buf)
		pc.unlockForRead()
		a.recycle(batch)
	}
}

// takeBatch moves the cache's batch of freed blocks into buf (pinned or
// locked) and returns them.
func (pc *cache) takeBatch(buf *[qBatch]quarantine.Item) []quarantine.Item {
	n := copy(buf[:], pc.qpend[:pc.qn])
	pc.qn, pc.qbytes = 0, 0
	return buf[:n]
}

// recycle puts quarantined blocks back on free lists, each that evict
// claims.
func (a *Allocator) recycle(items []quarantine.Item) {
	for _, e := range items {
		if a.evict(e.Class, uint32(e.ID)) {
			a.pushSlot(e.Class, uint32(e.ID), -1)
		}
	}
}

// pendCap is how many bytes of freed blocks each P batches before pushing
// them into the shared quarantine: an eighth of the budget shared by the
// Ps, at most 32 KiB, and none under a Limit. The shared quarantine's
// budget is cut by the same amount per P (sharedQuarantineBudget), so
// batched and queued blocks together stay within Options.QuarantineBytes.
func (a *Allocator) pendCap(budget int64) int64 {
	if budget <= 0 || a.opts.Limit > 0 {
		// Under a Limit, an allocation that fails drains the quarantine,
		// which cannot reach other Ps' batches: no batching (as no per-P
		// slot caching).
		return 0
	}
	return min(budget/8/int64(len(a.caches)+1), 32<<10) // the Ps and the spare
}

// sharedQuarantineBudget is the budget of the shared quarantine: the
// whole budget less what the Ps' batches, pendCap bytes each, may hold.
func (a *Allocator) sharedQuarantineBudget(pendCap int64) int64 {
	return a.quarantineBudget() - pendCap*int64(len(a.caches)+1)
}

// prefetchSlot requests the first lines of a slot leaving the quarantine
// (the Alloc that takes it next, most often soon and from this P's cache,
// claims its header, verifies its poison and streams the rest) and its
// site record, which that Alloc writes.
func (a *Allocator) prefetchSlot(e quarantine.Item) {
	s := uintptr(a.slotAt(e.Class, uint32(e.ID)))
	lines := int(min(3*64, classSize[e.Class]+headerSize)+63) / 64
	prefetchSlot4(s, lines, uintptr(unsafe.Pointer(a.rec(e.Class, uint32(e.ID)))), shadowLine(s))
}

// quarantineBatch pushes a P's batch of freed blocks into the quarantine
// and puts what it evicts back on free lists, headers untouched (see the
// top of this file). Evicted blocks were freed a quarantine ago and are
// long gone from the CPU caches: their first lines and site records are
// prefetched, so that the Allocs that take them soon find them there.
func (a *Allocator) quarantineBatch(shard int, items []quarantine.Item) {
	var buf [2 * qBatch]quarantine.Item
	if bug(bugQuarantineLast) && len(items) > 1 {
		// seeded bug: the block that filled the batch goes straight back
		// ("it is the hottest"), skipping the quarantine
		last := items[len(items)-1]
		items = items[:len(items)-1]
		defer a.recycle([]quarantine.Item{last})
	}
	ev := a.h.q.PushAll(shard, items, buf[:])
	for _, e := range ev {
		a.prefetchSlot(e)
	}
	// Back to this P's cache under one pin; what does not fit goes the
	// slow way.
	k := 0
	if !bug(bugDoublePush) {
		pc := a.pin()
		for ; k < len(ev); k++ {
			c := ev[k].Class
			if pc.n[c] >= a.ccap[c] {
				break
			}
			pc.free[c][pc.n[c]] = uint32(ev[k].ID)
			pc.n[c]++
		}
		a.unpin(pc)
	}
	for _, e := range ev[k:] {
		a.pushSlot(e.Class, uint32(e.ID), -1)
	}
	if bug(bugEvictTwice) && len(ev) > 0 {
		// Seeded bug: an evicted item goes back into the quarantine,
		// to be evicted (and recycled) a second time.
		var again [2 * qBatch]quarantine.Item
		a.recycle(a.h.q.PushAll(shard, ev[:1], again[:0]))
	}
}

func (a *Allocator) quarantineStats() (int64, int64) {
	n, b := a.h.q.Count()
	for _, pc := range a.allCaches() {
		pc.lockForRead()
		n += pc.qn
		b += pc.qbytes
		pc.unlockForRead()
	}
	a.large.mu.Lock()
	defer a.large.mu.Unlock()
	return int64(n) + int64(len(a.large.quarantined)), b + a.large.qbytes
}

// alwaysQuarantine makes the class of n-byte requests always
// quarantined (Options.AlwaysQuarantine at New; package thread's capsule
// at its first Start on the allocator, through package harness).
func (a *Allocator) alwaysQuarantine(n int) {
	h := a.h
	if n < 0 || n+h.front+h.rear > maxSmall {
		return
	}
	c := sizeClass(uintptr(n + h.front + h.rear))
	if !a.always[c].Load() {
		h.q.SetAlways(c)
		a.always[c].Store(true)
	}
}

// quarantined calls fn for every small slot in the quarantine or in a P's
// batch on its way there (Audit).
func (a *Allocator) quarantined(fn func(c int, off uint32)) {
	for _, pc := range a.allCaches() {
		pc.lockForRead()
		for _, it := range pc.qpend[:pc.qn] {
			fn(it.Class, uint32(it.ID))
		}
		pc.unlockForRead()
	}
	a.h.q.Each(func(it quarantine.Item) { fn(it.Class, uint32(it.ID)) })
}
