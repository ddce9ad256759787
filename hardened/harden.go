package hardened

import "unsafe"

// hardState is the hardening layer's state; nil in release builds.
type hardState struct {
	front, rear int // redzone bytes before and (at least) after the payload
}

func (a *Allocator) initHardened() error {
	h := &hardState{front: 16, rear: 16}
	switch r := a.opts.Redzone; {
	case r < 0:
		h.front, h.rear = 0, 0
	case r > 0:
		h.front = min((r+15)&^15, 4096)
		h.rear = h.front
	}
	a.h = h
	return nil
}

// pads returns the front and minimum rear redzone sizes (0, 0 in release
// builds, where this compiles to constants).
func (a *Allocator) pads() (front, rear int) {
	if !Enabled {
		return 0, 0
	}
	return a.h.front, a.h.rear
}

func (a *Allocator) slabGap(c int) uint64                     { return 0 }
func (a *Allocator) slabCommitted(c int, s uint64) bool       { return true }
func (a *Allocator) growMeta(c int, start, slab uint64) error { return nil }
func (a *Allocator) armSmall(c int, off uint32, slot unsafe.Pointer, b []byte) []byte {
	clear(b)
	return b
}
func (a *Allocator) rearmSmall(c int, off uint32, slot unsafe.Pointer, b []byte) {}
func (a *Allocator) freeSmallHardened(op string, slot unsafe.Pointer, c int, soff uint32, h header, old uint64) bool {
	for !a.releaseSlot(slot, c, soff, h, old, stateFree) {
		return a.free(op, unsafe.Add(slot, headerSize+h.off))
	}
	a.pushSlot(c, soff, h.size)
	return true
}
func (a *Allocator) fillSites(r *Report, c int, soff uint32)     {}
func (a *Allocator) armLarge(lb *largeBlock)                     {}
func (a *Allocator) freeLargeHardened(op string, lb *largeBlock) {}
func (a *Allocator) quarantineStats() (int64, int64)             { return 0, 0 }
func (a *Allocator) metaOpen()                                   {}
func (a *Allocator) metaClose()                                  {}
func (a *Allocator) verifySmall(op string, slot unsafe.Pointer, c int, soff uint32, h header) *Report {
	return nil
}
func (a *Allocator) verifyLarge(op string, lb *largeBlock) *Report { return nil }
func (a *Allocator) closeHardened()                                {}
