//go:build race

package hardened

import "math/rand/v2"

// Under the race detector the per-P trick (procPin) would look like a data
// race, because the detector cannot see that pinning excludes other
// goroutines. Race builds therefore lock a cache chosen at random: the same
// code paths, checked for real.

func (a *Allocator) pin() *cache {
	c := a.caches[rand.N(len(a.caches))]
	c.mu.Lock()
	return c
}

func (a *Allocator) unpin(c *cache) { c.mu.Unlock() }

func (c *cache) lockForRead()   { c.mu.Lock() }
func (c *cache) unlockForRead() { c.mu.Unlock() }
