package hardalloc_test

import (
	"testing"

	"github.com/hardalloc/hardalloc/fuzz"
)

// The native fuzz targets. Each decodes its input into an op program
// (fuzz.Decode, with a target-specific op mix) and runs it against a fresh
// allocator under the shadow model (fuzz.Run). The seed corpora under
// testdata/fuzz/ are generated from readable Go (go generate ./fuzz) and
// run by every `go test`.

func fuzzTarget(f *testing.F, mix fuzz.Mix) {
	f.Fuzz(func(t *testing.T, data []byte) {
		p := fuzz.Decode(data, mix)
		if err := fuzz.Run(p, fuzz.Options(p)); err != nil {
			t.Fatalf("%v\n%s", err, p)
		}
	})
}

// FuzzAllocFree: alloc, free, write, verify, realloc, aligned, check.
func FuzzAllocFree(f *testing.F) { fuzzTarget(f, fuzz.MixAllocFree) }

// FuzzRealloc: mostly Realloc chains across class and large boundaries.
func FuzzRealloc(f *testing.F) { fuzzTarget(f, fuzz.MixRealloc) }

// FuzzAligned: mostly AllocAligned with alignments up to 64 KiB.
func FuzzAligned(f *testing.F) { fuzzTarget(f, fuzz.MixAligned) }

// FuzzThreadLifecycle: threads that allocate, joined or detached in any
// order, interleaved with the owner's own allocations.
func FuzzThreadLifecycle(f *testing.F) { fuzzTarget(f, fuzz.MixThread) }

// FuzzMisuse: a valid program with one injected misuse, which must be
// reported exactly: this fuzzes the detectors themselves.
func FuzzMisuse(f *testing.F) { fuzzTarget(f, fuzz.MixMisuse) }
