//go:build hardened || asan

package hardened

import (
	"testing"
	"unsafe"

	"github.com/hardalloc/hardalloc/internal/ctl"
)

// A stray write into protected metadata faults and is reported.
func TestProtectMetadata(t *testing.T) {
	var got []*Report
	a, err := New(Options{Seed: 1, ProtectMetadata: true, OnReport: func(r *Report) { got = append(got, r) }})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b := allocT(t, a, 64) // writes metadata through the guard: must not fault
	a.Free(b)
	r := a.CatchFault(func() { a.h.meta[100] = 1 })
	if r == nil || r.Kind != MetadataWrite || len(got) != 1 {
		t.Fatalf("stray metadata write: %v", r)
	}
	// Nested opens keep the page writable until the last close; other
	// pages stay read-only meanwhile.
	p := unsafe.Pointer(&a.h.meta[200])
	c1 := a.h.guard.open(p)
	c2 := a.h.guard.open(p)
	c2()
	a.h.meta[200] = 1
	if r := a.CatchFault(func() { a.h.meta[int(pageSize)+200] = 1 }); r == nil {
		t.Fatal("a page that was not opened is writable")
	}
	c1()
	if r := a.CatchFault(func() { a.h.meta[300] = 1 }); r == nil {
		t.Fatal("metadata writable after the last close")
	}
}

// Hardened builds junk a never-used slot's payload as armSmall hands it
// out (JunkFill), exactly the n bytes at payOff, and only in a slab whose
// pages came zero from the OS.
func TestJunkAtHandout(t *testing.T) {
	a, err := newWith(Options{Seed: 2}, ctl.Extra{JunkFill: 0xa5})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b := allocT(t, a, 100)
	_, c, _, _ := a.locate(addrOf(b) - uintptr(a.base))
	var pc *cache
	for _, p := range a.allCaches() {
		if p.n[c] > 0 {
			pc = p
		}
	}
	if pc == nil {
		t.Skip("no never-used slot of the class is cached")
	}
	off := pc.free[c][pc.n[c]-1]
	slot := a.slotAt(c, off)
	a.junkPayload(slot, c, off, 32, 40)
	for i := uintptr(0); i < uintptr(classSize[c]); i++ {
		want := byte(0)
		if i >= 32 && i < 72 {
			want = 0xa5
		}
		if got := peekByte(unsafe.Add(slot, headerSize+i)); got != want {
			t.Fatalf("byte %d of the slot's body holds %#x, want %#x", i, got, want)
		}
	}
	a.Free(b)
}
