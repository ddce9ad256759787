//go:build asan

package fuzz

import (
	"testing"

	"github.com/hardalloc/hardalloc/hardened"
	"github.com/hardalloc/hardalloc/internal/asanrt"
	"github.com/hardalloc/hardalloc/internal/harness"
)

// checkFreed's rule for a block just freed: in a program that runs on one
// goroutine, any addressable granule fails it; in one whose other
// goroutines allocate, a slot handed out again before the look is the
// new block's (a false failure otherwise: FuzzThreadLifecycle under
// -asan, QuarantineBytes -1, found it), but a granule left addressable in
// a slot nobody took still fails.
func TestCheckFreedReuse(t *testing.T) {
	a, err := harness.New(hardened.Options{QuarantineBytes: -1}, harness.Extra{Cache: func() int { return 0 }, ClassSpace: 16 << 20})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	seq := &runner{p: Program{Ops: []Op{{Kind: OpAlloc}}}, a: a}
	conc := &runner{p: Program{Ops: []Op{{Kind: OpSpawn}}}, a: a}

	b, _ := a.Alloc(110)
	a.Free(b)
	for _, r := range []*runner{seq, conc} {
		if err := r.checkFreed(0, b); err != nil {
			t.Fatalf("a freed block: %v", err)
		}
	}
	// Handed out again (the one cache is a stack: the same slot), as
	// another goroutine could have done before the look.
	b2, _ := a.Alloc(110)
	if addrOf(b2) != addrOf(b) {
		t.Fatalf("the slot was not reused: %#x, then %#x", addrOf(b), addrOf(b2))
	}
	if err := conc.checkFreed(0, b); err != nil {
		t.Fatalf("concurrent program, slot allocated again: %v", err)
	}
	if err := seq.checkFreed(0, b); err == nil {
		t.Fatal("a program on one goroutine passed an addressable freed block")
	}
	a.Free(b2)
	// A Free that left a granule addressable, in a slot nobody takes.
	p := addrOf(b) + 8
	old := setShadow(p, 0)
	defer setShadow(p, old)
	for _, r := range []*runner{seq, conc} {
		if err := r.checkFreed(0, b); err == nil {
			t.Fatalf("a granule of a freed block left addressable passed (concurrent: %v)", r == conc)
		}
	}
	if !asanrt.PoisonedAt(p - 8) {
		t.Fatal("the freed block's first granule is addressable")
	}
}

// setShadow sets p's shadow byte to v and returns what it held,
// uninstrumented (the shadow of the shadow is ASan's protected gap).
//
//go:norace
//go:nocheckptr
func setShadow(p uintptr, v byte) byte {
	scale, off := asanrt.ShadowMapping()
	s := (*byte)(ptrAt(p>>scale + off))
	old := *s
	*s = v
	return old
}
