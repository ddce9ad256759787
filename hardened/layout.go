package hardened

import "unsafe"

// Layout says where a live block's bytes lie, for tools that must aim at
// its header or redzones (the fuzz layer's misuse programs) instead of
// re-deriving the allocator's layout rules.
type Layout struct {
	Large bool // a large block: its own mapping between guard pages, no in-band header
	Zero  bool // a hardened 0-byte block in the PROT_NONE zero-size region
	// Sampled is a block of Options.SampleRate's guarded pool: its own
	// page against a guard page, no in-band header, no redzones.
	Sampled bool
	// Offset is how far the payload starts after its slot's start: the
	// header (HeaderSize), the front redzone and any alignment slack.
	// Zero for large and zero-region blocks.
	Offset int
	// Front and Rear are the allocator's configured redzones (0 in
	// release builds): the bytes before the payload that are canary, and
	// the least after it.
	Front, Rear int
	// Class is the size class whose Stats count the block: its slot's
	// class (which a spilled block shares with larger requests), 0 for a
	// zero-region block, -1 for a large one.
	Class int
}

// HeaderSize is the size of a small slot's in-band header.
const HeaderSize = headerSize

// LayoutOf returns the layout of the live block b; false if b is not the
// start of a live block of a.
func (a *Allocator) LayoutOf(b []byte) (Layout, bool) {
	p := unsafe.Pointer(unsafe.SliceData(b))
	front, rear := a.pads()
	l := Layout{Front: front, Rear: rear, Class: -1}
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
	slot, c, _, ok := a.locate(off)
	if !ok {
		return l, false
	}
	h, ok := a.decode(slot, loadHeader(slot))
	if !ok || h.state != stateAllocated || unsafe.Add(slot, headerSize+h.off) != p {
		return l, false
	}
	l.Offset, l.Class = headerSize+int(h.off), c
	return l, true
}

// MaxSmall is the largest slot payload: a request that, with its
// redzones (hardened builds) and alignment slack, needs more than this is
// a large block, in its own mapping between guard pages.
const MaxSmall = maxSmall
