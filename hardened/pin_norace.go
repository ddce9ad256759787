//go:build !race

package hardened

import (
	_ "unsafe" // for go:linkname
)

// procPin disables preemption and returns the current P's id. While pinned
// the goroutine owns that P's cache outright: no lock, no atomic. It must not
// block, so every path that may sleep (a mutex, a syscall) unpins first.
// runtime.procPin is kept linkable for this use (go.dev/issue/67401).
//
//go:linkname procPin runtime.procPin
func procPin() int

//go:linkname procUnpin runtime.procUnpin
func procUnpin()

// pin returns the cache of the current P, pinned. Callers must call unpin
// with the same cache and must not block in between.
func (a *Allocator) pin() *cache {
	pid := procPin()
	if pid < len(a.caches) {
		return a.caches[pid]
	}
	// GOMAXPROCS grew after New: share the spare cache under its lock.
	procUnpin()
	a.spare.mu.Lock()
	return a.spare
}

func (a *Allocator) unpin(c *cache) {
	if c == a.spare {
		c.mu.Unlock()
		return
	}
	procUnpin()
}

// lockForRead and unlockForRead bracket a read of another P's counters.
// Without the race detector the counters are read without a lock (word
// reads of a snapshot that is approximate under concurrency anyway).
func (c *cache) lockForRead()   {}
func (c *cache) unlockForRead() {}
