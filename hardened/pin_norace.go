//go:build !race

package hardened

// lockedCaches is false: the caches are per P, pinned (procpin.go).
const lockedCaches = false

// pin returns the cache of the current P, pinned. Callers must call unpin
// with the same cache and must not block in between.
//
//go:norace
func (a *Allocator) pin() *cache {
	pid := procPin()
	if uint(pid) < uint(len(a.pinned)) {
		return a.pinned[pid]
	}
	return a.pinSpare()
}

// pinSpare: GOMAXPROCS grew after New; share the spare cache under its lock.
//
//go:noinline
func (a *Allocator) pinSpare() *cache {
	procUnpin()
	if a.x.Cache != nil {
		return a.pinChosen()
	}
	a.spare.mu.Lock()
	return a.spare
}

// pinChosen locks the cache the harness's Cache (ctl.Extra) chooses.
//
//go:noinline
func (a *Allocator) pinChosen() *cache {
	c := a.chosen()
	c.mu.Lock()
	return c
}

// unpin ends what pin began.
//
//go:norace
func (a *Allocator) unpin(c *cache) {
	if c.shared {
		c.mu.Unlock()
		return
	}
	procUnpin()
}

// owner names this P's cache to central.take, which prefers the slabs it
// has taken from before: its index + 1. 0 (no preference) when the
// harness chooses the caches (ctl.Extra.Cache), whose choices the program
// replays and the running P must not change; and under a Limit, where
// the caches hold no slots, so there is no per-P stream of slots to keep
// apart, and the P a goroutine happens to run on must not change which
// slab its blocks come from.
//
//go:norace
func (a *Allocator) owner() uint16 {
	if a.x.Cache != nil || a.opts.Limit > 0 {
		return 0
	}
	pid := procPin()
	procUnpin()
	if uint(pid) < uint(len(a.pinned)) {
		return uint16(pid + 1)
	}
	return 0
}

// lockForRead and unlockForRead bracket a read of another P's counters.
// Without the race detector the counters are read without a lock (word
// reads of a snapshot that is approximate under concurrency anyway).
func (c *cache) lockForRead()   {}
func (c *cache) unlockForRead() {}

// popFast pops a free slot of class c from this P's cache, counting an
// n-byte allocation; false if the cache is empty (the caller goes slow).
// Under the same pin it takes the allocation's sequence number (allocSeq:
// hardened builds; release builds have none, 0). When this P's sampling
// countdown has run out instead, it returns false with seq seqSample.
//
//go:norace
//go:nocheckptr
func (a *Allocator) popFast(c, n int) (uint32, uint64, bool) {
	pid := procPin()
	if uint(pid) < uint(len(a.pinned)) {
		pc := a.pinned[pid]
		if off, ok := pc.pop(c, n); ok {
			seq := a.allocSeq(pc, c, off)
			procUnpin()
			return off, seq, true
		}
		if seq := pc.due(a); seq != 0 {
			procUnpin()
			return 0, seq, false
		}
	}
	procUnpin()
	if a.x.Cache != nil {
		return a.popChosen(c, n)
	}
	return 0, 0, false
}

// pushFast pushes a freed slot onto this P's cache if it has room.
//
//go:norace
func (a *Allocator) pushFast(c int, off uint32, size int) bool {
	if bug(bugDoublePush) {
		return false // the seeded bug lives in pushSlot
	}
	pid := procPin()
	if uint(pid) < uint(len(a.pinned)) && a.pinned[pid].push(c, off, size, a.ccap[c]) {
		procUnpin()
		return true
	}
	procUnpin()
	if a.x.Cache != nil {
		return a.pushChosen(c, off, size)
	}
	return false
}

// popChosen and pushChosen are popFast and pushFast on the cache
// the harness's Cache (ctl.Extra) chooses.
//
//go:noinline
func (a *Allocator) popChosen(c, n int) (uint32, uint64, bool) {
	pc := a.pinChosen()
	defer pc.mu.Unlock()
	off, ok := pc.pop(c, n)
	if !ok {
		return 0, pc.due(a), false
	}
	return off, a.allocSeq(pc, c, off), true
}

//go:noinline
func (a *Allocator) pushChosen(c int, off uint32, size int) bool {
	pc := a.pinChosen()
	defer pc.mu.Unlock()
	return pc.push(c, off, size, a.ccap[c])
}
