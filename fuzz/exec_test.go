package fuzz

import (
	"strings"
	"testing"
)

// TestOverlapCheck: the model's overlap check finds a new block that
// overlaps a live block or a leaked (orphaned) one, wherever it lies
// among many orphans, and accepts blocks that only touch them.
func TestOverlapCheck(t *testing.T) {
	mem := make([]byte, 64<<10)
	r := &runner{}
	// 40 orphans of 96 bytes, every 256 bytes, put in shuffled order
	// (mem is a large Go allocation: page-aligned).
	for _, k := range []int{7, 3, 39, 0, 21, 14, 30, 1, 2, 38, 4, 5, 6, 8, 9, 10, 11, 12, 13, 15, 16, 17, 18, 19, 20, 22, 23, 24, 25, 26, 27, 28, 29, 31, 32, 33, 34, 35, 36, 37} {
		r.put(0, &block{b: mem[k*256 : k*256+96 : k*256+96]})
		r.put(0, nil) // the block moves to the orphans
	}
	r.put(1, &block{b: mem[60<<10 : 60<<10+64 : 60<<10+64]}) // a live slot
	for _, tc := range []struct {
		lo, hi  int
		overlap bool
	}{
		{96, 256, false},                    // between orphans 0 and 1, touching both
		{80, 112, true},                     // the end of orphan 0
		{19*256 + 32, 19*256 + 48, true},    // inside orphan 19
		{19*256 + 160, 19*256 + 176, false}, // between orphans 19 and 20
		{39*256 + 80, 39*256 + 200, true},   // the last orphan's end
		{39*256 + 96, 40 * 256, false},
		{60<<10 + 48, 60<<10 + 80, true}, // the live slot
		{60<<10 + 64, 60<<10 + 80, false},
	} {
		b := mem[tc.lo:tc.hi:tc.hi]
		_, err := r.checkNew(0, b, len(b), 0, nil)
		if got := err != nil && strings.Contains(err.Error(), "overlaps"); got != tc.overlap {
			t.Errorf("[%d,%d): overlap %v, want %v (%v)", tc.lo, tc.hi, got, tc.overlap, err)
		}
	}
}
