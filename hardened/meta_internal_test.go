//go:build hardened || asan

package hardened

import (
	"testing"
	"unsafe"
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
