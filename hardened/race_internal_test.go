//go:build faultinject

package hardened

import (
	"testing"
	"unsafe"

	"github.com/hardalloc/hardalloc/internal/ctl"
)

// Two Frees of one block, interleaved at the worst point every time: the
// second runs to completion between the first's header load and its
// compare-and-swap. Exactly one double-free is reported, the block is
// released once (Audit: its slot is in one free list), and the allocator
// goes on.
func TestHookInterleavedDoubleFree(t *testing.T) {
	for _, realloc := range []bool{false, true} {
		var reports []*Report
		a, err := New(Options{Seed: 5, OnReport: func(r *Report) { reports = append(reports, r) }})
		if err != nil {
			t.Fatal(err)
		}
		b, err := a.AllocAligned(40, 64)
		if err != nil {
			t.Fatal(err)
		}
		fired := false
		freeHook = func(slot unsafe.Pointer) {
			if fired {
				return
			}
			fired = true
			a.Free(b) // the racing Free wins
		}
		if realloc {
			// The old block is freed under Realloc's copy: that Free
			// is reported, and the caller keeps the new block.
			nb, err := a.Realloc(b, 80)
			if err != nil {
				t.Fatal(err)
			}
			a.Free(nb)
		} else {
			a.Free(b)
		}
		freeHook = nil
		if !fired {
			t.Fatal("the hook never ran: the test lost its point")
		}
		want := DoubleFree
		if len(reports) != 1 || reports[0].Kind != want {
			t.Fatalf("realloc=%v: reports %v, want exactly one %v", realloc, reports, want)
		}
		if err := a.auditSlots(); err != nil {
			t.Fatalf("realloc=%v: %v", realloc, err)
		}
		c := allocT(t, a, 40)
		a.Free(c)
		if err := a.Close(); err != nil {
			t.Fatal(err)
		}
	}
}

// JunkFill end to end: with the zeroing skipped (BugNoZero), a block
// handed out from a fresh slab shows the junk at its first and last
// bytes, in every build, so that a fuzz crasher of a missing zeroing
// replays on a fresh allocator.
func TestJunkFillShowsMissingZeroing(t *testing.T) {
	SetBug(BugNoZero)
	defer SetBug(0)
	for _, n := range []int{1, 100, 4000, 100_000} {
		a, err := newWith(Options{Seed: 3}, ctl.Extra{JunkFill: 0xa5})
		if err != nil {
			t.Fatal(err)
		}
		b, err := a.Alloc(n)
		if err != nil {
			t.Fatal(err)
		}
		if b[0] != 0xa5 || b[n-1] != 0xa5 {
			t.Errorf("Alloc(%d) without zeroing, fresh slab: first and last bytes %#x %#x, want the junk 0xa5", n, b[0], b[n-1])
		}
		a.Free(b)
		a.Close()
	}
}
