package hardened

import (
	"testing"
	"unsafe"
)

// shadowOfSlot, set by -asan builds' tests (shadow_internal_test.go),
// returns whether each byte of a slot is poisoned to ASan; nil elsewhere.
var shadowOfSlot func(slot unsafe.Pointer, n int) []bool

// Alloc's and Free's fast paths and the general paths (alloc, free) leave
// a block in the same state: the same header fields, the payload where
// its slot puts it, exactly the payload addressable to ASan, the same
// counts in Stats, and a dead block the same header state, poisoned. The fast paths keep only
// the pointer checks of their own (payload offset, Free's inlined
// decode); a block is born and dies in smallBorn and smallDies on both.
func TestFastPathSameAsGeneral(t *testing.T) {
	for _, minAlign := range []int{0, 64} {
		a, err := New(Options{Seed: 9, MinAlign: minAlign, OnReport: func(r *Report) { t.Errorf("report:\n%s", r) }})
		if err != nil {
			t.Fatal(err)
		}
		type state struct {
			h      header
			payOff uintptr
		}
		look := func(b []byte) (state, unsafe.Pointer) {
			p := unsafe.Pointer(unsafe.SliceData(b))
			slot, c, _, ok := a.locate(uintptr(p) - uintptr(a.base))
			if !ok {
				t.Fatalf("%p is in no slot", p)
			}
			h, ok := a.decode(slot, loadHeader(slot))
			if !ok {
				t.Fatalf("the header of %p does not decode", p)
			}
			st := state{h: h, payOff: uintptr(p) - uintptr(slot) - headerSize}
			// The payload offset is the slot's own: the first address
			// past the front pad with the allocator's alignment.
			front, _ := a.pads()
			if want := alignUp(uintptr(slot)+headerSize+uintptr(front), a.minAlign) - uintptr(slot) - headerSize; st.payOff != want || h.off != want {
				t.Errorf("MinAlign %d: payload at %d (header: %d) of its slot, want %d", minAlign, st.payOff, h.off, want)
			}
			st.h.off, st.payOff = 0, 0
			if shadowOfSlot != nil {
				// Exactly the payload addressable, relative to it.
				sh := shadowOfSlot(slot, headerSize+int(classSize[c]))
				start := int(headerSize + h.off)
				for i, poisoned := range sh {
					if live := i >= start && i < start+h.size; poisoned == live {
						t.Errorf("MinAlign %d: byte %d of a live slot (payload %d+%d) is poisoned=%v", minAlign, i, start, h.size, poisoned)
						break
					}
				}
			}
			return st, slot
		}
		counts := func() (int64, int64, int64) {
			s := a.Stats()
			return s.Requested, s.LiveBlocks, s.Quarantined
		}
		same := func(what string, f, g state) {
			t.Helper()
			if f.h != g.h || f.payOff != g.payOff {
				t.Errorf("MinAlign %d, %s: fast path %+v at %d, general path %+v at %d", minAlign, what, f.h, f.payOff, g.h, g.payOff)
			}
		}
		for _, n := range []int{1, 15, 16, 17, 100, 500, 1000, 2000} {
			warm := allocT(t, a, n) // the refill stocks this P's cache
			r0, l0, _ := counts()
			fb, err := a.Alloc(n)
			if err != nil {
				t.Fatal(err)
			}
			r1, l1, _ := counts()
			gb, err := a.alloc("Alloc", n, 0)
			if err != nil {
				t.Fatal(err)
			}
			r2, l2, q2 := counts()
			if r1-r0 != r2-r1 || l1-l0 != l2-l1 {
				t.Errorf("MinAlign %d, Alloc(%d): the fast path counts +%d bytes %+d blocks, the general path +%d %+d",
					minAlign, n, r1-r0, l1-l0, r2-r1, l2-l1)
			}
			fs, fslot := look(fb)
			gs, gslot := look(gb)
			same("born", fs, gs)

			a.Free(fb)
			r3, l3, q3 := counts()
			if !a.free("Free", unsafe.Pointer(unsafe.SliceData(gb))) {
				t.Fatal("the general path refused a live block")
			}
			r4, l4, q4 := counts()
			if r3-r2 != r4-r3 || l3-l2 != l4-l3 || q3-q2 != q4-q3 {
				t.Errorf("MinAlign %d, Free(%d): the fast path counts %+d bytes %+d blocks %+d quarantined, the general path %+d %+d %+d",
					minAlign, n, r3-r2, l3-l2, q3-q2, r4-r3, l4-l3, q4-q3)
			}
			fd, _ := a.decode(fslot, loadHeader(fslot))
			gd, _ := a.decode(gslot, loadHeader(gslot))
			if fd.state != gd.state {
				t.Errorf("MinAlign %d, Free(%d): the fast path leaves state %v, the general path %v", minAlign, n, fd.state, gd.state)
			}
			if shadowOfSlot != nil {
				// Dead: the whole slot body poisoned.
				sz := headerSize + int(classSize[fs.h.class])
				for _, sh := range [][]bool{shadowOfSlot(fslot, sz), shadowOfSlot(gslot, sz)} {
					for i, poisoned := range sh {
						if !poisoned {
							t.Errorf("MinAlign %d, Free(%d): byte %d of a freed slot is addressable", minAlign, n, i)
							break
						}
					}
				}
			}
			a.Free(warm)
		}
		if err := a.auditSlots(); err != nil {
			t.Fatal(err)
		}
		if err := a.Close(); err != nil {
			t.Fatal(err)
		}
	}
}
