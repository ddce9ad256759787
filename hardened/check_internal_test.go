//go:build (hardened || asan) && faultinject

package hardened

import (
	"testing"
	"unsafe"
)

// The race make fuzz found: Check read a block's header (allocated), its
// owner freed it (poisoning the payload and redzones), and Check then
// took the poison for an overflow. Here the owner's Free runs
// deterministically inside that window, for a block freed into the
// quarantine and for one freed and handed out again at once (the same
// slot, an identical header); and, the other way round, the Alloc that
// takes a slot evicted from the quarantine, whose header still says
// quarantined and whose poison Check is about to verify, runs there.
// Check must stay silent every time.
func TestHookCheckWindow(t *testing.T) {
	for _, tc := range []struct {
		name    string
		q       int64
		realloc bool
		evicted bool // freed before Check, evicted at once; the hook only reallocates
	}{
		{"freed", 64 << 10, false, false},
		{"freed-and-reused", -1, true, false},
		{"evicted-and-reused", 1, true, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var reports []*Report
			// A Limit turns per-P caching off, so a freed slot is reused
			// at once, lowest first, in race builds too.
			a, err := New(Options{Seed: 7, Limit: 1 << 30, QuarantineBytes: tc.q, OnReport: func(r *Report) { reports = append(reports, r) }})
			if err != nil {
				t.Fatal(err)
			}
			defer a.Close()
			b := allocT(t, a, 100)
			for i := range b {
				b[i] = byte(i)
			}
			target := unsafe.Pointer(unsafe.SliceData(b))
			if tc.evicted {
				a.Free(b)
				if _, _, h, ok := a.smallAt(target, uintptr(target)-uintptr(a.base)); !ok || h.state != stateQuarantined || a.quarantinedAt(b) {
					t.Fatalf("the freed block's slot: header ok %v, state %d, in the quarantine %v; want evicted, its header still quarantined", ok, h.state, a.quarantinedAt(b))
				}
			}
			hits := 0
			checkHook = func(slot unsafe.Pointer) {
				if uintptr(target)-uintptr(slot) >= 4096 || hits > 0 {
					return
				}
				hits++
				if !tc.evicted {
					a.Free(b)
				}
				if tc.realloc {
					b = allocT(t, a, 100)
					if unsafe.Pointer(unsafe.SliceData(b)) != target {
						t.Errorf("the freed slot was not reused at once: the test lost its point")
					}
				}
			}
			defer func() { checkHook = nil }()
			if err := a.Check(); err != nil {
				t.Fatalf("Check during a concurrent Free: %v", err)
			}
			checkHook = nil
			if hits != 1 {
				t.Fatalf("the hook ran %d times, want 1", hits)
			}
			if len(reports) > 0 {
				t.Fatalf("report for correct use:\n%s", reports[0])
			}
			if tc.realloc {
				a.Free(b)
			}
		})
	}
}
