//go:build hardened && !asan

package hardened

import (
	"sync"
	"unsafe"

	"golang.org/x/sys/unix"
)

// This file is the hardening layer's metadata guard
// (Options.ProtectMetadata): the site records stay read-only outside the
// writes the allocator makes to them.

// metaGuard is the seed notes' scoped metadata guard: with
// ProtectMetadata the site records are PROT_READ, and every write to them
// happens between open(addr) and the closer it returns. Only the page
// holding addr is made writable; opens of one page nest and may come from
// many goroutines at once: the first opener makes it writable, the last
// closer read-only again. Reads need no guard.
type metaGuard struct {
	on    bool
	mu    sync.Mutex
	depth map[uintptr]int // open count per page offset
	mem   []byte
}

func nop() {}

// siteRecordOf returns the site record of live small block b when the
// guard is on, else nil (harness.SiteRecord).
func (a *Allocator) siteRecordOf(b []byte) []byte {
	p := unsafe.Pointer(unsafe.SliceData(b))
	off := uintptr(p) - uintptr(a.base)
	if p == nil || !a.h.guard.on || a.closed.Load() || off >= a.regionSize() {
		return nil
	}
	c, soff, h, ok := a.smallAt(p, off)
	if !ok || h.state != stateAllocated {
		return nil
	}
	return unsafe.Slice((*byte)(unsafe.Pointer(a.rec(c, soff))), recSize)
}

func (g *metaGuard) init(mem []byte, on bool) {
	g.on, g.mem = on, mem
	g.depth = make(map[uintptr]int)
}

// open makes the metadata page holding p writable until the returned
// closer is called.
func (g *metaGuard) open(p unsafe.Pointer) (closer func()) {
	if !g.on {
		return nop
	}
	pg := (uintptr(p) - uintptr(unsafe.Pointer(&g.mem[0]))) &^ (pageSize - 1)
	g.mu.Lock()
	if g.depth[pg] == 0 {
		unix.Mprotect(g.mem[pg:pg+pageSize], unix.PROT_READ|unix.PROT_WRITE)
	}
	g.depth[pg]++
	g.mu.Unlock()
	return func() { g.close(pg) }
}

func (g *metaGuard) close(pg uintptr) {
	g.mu.Lock()
	last := g.depth[pg] == 1
	if bug(bugMetaLeftOpen) {
		last = g.depth[pg] == 0 // seeded bug: the count read before its decrement
	}
	g.depth[pg]--
	if last {
		delete(g.depth, pg)
		unix.Mprotect(g.mem[pg:pg+pageSize], unix.PROT_READ)
	}
	g.mu.Unlock()
}
