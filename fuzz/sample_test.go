package fuzz

import (
	"testing"
)

// TestSampledPrograms runs random programs of every mix in configurations
// that sample every block, or one in three, into guarded pages: the
// oracle must accept them (no false report, every misuse reported as its
// kind).
func TestSampledPrograms(t *testing.T) {
	mixes := []Mix{MixAllocFree, MixRealloc, MixAligned, MixMisuse, MixThread}
	for i := range 200 {
		p := Decode(randomInput(uint64(1000+i), 60), mixes[i%len(mixes)])
		// Seed bits 24-28 zero: sampled; bits 29-30: the rate (3 or 1).
		p.Seed = p.Seed&^(31<<24|3<<29) | uint64(2+i%2)<<29
		opts := Options(p)
		if opts.SampleRate == 0 {
			t.Fatalf("seed %#x: not a sampled configuration", p.Seed)
		}
		if err := Run(p, opts); err != nil {
			t.Fatalf("program %d (SampleRate %d): %v", i, opts.SampleRate, err)
		}
	}
	// Each misuse on a block that is certainly sampled (SampleRate 1):
	// the first block of a program. Sampled blocks have no header and no
	// redzones, so the harness turns the variants that need them into a
	// double free; the others must be reported as themselves.
	for v := range numMisuse {
		p := Program{Seed: 3 << 29, Ops: []Op{{Kind: OpAlloc, Slot: 0, Size: 64}, {Kind: OpMisuse, Slot: 0, Size: 64, Aux: v}}}
		opts := Options(p)
		if opts.SampleRate != 1 {
			t.Fatalf("seed %#x: SampleRate %d", p.Seed, opts.SampleRate)
		}
		if err := Run(p, opts); err != nil {
			t.Fatalf("misuse %d on a sampled block: %v", v, err)
		}
	}
}
