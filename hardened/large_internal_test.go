package hardened

import (
	"testing"
	"unsafe"
)

// A freed block's record and a newer block mapped over part of its range
// (the old mapping unmapped, the address space reused): a Free through
// the new block's address is about the new block (FuzzMisuse found a
// double free reported as an interior free of the block gone before).
func TestLargeFindNewestOverlap(t *testing.T) {
	mem := make([]byte, 1<<20) // stands in for the address range; nothing is mapped
	old := &largeBlock{mem: mem[:600<<10], p: unsafe.Pointer(&mem[4096]), size: 500 << 10, span: 500 << 10, freed: true}
	nb := &largeBlock{mem: mem[400<<10:], p: unsafe.Pointer(&mem[404<<10]), size: 100 << 10, span: 100 << 10, freed: true}
	var l largeHeap
	l.init()
	l.remember(old)
	l.remember(nb)
	if got := l.find(uintptr(nb.p)); got != nb {
		t.Fatalf("find(the newer block's start) = %p, want the newer block %p (the older one is %p)", got, nb, old)
	}
	// allocLarge drops records a new mapping overlaps.
	l.recent[1] = nil
	l.recentPos = 1
	l.forgetOverlapping(nb)
	if l.recent[0] != nil {
		t.Fatal("the record of a block whose range a new mapping reuses was kept")
	}
}
