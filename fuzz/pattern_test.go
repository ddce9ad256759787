package fuzz

import "testing"

// TestPatterns: the table-driven fills and compares (fillPattern,
// fillRamp and rampDiff, fillTag and tagDiff) write and find exactly the
// bytes their definitions say, at every length and phase.
func TestPatterns(t *testing.T) {
	for _, n := range []int{0, 1, 255, 256, 257, 1000, 8191} {
		for _, k := range []int{0, 1, 7, 255, 256, 300} {
			b := make([]byte, n)
			fillRamp(b, k)
			for j := range b {
				if b[j] != byte(j+k) {
					t.Fatalf("ramp n=%d k=%d j=%d", n, k, j)
				}
			}
			if rampDiff(b, k) != -1 {
				t.Fatal("rampDiff")
			}
			if n > 5 {
				b[n-3]++
				if rampDiff(b, k) != n-3 {
					t.Fatal("rampDiff miss")
				}
			}
			g := make([]byte, n)
			fillTag(g, byte(k))
			for _, sp := range tagSpans(n) {
				for j := sp[0]; j < sp[1]; j++ {
					if g[j] != tagAt(byte(k), j) {
						t.Fatalf("tag n=%d tag=%d j=%d", n, k, j)
					}
				}
			}
			if d := tagDiff(g, byte(k)); d != -1 {
				t.Fatalf("tagDiff of an intact block: %d", d)
			}
			if n > 0 {
				g[n-1] ^= 1
				if d := tagDiff(g, byte(k)); d != n-1 {
					t.Fatalf("tagDiff n=%d: %d, want %d", n, d, n-1)
				}
			}
			w := make([]byte, n)
			fillPattern(w, byte(k))
			for j := range w {
				if w[j] != byte(k)+byte(j*13)+1 {
					t.Fatalf("pattern n=%d aux=%d j=%d", n, k, j)
				}
			}
		}
	}
}
