package fuzz

import (
	"math/rand/v2"
	"reflect"
	"testing"
)

func TestEncodeDecodeRoundTrip(t *testing.T) {
	p := Program{Seed: 0x1234_5678_9abc_def0, Ops: []Op{
		{Kind: OpAlloc, Slot: 3, Size: 17}, {Kind: OpFree, Slot: 3},
		{Kind: OpRealloc, Slot: 15, Size: MaxSize, Aux: 255}, {Kind: OpWrite, Slot: 0, Aux: 7},
	}}
	got := Decode(Encode(p, MixAllocFree), MixAllocFree)
	if !reflect.DeepEqual(got.Ops, p.Ops) {
		t.Fatalf("round trip:\n%v\n%v", got, p)
	}
}

func TestEveryPrefixDecodes(t *testing.T) {
	in := randomInput(3, 40)
	for i := range in {
		p := Decode(in[:i], MixAllocFree)
		if want := i / opBytes; len(p.Ops) != want {
			t.Fatalf("prefix %d: %d ops, want %d", i, len(p.Ops), want)
		}
	}
}

func TestProgramsAreCapped(t *testing.T) {
	if p := Decode(randomInput(4, 5000), MixAllocFree); len(p.Ops) != MaxOps {
		t.Fatalf("%d ops", len(p.Ops))
	}
}

// TestExactSizes: every size Encode can write decodes exactly, and a
// mutated exact size stays log-uniform rather than uniform up to MaxSize
// (which made every mutated seed a large, slow block).
func TestExactSizes(t *testing.T) {
	for n := range MaxSize + 1 {
		if got := exactSize(encodeSize(n)); got != n {
			t.Fatalf("exactSize(encodeSize(%d)) = %d", n, got)
		}
	}
	rng := rand.New(rand.NewPCG(5, 6))
	small := 0
	const draws = 10000
	for range draws {
		if exactSize(rng.Uint32()) < 4096 {
			small++
		}
	}
	if small < draws/2 {
		t.Fatalf("only %d of %d random exact sizes are below 4 KiB", small, draws)
	}
}
