package hardened_test

import (
	"slices"
	"testing"

	"github.com/hardalloc/hardalloc/hardened"
	"github.com/hardalloc/hardalloc/internal/harness"
)

func TestLargeFreedGoesBackToOS(t *testing.T) {
	a, _ := newAlloc(t, hardened.Options{QuarantineBytes: -1, LargeCacheBytes: -1})
	before := a.Stats().Mapped
	for range 20 {
		b := mustAlloc(t, a, 1<<20)
		a.Free(b)
	}
	// Hardened builds keep a bounded quarantine of freed ranges, but
	// inaccessible and without their pages.
	if s := a.Stats(); s.Mapped != before || s.LargeCached != 0 {
		t.Fatalf("with no cache, freed large blocks still count as mapped: %+v", s)
	}
}

// The large-block cache: a freed large block is reused (release: at once;
// hardened: once it left the quarantine, here after Reset), zeroed, and
// what it holds stays bounded.
func TestLargeCache(t *testing.T) {
	const budget = 8 << 20
	a, c := newAlloc(t, hardened.Options{QuarantineBytes: -1, LargeCacheBytes: budget})
	before := a.Stats().Mapped
	var addrs []uintptr
	var last []byte
	for i := range 64 {
		n := 1<<20 - (i*97)%4096 // the same span: reusable
		b, err := a.Alloc(n)
		if err != nil {
			t.Fatal(err)
		}
		if z := slices.IndexFunc(b, func(x byte) bool { return x != 0 }); z >= 0 {
			t.Fatalf("round %d: reused large block not zeroed at byte %d", i, z)
		}
		addrs = append(addrs, addr(b))
		for j := range b {
			b[j] = 0xa5
		}
		a.Free(b)
		last = b
		if s := a.Stats(); s.Mapped-before > budget+int64(n)+4096 {
			t.Fatalf("round %d: %d bytes mapped for one live %d-byte block and an %d-byte cache", i, s.Mapped-before, n, budget)
		}
	}
	// A cached block is still a freed block: a second Free is reported.
	a.Free(last)
	if reps := c.take(); len(reps) != 1 || reps[0].Kind != hardened.DoubleFree || reps[0].Size != len(last) {
		t.Fatalf("second Free of a cached large block: reports %v, want one DoubleFree of %d bytes", reps, len(last))
	}
	if !hardened.Enabled {
		// Release builds reuse the one mapping every time.
		for i, p := range addrs {
			if p != addrs[0] {
				t.Fatalf("round %d: large block at %#x, want the cached %#x", i, p, addrs[0])
			}
		}
		// A smaller request (within 2x) reuses it too; the pages past the
		// new span become guards and leave the mapped count.
		m := a.Stats().Mapped
		b := mustAlloc(t, a, 600<<10)
		if addr(b) != addrs[0] || a.Stats().Mapped != m-(1<<20-600<<10) {
			t.Fatalf("shrinking reuse: block %#x (cached %#x), mapped %d -> %d", addr(b), addrs[0], m, a.Stats().Mapped)
		}
		if z := slices.IndexFunc(b, func(x byte) bool { return x != 0 }); z >= 0 {
			t.Fatalf("shrunk block not zeroed at byte %d", z)
		}
		a.Free(b)
		addrs = append(addrs, addr(b))
	}
	if err := harness.Reset(a, 9); err != nil {
		t.Fatal(err)
	}
	s := a.Stats()
	if s.LargeCached == 0 || s.LargeCached > budget {
		t.Fatalf("after Reset the cache holds %d bytes, want 1..%d", s.LargeCached, budget)
	}
	b := mustAlloc(t, a, 600<<10)
	if !slices.Contains(addrs, addr(b)) {
		t.Fatalf("after Reset a large block came from a fresh mapping (%#x)", addr(b))
	}
	if z := slices.IndexFunc(b, func(x byte) bool { return x != 0 }); z >= 0 {
		t.Fatalf("cached block not zeroed at byte %d", z)
	}
	a.Free(b)
}

// Trim returns the large-block cache and every all-free slab to the OS;
// what is allocated afterwards is zeroed and works as before.
func TestTrim(t *testing.T) {
	a, _ := newAlloc(t, hardened.Options{QuarantineBytes: -1})
	base := a.Stats().Mapped
	var bs [][]byte
	for i := range 600 {
		b, err := a.Alloc([]int{4000, 200 << 10, 100}[i%3])
		if err != nil {
			t.Fatal(err)
		}
		for j := range b {
			b[j] = 0xee
		}
		bs = append(bs, b)
	}
	keep := bs[2] // one small block stays live: its slab must stay
	for _, b := range bs {
		if &b[0] != &keep[0] {
			a.Free(b)
		}
	}
	held := a.Stats().Mapped
	freed, err := a.Trim()
	if err != nil {
		t.Fatal(err)
	}
	after := a.Stats()
	if freed <= 0 || after.Mapped != held-freed || after.LargeCached != 0 {
		t.Fatalf("Trim released %d bytes: mapped %d -> %d, cache %d", freed, held, after.Mapped, after.LargeCached)
	}
	// What stays: the live block's slab, slots parked in per-P caches, and
	// in hardened builds the capsule class's quarantine.
	if after.Mapped-base > 1<<20 {
		t.Fatalf("after Trim still %d bytes mapped beyond the start (%d before Trim)", after.Mapped-base, held-base)
	}
	for j := range keep {
		if keep[j] != 0xee {
			t.Fatalf("Trim changed a live block at byte %d", j)
		}
	}
	for _, n := range []int{4000, 200 << 10, 100} {
		b, err := a.Alloc(n)
		if err != nil {
			t.Fatal(err)
		}
		if z := slices.IndexFunc(b, func(x byte) bool { return x != 0 }); z >= 0 {
			t.Fatalf("Alloc(%d) after Trim: byte %d not zero", n, z)
		}
		a.Free(b)
	}
	a.Free(keep)
}

// Limit counts cached bytes but trims the cache before failing.
func TestLargeCacheLimit(t *testing.T) {
	a, _ := newAlloc(t, hardened.Options{Limit: 6 << 20, QuarantineBytes: -1})
	for i := range 8 {
		b, err := a.Alloc(2<<20 + i*(256<<10)) // never a cache fit for the next
		if err != nil {
			t.Fatalf("round %d: %v (stats %+v)", i, err, a.Stats())
		}
		a.Free(b)
	}
	if m := a.Stats().Mapped; m > 6<<20 {
		t.Fatalf("mapped %d bytes over a 6 MiB limit", m)
	}
}
