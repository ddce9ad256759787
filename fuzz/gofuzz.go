//go:build gofuzz

package fuzz

// Entry points for dvyukov/go-fuzz (go-fuzz-build -func FuzzMisuse ./fuzz;
// go-fuzz-build -libfuzzer for a libFuzzer binary). They run the same
// decoder, shadow model and executor as the native targets; a failure
// panics with the *Failure, which go-fuzz records as a crasher.

import (
	defs "github.com/dvyukov/go-fuzz/go-fuzz-defs"
)

func run(data []byte, mix Mix) int {
	if len(data) > defs.MaxInputSize {
		return -1 // go-fuzz would truncate it anyway
	}
	p := Decode(data, mix)
	if len(p.Ops) == 0 {
		return -1 // not a program: do not add to the corpus
	}
	if err := Run(p, Options(p)); err != nil {
		panic(err)
	}
	return 1
}

// Fuzz is go-fuzz's default entry point: FuzzAllocFree.
func Fuzz(data []byte) int { return run(data, MixAllocFree) }

func FuzzAllocFree(data []byte) int       { return run(data, MixAllocFree) }
func FuzzRealloc(data []byte) int         { return run(data, MixRealloc) }
func FuzzAligned(data []byte) int         { return run(data, MixAligned) }
func FuzzThreadLifecycle(data []byte) int { return run(data, MixThread) }
func FuzzMisuse(data []byte) int          { return run(data, MixMisuse) }
