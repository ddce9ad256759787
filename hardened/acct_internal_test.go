package hardened

import "testing"

// TestAcctFold drives a class's acct words past the fold mark of each field
// (count, bytes) on every cache and checks that the operations after it
// fold them into the wide totals without losing or adding anything:
// Stats counts exactly what was done.
func TestAcctFold(t *testing.T) {
	// Past the fold mark, and 10 operations (1,000 bytes) short of
	// overflowing: an operation that counted without folding first would
	// carry into the next field or out of the word.
	const count, bytes = acct(1)<<acctCountBits - 10, acct(1<<40-1000) << acctCountBits
	for _, tc := range []struct {
		name   string
		wa, wf acct // the allocs and frees words
	}{
		{"count", count, count},
		{"bytes", bytes, bytes},
		// A fold folds both words: the frees alone, so that Free's
		// fast path meets a full word.
		{"frees count", 0, count},
		{"frees bytes", 0, bytes},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, err := New(Options{Seed: 1})
			if err != nil {
				t.Fatal(err)
			}
			defer a.Close()
			const n = 100
			keep := allocT(t, a, n) // the class is handed out: Stats counts it
			_, c, _, _ := a.locate(addrOf(keep) - uintptr(a.base))
			// Stock the caches, so that the Allocs below pop and the
			// Frees push on the fast paths.
			var stock [][]byte
			for range 200 {
				stock = append(stock, allocT(t, a, n))
			}
			for _, b := range stock {
				a.Free(b)
			}
			before := a.Stats()
			gens := map[*cache]uint32{}
			for _, pc := range a.allCaches() {
				pc.lockForRead()
				pc.fold(c)
				// The wide totals less what the words add: the totals
				// Stats reports are unchanged.
				pc.allocs[c], pc.frees[c] = tc.wa, tc.wf
				pc.allocsWide[c] -= tc.wa.count()
				pc.freesWide[c] -= tc.wf.count()
				pc.requested -= tc.wa.bytes() - tc.wf.bytes()
				gens[pc] = pc.foldGen.Load()
				pc.unlockForRead()
			}
			if got := a.Stats(); got.Classes[c] != before.Classes[c] || got.Requested != before.Requested {
				t.Fatalf("setup changed Stats: %+v, want %+v", got.Classes[c], before.Classes[c])
			}
			const pairs = 40
			var held [][]byte
			for range pairs {
				held = append(held, allocT(t, a, n))
			}
			mid := a.Stats()
			if got, want := mid.Classes[c].Allocs, before.Classes[c].Allocs+pairs; got != want {
				t.Errorf("Allocs %d after %d more, want %d", got, pairs, want)
			}
			if got, want := mid.Requested, before.Requested+pairs*n; got != want {
				t.Errorf("Requested %d, want %d", got, want)
			}
			for _, b := range held {
				a.Free(b)
			}
			after := a.Stats()
			if got, want := after.Classes[c].Frees, before.Classes[c].Frees+pairs; got != want {
				t.Errorf("Frees %d after %d more, want %d", got, pairs, want)
			}
			if after.Requested != before.Requested || after.Classes[c].Live != before.Classes[c].Live {
				t.Errorf("after freeing them all: Requested %d Live %d, want %d %d", after.Requested, after.Classes[c].Live, before.Requested, before.Classes[c].Live)
			}
			folded := false
			for _, pc := range a.allCaches() {
				folded = folded || pc.foldGen.Load() != gens[pc]
			}
			if !folded {
				t.Error("no cache folded its acct words")
			}
			a.Free(keep)
		})
	}
}
