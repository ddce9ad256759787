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
		if err := Run(p, Config{}); err != nil {
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

// BenchmarkRandomPrograms runs 200 random 150-op AllocFree programs (what
// mutation produces, rather than what the corpus keeps) per iteration,
// each with its own configuration, against the warm allocator pool.
func BenchmarkRandomPrograms(b *testing.B) {
	var progs []Program
	for s := range 200 {
		progs = append(progs, Decode(randomInput(uint64(s), 150), MixAllocFree))
	}
	for _, p := range progs {
		if err := Run(p, Options(p)); err != nil { // warm the pool up
			b.Fatal(err)
		}
	}
	for b.Loop() {
		for _, p := range progs {
			if err := Run(p, Options(p)); err != nil {
				b.Fatal(err)
			}
		}
	}
}
