package hardened_test

import (
	"testing"

	"github.com/hardalloc/hardalloc/hardened"
	"github.com/hardalloc/hardalloc/internal/harness"
)

// An always-quarantined class neither borrows nor lends: a smaller
// request whose class is empty must not take one of its free slots
// (those blocks would then be quarantined on every free too, and push
// the class's own blocks out of its queue sooner).
func TestAlwaysQuarantinedClassDoesNotLend(t *testing.T) {
	if !hardened.Enabled {
		t.Skip("always-quarantined classes are a hardening feature")
	}
	const always = 96
	a, _ := newAlloc(t, hardened.Options{AlwaysQuarantine: []int{always}, QuarantineBytes: -1})
	big := mustAlloc(t, a, always) // carves a slab of the class: free slots now wait there
	lb, _ := harness.LayoutOf(a, big)
	ref, _ := newAlloc(t, hardened.Options{QuarantineBytes: -1}) // a fresh allocator's first block is in its own class
	for n := always / 2; n < always; n++ {
		r := mustAlloc(t, ref, n)
		own, _ := harness.LayoutOf(ref, r)
		ref.Free(r)
		if own.Class == lb.Class {
			break // n's own class is the always-quarantined one
		}
		b := mustAlloc(t, a, n)
		l, _ := harness.LayoutOf(a, b)
		a.Free(b)
		if l.Class == lb.Class {
			t.Errorf("Alloc(%d) took a slot of the always-quarantined class %d of Alloc(%d)", n, lb.Class, always)
			break
		}
	}
	a.Free(big)
}
