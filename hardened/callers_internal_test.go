package hardened

import (
	"runtime"
	"slices"
	"testing"
)

func names(pcs []uintptr) []string {
	var out []string
	fr := runtime.CallersFrames(pcs)
	for {
		f, more := fr.Next()
		if !isWrapper(f.Function) {
			out = append(out, f.Function)
		}
		if !more {
			return out
		}
	}
}

//go:noinline
func viaBoth(depth int) (fp, rt []string) {
	if depth > 0 {
		return viaBoth(depth - 1)
	}
	var a, b [64]uintptr
	n := callers(0, a[:])
	m := runtime.Callers(2, b[:])
	return names(a[:n]), names(b[:m])
}

// Frame-pointer unwinding must name the same functions as runtime.Callers.
func TestCallersMatchesRuntime(t *testing.T) {
	for _, d := range []int{0, 1, 5, 30} {
		fp, rt := viaBoth(d)
		if !slices.Equal(fp, rt) {
			t.Fatalf("depth %d:\nfp: %v\nrt: %v", d, fp, rt)
		}
	}
}

func BenchmarkCallers16(b *testing.B) {
	var pcs [16]uintptr
	for b.Loop() {
		callers(0, pcs[:])
	}
}

func BenchmarkRuntimeCallers16(b *testing.B) {
	var pcs [16]uintptr
	for b.Loop() {
		runtime.Callers(1, pcs[:])
	}
}
