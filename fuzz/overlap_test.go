package fuzz

import (
	"math/rand/v2"
	"testing"
)

// TestGranulesExact checks the granule bitmap against a brute-force
// interval list: 16-byte-aligned spans of 0 to 5000 bytes (the 0-byte
// ones one byte long, as live blocks are) across page boundaries, added
// and removed at random; any must answer exactly "overlaps a live span".
func TestGranulesExact(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	var g granules
	type span struct{ s, e uintptr }
	var live []span
	overlaps := func(s, e uintptr) bool {
		for _, l := range live {
			if s < l.e && l.s < e {
				return true
			}
		}
		return false
	}
	const base = 0x7f0000000000
	for round := range 20000 {
		s := uintptr(base + 16*rng.IntN(4096))
		e := s + uintptr(max(rng.IntN(5000), 1))
		want := overlaps(s, e)
		if got := g.any(s, e); got != want {
			t.Fatalf("round %d: any(%#x, %#x) = %v, want %v", round, s, e, got, want)
		}
		switch {
		case !want && rng.IntN(3) > 0:
			if g.update(s, e, true) {
				t.Fatalf("round %d: update of a free span reported a hit", round)
			}
			live = append(live, span{s, e})
		case len(live) > 0 && rng.IntN(2) == 0:
			k := rng.IntN(len(live))
			g.update(live[k].s, live[k].e, false)
			live[k] = live[len(live)-1]
			live = live[:len(live)-1]
		}
		if round%5000 == 4999 {
			g.reset()
			live = live[:0]
		}
	}
}
