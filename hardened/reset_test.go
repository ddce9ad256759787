package hardened_test

import (
	"errors"
	"testing"
	"unsafe"

	"github.com/hardalloc/hardalloc/hardened"
)

func TestReset(t *testing.T) {
	a, c := newAlloc(t, hardened.Options{})
	var old [][]byte
	for _, n := range []int{0, 10, 100, 5000, 100_000} {
		b := mustAlloc(t, a, n)
		fill(b, 3)
		old = append(old, b)
	}
	err := a.Reset(99)
	if !errors.Is(err, hardened.Leak) {
		t.Fatalf("Reset with live blocks = %v, want leaks", err)
	}
	if got := len(c.take()); got != len(old) {
		t.Fatalf("%d leak reports, want %d", got, len(old))
	}
	if s := a.Stats(); s.LiveBlocks != 0 || s.Requested != 0 {
		t.Fatalf("stats after Reset: %+v", s)
	}
	// Memory is reused and zeroed; pre-Reset blocks are no longer valid.
	for range 3 {
		b, err := a.Alloc(100)
		if err != nil || !isZero(b) {
			t.Fatalf("Alloc after Reset: %v", err)
		}
		a.Free(b)
	}
	a.Free(old[3]) // its slot was not handed out again
	if r := c.take(); len(r) != 1 || r[0].Kind != hardened.InvalidFree {
		t.Fatalf("Free of a pre-Reset block: %v", r)
	}
	if err := a.Reset(100); err != nil {
		t.Fatalf("Reset of a clean allocator: %v", err)
	}
}

// TestResetReplays: after Reset, an allocator hands out the same slots
// for the same program whatever earlier programs left committed (spill
// would otherwise borrow slots of classes an earlier program grew), so a
// fuzz failure found on a pooled allocator replays on a fresh one.
func TestResetReplays(t *testing.T) {
	// A Limit turns the per-P caches off: no dependence on which P runs.
	a, _ := newAlloc(t, hardened.Options{Limit: 1 << 40, QuarantineBytes: -1})
	program := func() []uintptr {
		var out []uintptr
		var live [][]byte
		for i := range 60 {
			b, err := a.Alloc([]int{540, 600, 700, 100}[i%4])
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, uintptr(unsafe.Pointer(unsafe.SliceData(b))))
			live = append(live, b)
			if i%3 == 2 {
				a.Free(live[0])
				live = live[1:]
			}
		}
		for _, b := range live {
			a.Free(b)
		}
		return out
	}
	history := func(size, n int) {
		var bs [][]byte
		for range n {
			b := mustAlloc(t, a, size)
			bs = append(bs, b)
		}
		for _, b := range bs {
			a.Free(b)
		}
	}
	var runs [][]uintptr
	for _, h := range []struct{ size, n int }{{0, 0}, {600, 300}, {700, 200}, {540, 500}} {
		history(h.size, h.n)
		if err := a.Reset(7); err != nil {
			t.Fatal(err)
		}
		runs = append(runs, program())
	}
	for k := 1; k < len(runs); k++ {
		for i := range runs[0] {
			if runs[k][i] != runs[0][i] {
				t.Fatalf("history %d: block %d at %#x, after no history at %#x", k, i, runs[k][i], runs[0][i])
			}
		}
	}
}
