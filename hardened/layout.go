package hardened

import (
	"unsafe"

	"github.com/hardalloc/hardalloc/internal/ctl"
)

// layoutOf returns the layout of the live block b; false if b is not the
// start of a live block of a.
func (a *Allocator) layoutOf(b []byte) (ctl.Layout, bool) {
	p := unsafe.Pointer(unsafe.SliceData(b))
	front, rear := a.pads()
	l := ctl.Layout{Front: front, Rear: rear, Class: -1}
	if p == nil || a.closed.Load() {
		return l, false
	}
	off := uintptr(p) - uintptr(a.base)
	if off >= a.regionSize() {
		if a.zeroContains(uintptr(p)) {
			l.Zero, l.Class = true, 0
			return l, true
		}
		if a.sampleContains(uintptr(p)) {
			s := a.samp
			s.mu.Lock()
			i := s.sampledAt(uintptr(p))
			live := i >= 0 && s.blocks[i].live && s.blocks[i].p == uintptr(p)
			s.mu.Unlock()
			l.Sampled = true
			return l, live
		}
		a.large.mu.Lock()
		lb := a.large.live[uintptr(p)]
		a.large.mu.Unlock()
		l.Large = true
		return l, lb != nil
	}
	c, _, h, ok := a.smallAt(p, off)
	if !ok || h.state != stateAllocated {
		return l, false
	}
	l.Offset, l.Class = headerSize+int(h.off), c
	return l, true
}

// smallAt decodes the header of the slot holding p, off bytes into the
// class regions: its class, offset and header, and false unless the
// header is valid and puts the payload at p.
func (a *Allocator) smallAt(p unsafe.Pointer, off uintptr) (int, uint32, header, bool) {
	slot, c, soff, ok := a.locate(off)
	if !ok {
		return 0, 0, header{}, false
	}
	h, ok := a.decode(slot, loadHeader(slot))
	return c, soff, h, ok && unsafe.Add(slot, headerSize+h.off) == p
}

// quarantinedAt reports whether b, a block just freed, waits in the
// quarantine: a small block's (or a P's batch on its way there) when its
// slot's header says so, b starts where that header puts the payload and
// the quarantine holds the slot (an evicted slot's header says
// quarantined until its next Alloc); a large block's (hardened builds:
// PROT_NONE until it leaves) when it is in the large-block quarantine.
func (a *Allocator) quarantinedAt(b []byte) bool {
	p := unsafe.Pointer(unsafe.SliceData(b))
	off := uintptr(p) - uintptr(a.base)
	if p == nil || a.closed.Load() {
		return false
	}
	if off >= a.regionSize() {
		l := &a.large
		l.mu.Lock()
		defer l.mu.Unlock()
		for _, lb := range l.quarantined {
			if lb.p == p {
				return true
			}
		}
		return false
	}
	c, soff, h, ok := a.smallAt(p, off)
	if !ok || h.state != stateQuarantined {
		return false
	}
	held := false
	a.quarantined(func(qc int, qoff uint32) { held = held || qc == c && qoff == soff })
	return held
}

// releasedAt reports whether b, a freed small block, lies in a purged
// slab (harness.Released).
func (a *Allocator) releasedAt(b []byte) bool {
	_, c, soff, ok := a.slotOf(b)
	return ok && a.slabPurged(c, soff)
}

// slotLiveAt reports whether the small slot holding b, a block freed
// earlier, is allocated now: handed out again (at any payload offset),
// and not yet freed.
func (a *Allocator) slotLiveAt(b []byte) bool {
	slot, _, _, ok := a.slotOf(b)
	if !ok {
		return false
	}
	h, ok := a.decode(slot, loadHeader(slot))
	return ok && h.state == stateAllocated
}

// slotOf locates the committed small slot holding b's first byte, for
// the harness's questions about a block it freed; ok is false after
// Close, outside the class regions, or in no committed slot.
func (a *Allocator) slotOf(b []byte) (slot unsafe.Pointer, c int, soff uint32, ok bool) {
	p := unsafe.Pointer(unsafe.SliceData(b))
	off := uintptr(p) - uintptr(a.base)
	if p == nil || a.closed.Load() || off >= a.regionSize() {
		return nil, 0, 0, false
	}
	return a.locate(off)
}

// MaxSmall is the largest slot payload: a request that, with its
// redzones (hardened builds) and alignment slack, needs more than this is
// a large block, in its own mapping between guard pages.
const MaxSmall = maxSmall
