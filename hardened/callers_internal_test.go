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

//go:noinline
func hashAtBoth(depth, max int) (sum uint64, n int, pcs, rt []uintptr) {
	if depth > 0 {
		return hashAtBoth(depth-1, max)
	}
	fp := frame()
	sum, n = hashAt(fp, max)
	var a, b [maxWalk]uintptr
	m := callersAt(fp, a[:max])
	k := runtime.Callers(2, b[:max]) // from this function's caller, as the walk from its frame
	return sum, n, a[:m], b[:k]
}

// The walk from a frame record (Alloc's and Free's, frame) starts at its
// function's caller, as runtime.Callers does, and hashAt counts and hashes
// exactly the frames callersAt writes: a site's stack is looked up by
// hashAt's hash and interned under stackHash of callersAt's frames, so any
// difference (a frame skipped or taken once more, a different mix) would
// intern every stack again on every call.
func TestWalkAtFrame(t *testing.T) {
	for _, d := range []int{0, 1, 5, 30, 80} {
		for _, max := range []int{1, 2, 16, 22, maxWalk} {
			sum, n, pcs, rt := hashAtBoth(d, max)
			if n != len(pcs) || sum != stackHash(pcs) {
				t.Fatalf("depth %d max %d: hashAt %#x over %d frames; callersAt wrote %d frames hashing to %#x",
					d, max, sum, n, len(pcs), stackHash(pcs))
			}
			if got, want := names(pcs), names(rt); !slices.Equal(got, want) {
				t.Fatalf("depth %d max %d:\nwalk:    %v\nruntime: %v", d, max, got, want)
			}
		}
	}
	// Different stacks hash differently (the walk mixes every frame in).
	a, _, _, _ := hashAtBoth(3, 16)
	b, _, _, _ := hashAtBoth(4, 16)
	if a == b {
		t.Fatalf("stacks of different depths hash alike: %#x", a)
	}
}

func BenchmarkHashAt22(b *testing.B) {
	for b.Loop() {
		hashAt(frame(), 22)
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
