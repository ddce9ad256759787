package hardened_test

import (
	"errors"
	"testing"

	"github.com/hardalloc/hardalloc/hardened"
)

func TestReset(t *testing.T) {
	a, c := newAlloc(t, hardened.Options{})
	var old [][]byte
	for _, n := range []int{0, 10, 100, 5000, 100_000} {
		b, _ := a.Alloc(n)
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
