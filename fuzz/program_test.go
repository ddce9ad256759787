package fuzz

import (
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
