package hardalloc_test

import "testing"

// FuzzBaseline is a trivial target, for measuring the harness overhead:
// compare its exec rate with FuzzAllocFree's in the same run (it is not
// part of the campaign).
func FuzzBaseline(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) > 3 && data[0] == 'h' && data[1] == 'a' && data[2] == 'r' && data[3] == 'd' {
			_ = data[4:]
		}
	})
}
