//go:build race

package hardened

import "math/rand/v2"

// Under the race detector the per-P trick (procPin) would look like a data
// race, because the detector cannot see that pinning excludes other
// goroutines. Race builds therefore lock a cache chosen at random: the same
// code paths, checked for real.

// lockedCaches is true: every cache is taken under its lock.
const lockedCaches = true

func (a *Allocator) pin() *cache {
	var c *cache
	if a.x.Cache != nil {
		c = a.chosen()
	} else {
		c = a.caches[rand.N(len(a.caches))]
	}
	c.mu.Lock()
	return c
}

func (a *Allocator) unpin(c *cache) { c.mu.Unlock() }

// owner is 0: race builds lock a cache chosen at random per operation,
// which no slab can follow.
func (a *Allocator) owner() uint16 { return 0 }

func (c *cache) lockForRead()   { c.mu.Lock() }
func (c *cache) unlockForRead() { c.mu.Unlock() }

func (a *Allocator) popFast(c, n int) (uint32, uint64, bool) {
	pc := a.pin()
	defer a.unpin(pc)
	off, ok := pc.pop(c, n)
	if !ok {
		return 0, pc.due(a), false
	}
	return off, a.allocSeq(pc, c, off), true
}

func (a *Allocator) pushFast(c int, off uint32, size int) bool {
	if bug(bugDoublePush) {
		return false // the seeded bug lives in pushSlot
	}
	pc := a.pin()
	defer a.unpin(pc)
	return pc.push(c, off, size, a.ccap[c])
}
