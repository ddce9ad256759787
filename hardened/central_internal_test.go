package hardened

import "testing"

// TestSlabAffinity: a refill takes from the slabs its cache took from
// before, or from a slab nobody has; only when there is none does it take
// from another cache's slab, before any new slab is carved; a slab that
// empties belongs to nobody again.
func TestSlabAffinity(t *testing.T) {
	a, err := New(Options{Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	const c = 3 // 64-byte slots
	cl := &a.classes[c]
	cl.mu.Lock()
	defer cl.mu.Unlock()
	for len(cl.slabs) < 2 {
		if err := a.grow(c); err != nil {
			t.Fatal(err)
		}
	}
	take := func(owner uint16, n int) []uint32 {
		t.Helper()
		dst := make([]uint32, n)
		k, err := a.take(c, dst, false, owner)
		if err != nil || k != n {
			t.Fatalf("take(owner %d, %d) = %d, %v", owner, n, k, err)
		}
		return dst
	}
	slabs := func(offs []uint32) map[int]bool {
		m := map[int]bool{}
		for _, off := range offs {
			s, _ := a.slabIndex(c, off)
			m[s] = true
		}
		return m
	}
	one := func(offs []uint32, s int) bool { m := slabs(offs); return len(m) == 1 && m[s] }

	b1 := take(1, 4)
	b2 := take(2, 4)
	b3 := take(1, 4)
	if !one(b1, 0) || !one(b2, 1) || !one(b3, 0) {
		t.Fatalf("owner 1 took from slabs %v then %v, owner 2 from %v: want 0, 0 and 1", slabs(b1), slabs(b3), slabs(b2))
	}
	// A third cache finds no slab of its own or of nobody's: it takes
	// from the others' (lowest first) and carves nothing, from the top
	// of the slab down, as far as it can be from the owner's slots
	// (taken from the bottom up): its slots share no cache line with
	// theirs.
	b4 := take(3, 2)
	if !one(b4, 0) || len(cl.slabs) != 2 {
		t.Fatalf("owner 3 took from slabs %v with %d slabs carved: want slab 0 of 2", slabs(b4), len(cl.slabs))
	}
	stride := classSize[c] + headerSize
	for i, off := range b4 {
		if _, idx := a.slabIndex(c, off); idx != classSlots[c]-1-uint32(i) {
			t.Fatalf("owner 3's slot %d in slab 0 is slot %d (offset %#x), want %d: the top, down", i, idx, off, classSlots[c]-1-uint32(i))
		}
		for _, mine := range append(b1, b3...) {
			if lo, hi := min(off, mine), max(off, mine); hi/64 <= (lo+stride-1)/64 {
				t.Fatalf("owner 3's slot %#x and owner 1's slot %#x share a cache line", off, mine)
			}
		}
	}
	// Slab 0 empties: nobody's, so the next cache to refill claims it.
	a.put(c, b1)
	a.put(c, b3)
	a.put(c, b4)
	if o := cl.slabs[0].owner; o != 0 {
		t.Fatalf("an emptied slab still belongs to cache %d", o-1)
	}
	if b5 := take(2, 4); !one(b5, 0) || cl.slabs[0].owner != 2 {
		t.Fatalf("owner 2 took from slabs %v (slab 0 now owned by %d): want slab 0, claimed", slabs(b5), cl.slabs[0].owner)
	}
}
