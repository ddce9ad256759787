package hardened

import (
	"runtime/debug"
	"testing"
	"unsafe"
)

// tailClass returns a new allocator (closed by t's cleanup), a request
// size n whose class c has at least a page of slab tail, and the bytes
// that class's slots span in a slab.
func tailClass(t *testing.T, opts Options) (a *Allocator, n, c int, used uintptr) {
	t.Helper()
	opts.Seed, opts.StackDepth = 1, -1
	a, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })
	front, rear := a.pads()
	n = 60000 - front - rear
	c = sizeClass(uintptr(n + front + rear))
	used = uintptr(classSlots[c]) * uintptr(classSize[c]+headerSize)
	if uintptr(1)<<classSlabShift[c]-used < pageSize {
		t.Fatalf("class %d has no page of tail to test with", c)
	}
	return a, n, c, used
}

// TestSlabTailNotCommitted: a slab commits its slots rounded up to a page,
// not its whole power-of-two span. The tail is not counted as mapped,
// and touching it faults.
func TestSlabTailNotCommitted(t *testing.T) {
	a, n, c, used := tailClass(t, Options{})
	b, err := a.Alloc(n)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Free(b)
	want := int64(alignUp(used, pageSize))
	if got := a.Stats().Mapped; got != want {
		t.Fatalf("Mapped = %d after one %d-byte block, want %d (slots rounded to a page; the slab is %d)", got, n, want, 1<<classSlabShift[c])
	}
	tail := unsafe.Add(a.base, a.classBase(c)+uintptr(want))
	faulted := func() (f bool) {
		defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
		defer func() { f = recover() != nil }()
		_ = *(*byte)(tail)
		return false
	}()
	if !faulted {
		t.Fatal("the slab tail past the committed pages is readable")
	}
}

// TestSlabTailFaultExplained: a linear overflow out of a slab's last slot
// faults in the uncommitted tail, and Explain blames that block.
func TestSlabTailFaultExplained(t *testing.T) {
	var got []*Report
	a, n, c, used := tailClass(t, Options{OnReport: func(r *Report) { got = append(got, r) }})
	var last []byte
	for range classSlots[c] {
		b, err := a.Alloc(n)
		if err != nil {
			t.Fatal(err)
		}
		defer a.Free(b)
		if last == nil || uintptr(unsafe.Pointer(&b[0])) > uintptr(unsafe.Pointer(&last[0])) {
			last = b
		}
	}
	tail := unsafe.Add(a.base, a.classBase(c)+alignUp(used, pageSize))
	r := a.CatchFault(func() { *(*byte)(tail) = 1 })
	if r == nil {
		t.Fatal("a write into the slab tail did not fault")
	}
	if r.Kind != Overflow || r.Size != n || r.Block != uintptr(unsafe.Pointer(&last[0])) {
		t.Fatalf("got %v (block %#x, size %d), want an Overflow of the %d-byte block at %#x", r.Kind, r.Block, r.Size, n, uintptr(unsafe.Pointer(&last[0])))
	}
	if len(got) != 1 {
		t.Fatalf("%d reports, want 1", len(got))
	}
}

// TestSlabSizes pins the rule mkclasses.go sizes slabs by: the smallest
// power of two (16 KiB at least) that holds four slots whose page-rounded
// extent, the part committed, is at most 1/16 rounding. Slabs larger than
// that hold more slots and empty less often (more memory held in
// partly used slabs); smaller ones would waste committed memory.
func TestSlabSizes(t *testing.T) {
	const page = 4096 // the generator's page, whatever this machine's is
	fits := func(c int, slab uintptr) bool {
		stride := uintptr(classSize[c] + headerSize)
		n := slab / stride
		commit := alignUp(n*stride, page)
		return n >= 4 && (commit-n*stride)*16 <= commit
	}
	for c := range numClasses {
		slab := uintptr(1) << classSlabShift[c]
		stride := uintptr(classSize[c] + headerSize)
		if uintptr(classSlots[c]) != slab/stride {
			t.Errorf("class %d: %d slots in a %d-byte slab of stride %d", c, classSlots[c], slab, stride)
		}
		if !fits(c, slab) {
			t.Errorf("class %d: slab %d holds %d slots of stride %d", c, slab, classSlots[c], stride)
		}
		if slab > 16<<10 && fits(c, slab/2) {
			t.Errorf("class %d: slab %d, but %d would do", c, slab, slab/2)
		}
	}
	if last := numClasses - 1; classSlots[last] > 8 {
		t.Errorf("largest class: %d slots per slab, want a handful", classSlots[last])
	}
}
