package quarantine

import "testing"

func TestBudgetNeverExceeded(t *testing.T) {
	q := New(4, 1000, 1)
	held := map[uint64]bool{}
	for i := range uint64(5000) {
		it := Item{Class: int(i % 4), ID: i, Bytes: int64(10 + i%97)}
		held[i] = true
		for _, e := range q.Push(it, nil) {
			if !held[e.ID] {
				t.Fatalf("evicted %d twice or never pushed", e.ID)
			}
			delete(held, e.ID)
		}
		if _, b := q.Len(); b > 1000 {
			t.Fatalf("budget exceeded: %d", b)
		}
	}
	if n, _ := q.Len(); n != len(held) {
		t.Fatalf("Len %d, held %d", n, len(held))
	}
	for _, e := range q.Drain() {
		delete(held, e.ID)
	}
	if len(held) != 0 {
		t.Fatalf("%d items lost", len(held))
	}
}

func TestItemsWait(t *testing.T) {
	// With room for ~100 items, an item is never evicted by the next push.
	q := New(1, 100*8, 2)
	for i := range uint64(1000) {
		for _, e := range q.Push(Item{ID: i, Bytes: 8}, nil) {
			if i-e.ID < RandomSlots/2 {
				t.Fatalf("item %d evicted after only %d pushes", e.ID, i-e.ID)
			}
		}
	}
}

func TestAlwaysClassOutsideBudget(t *testing.T) {
	q := New(2, 0, 3)
	q.SetAlways(1)
	if ev := q.Push(Item{Class: 0, ID: 1, Bytes: 8}, nil); len(ev) != 1 || ev[0].ID != 1 {
		t.Fatalf("zero budget should release class 0 at once: %v", ev)
	}
	for i := range uint64(AlwaysDepth) {
		if ev := q.Push(Item{Class: 1, ID: 100 + i, Bytes: 8}, nil); len(ev) != 0 {
			t.Fatalf("always class evicted early: %v", ev)
		}
	}
	if ev := q.Push(Item{Class: 1, ID: 9999, Bytes: 8}, nil); len(ev) != 1 || ev[0].ID != 100 {
		t.Fatalf("always class should evict its oldest: %v", ev)
	}
}

func TestDeterministic(t *testing.T) {
	run := func() []uint64 {
		q := New(2, 64, 9)
		var out []uint64
		for i := range uint64(200) {
			for _, e := range q.Push(Item{Class: int(i % 2), ID: i, Bytes: 8}, nil) {
				out = append(out, e.ID)
			}
		}
		return out
	}
	a, b := run(), run()
	for i := range a {
		if a[i] != b[i] {
			t.Fatal("same seed, different eviction order")
		}
	}
}

func BenchmarkPush(b *testing.B) {
	q := New(8, 1<<20, 1)
	var buf [4]Item
	for i := uint64(0); b.Loop(); i++ {
		q.Push(Item{Class: int(i % 8), ID: i, Bytes: 96}, buf[:])
	}
}

func TestNewestEvictedLast(t *testing.T) {
	q := New(1, 100, 5)
	for i := range uint64(50) {
		for _, e := range q.Push(Item{ID: i, Bytes: 40}, nil) {
			if e.ID == i {
				t.Fatalf("item %d evicted by its own push while older items were held", i)
			}
		}
	}
	if ev := q.Push(Item{ID: 999, Bytes: 1000}, nil); len(ev) == 0 || ev[len(ev)-1].ID != 999 {
		t.Fatalf("an item larger than the budget must be released at once: %v", ev)
	}
}

// TestReset: a Reset quarantine holds nothing, takes its new budget, keeps
// its Always classes, and behaves like a New one with the same seed.
func TestReset(t *testing.T) {
	q := New(3, 500, 9)
	q.SetAlways(2)
	for i := range uint64(300) {
		q.Push(Item{Class: int(i % 3), ID: i + 1, Bytes: 16}, nil)
	}
	q.Reset(64, 4)
	if n, b := q.Len(); n != 0 || b != 0 {
		t.Fatalf("after Reset: %d items, %d bytes", n, b)
	}
	if d := q.Drain(); len(d) != 0 {
		t.Fatalf("Reset quarantine drained %d items", len(d))
	}
	fresh := New(3, 64, 4)
	fresh.SetAlways(2)
	for i := range uint64(200) {
		it := Item{Class: int(i % 3), ID: i + 1000, Bytes: 16}
		got, want := q.Push(it, nil), fresh.Push(it, nil)
		if len(got) != len(want) {
			t.Fatalf("push %d: Reset evicts %v, New evicts %v", i, got, want)
		}
		for k := range got {
			if got[k] != want[k] {
				t.Fatalf("push %d: Reset evicts %v, New evicts %v", i, got, want)
			}
		}
		if _, b := q.Len(); b > 64 {
			t.Fatalf("new budget exceeded: %d", b)
		}
	}
}
