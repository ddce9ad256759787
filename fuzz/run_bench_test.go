package fuzz

import (
	"math/rand/v2"
	"testing"

	"github.com/hardalloc/hardalloc/hardened"
)

func randomInput(seed uint64, ops int) []byte {
	rng := rand.New(rand.NewPCG(seed, 7))
	b := make([]byte, 8+ops*opBytes)
	for i := range b {
		b[i] = byte(rng.Uint32())
	}
	return b
}

// BenchmarkRun is one fuzz exec of a 64-op random AllocFree program.
func BenchmarkRun(b *testing.B) {
	in := randomInput(1, 64)
	p := Decode(in, MixAllocFree)
	for b.Loop() {
		if err := Run(p, hardened.Options{}); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkNewClose is the fixed cost of an allocator per exec.
func BenchmarkNewClose(b *testing.B) {
	for b.Loop() {
		a, err := hardened.New(hardened.Options{Seed: 1})
		if err != nil {
			b.Fatal(err)
		}
		a.Close()
	}
}
