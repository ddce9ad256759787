package quarantine

import (
	"math/rand/v2"
	"sync"
	"testing"
)

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

// TestShards: shards share one budget (never exceeded once a push
// returns, even when every push goes to one shard), a shard recycles its
// own blocks when the load is even, a lone shard gets the whole budget,
// and nothing is lost or evicted twice.
func TestShards(t *testing.T) {
	const budget = 100 * 16
	s := NewShards(3, 4, budget, 5)
	s.SetAlways(3)
	held := map[uint64]int{} // id -> shard
	foreign := 0
	push := func(shard int, id uint64, class int) {
		held[id] = shard
		for _, e := range s.PushAll(shard, []Item{{Class: class, ID: id, Bytes: 16}}, nil) {
			from, ok := held[e.ID]
			if !ok {
				t.Fatalf("item %d evicted twice or never pushed", e.ID)
			}
			if from != shard {
				foreign++
			}
			delete(held, e.ID)
		}
		if _, b := s.Count(); b > budget {
			t.Fatalf("budget exceeded: %d", b)
		}
	}
	// One shard alone: it may use the whole budget.
	for id := range uint64(500) {
		push(0, id+1, int(id%3))
	}
	if _, b := s.Count(); b != budget {
		t.Fatalf("a lone shard holds %d bytes, want the whole budget %d", b, budget)
	}
	// Even load on shards 1 and 2: after shard 0 has been drained by
	// their evictions, each recycles (almost only) what it freed.
	for id := range uint64(4000) {
		push(1+int(id%2), id+1000, int(id%3))
	}
	foreign = 0
	shared := func() (n int) { // writes other shards' Ps read
		for _, q := range s.shards {
			n += q.reserves + q.publishes
		}
		return n
	}
	before := shared()
	for id := range uint64(4000) {
		push(1+int(id%2), id+10000, int(id%3))
	}
	t.Logf("foreign evictions: %d of 4000", foreign)
	if foreign > 400 {
		t.Errorf("%d of 4000 evictions went to another shard's P", foreign)
	}
	// The budget is full and the load even: pushes reserve nothing, and
	// publish a shard's size only when it moved by the slack (the
	// budget/64 of 16-byte items: here, two items).
	t.Logf("reservations and publications: %d", shared()-before)
	if n := shared() - before; n > 400 {
		t.Errorf("%d reservations and publications in 4000 even pushes", n)
	}
	// Always classes are held in every shard, outside the budget.
	for id := range uint64(10) {
		push(int(id%3), id+50000, 3)
	}
	n, _ := s.Count()
	if n != len(held) {
		t.Fatalf("Count %d items, %d held", n, len(held))
	}
	for _, e := range s.Drain() {
		if _, ok := held[e.ID]; !ok {
			t.Fatalf("Drain returned %d, not held", e.ID)
		}
		delete(held, e.ID)
	}
	if len(held) != 0 {
		t.Fatalf("%d items lost", len(held))
	}
	if n, b := s.Count(); n != 0 || b != 0 {
		t.Fatalf("after Drain: %d items, %d bytes", n, b)
	}
	// After a Drain the shared count is back to zero: the whole budget
	// is available again.
	for id := range uint64(200) {
		push(2, id+60000, 0)
	}
	if _, b := s.Count(); b != budget {
		t.Fatalf("after Drain a shard holds %d bytes, want %d", b, budget)
	}
}

// TestShardsConcurrent pushes from several goroutines at once, each mostly
// into its own shard and sometimes into another's, with sizes that leave
// reservations uneven: steals and reservations race. Once all pushes have
// returned, the budget holds, the reservations add up to the shared count
// and none is negative, and every item is held or was evicted exactly once.
// The one interleaving that broke the reservations (a steal from a shard
// in the middle of its push) is too rare here to be found reliably:
// TestShardsStealMidPush builds it by hand.
func TestShardsConcurrent(t *testing.T) {
	const (
		shards  = 4
		budget  = 64 << 10
		perG    = 20000
		maxSize = 2048
	)
	for round := range 3 {
		s := NewShards(shards, 8, budget, uint64(round))
		var (
			mu      sync.Mutex
			evicted = map[uint64]bool{}
			wg      sync.WaitGroup
		)
		for g := range shards {
			wg.Add(1)
			go func() {
				defer wg.Done()
				rng := rand.New(rand.NewPCG(uint64(round), uint64(g)))
				var buf [64]Item
				batch := make([]Item, 0, 32)
				for i := range perG {
					id := uint64(g)<<32 | uint64(i) + 1
					batch = append(batch, Item{Class: rng.IntN(8), ID: id, Bytes: int64(16 + rng.IntN(maxSize))})
					if len(batch) < 1+rng.IntN(32) {
						continue
					}
					shard := g
					if rng.IntN(8) == 0 {
						shard = rng.IntN(shards)
					}
					ev := s.PushAll(shard, batch, buf[:0])
					batch = batch[:0]
					mu.Lock()
					for _, e := range ev {
						if evicted[e.ID] {
							t.Errorf("item %#x evicted twice", e.ID)
						}
						evicted[e.ID] = true
					}
					mu.Unlock()
				}
				if len(batch) > 0 {
					ev := s.PushAll(g, batch, buf[:0])
					mu.Lock()
					for _, e := range ev {
						evicted[e.ID] = true
					}
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
		n, b := s.Count()
		if b > budget {
			t.Errorf("round %d: %d bytes held, budget %d", round, b, budget)
		}
		var reserved int64
		for i, q := range s.shards {
			if q.reserved < 0 {
				t.Errorf("round %d: shard %d has a negative reservation %d", round, i, q.reserved)
			}
			if q.bytes > q.reserved {
				t.Errorf("round %d: shard %d holds %d bytes on a reservation of %d", round, i, q.bytes, q.reserved)
			}
			reserved += q.reserved
		}
		if got := s.bytes.Load(); got != reserved {
			t.Errorf("round %d: shared count %d, reservations add up to %d", round, got, reserved)
		}
		if n+len(evicted) != shards*perG {
			t.Errorf("round %d: %d held + %d evicted, %d pushed", round, n, len(evicted), shards*perG)
		}
	}
}

// TestShardsStealMidPush sets up by hand the moment a concurrent test
// rarely hits: shard 1 is inside its own PushAll, holding blocks it has
// not reserved (the budget is full) and stealing elsewhere, when shard
// 0's push picks it as the victim. The steal may move only the
// reservation shard 1 has (none): moving what it frees would leave shard
// 1 a negative reservation and shard 0 a reservation nobody released.
func TestShardsStealMidPush(t *testing.T) {
	const item, budget = 16, 100 * 16
	s := NewShards(3, 1, budget, 7)
	items := func(first, n int) []Item {
		out := make([]Item, n)
		for i := range out {
			out[i] = Item{ID: uint64(first + i), Bytes: item}
		}
		return out
	}
	s.PushAll(2, items(1000, 100), nil) // shard 2 reserves the whole budget
	q1 := s.shards[1]
	q1.mu.Lock()
	for _, it := range items(2000, 100) {
		q1.push(it, nil) // shard 1's push, its reservation not yet settled
	}
	s.publishExact(q1)
	q1.mu.Unlock()
	s.PushAll(0, items(3000, 1), nil)
	check := func(when string) {
		var sum int64
		for i, q := range s.shards {
			if q.reserved < 0 {
				t.Errorf("%s: shard %d has reservation %d", when, i, q.reserved)
			}
			sum += q.reserved
		}
		if got := s.bytes.Load(); got != sum || got > budget {
			t.Errorf("%s: shared count %d, reservations %d, budget %d", when, got, sum, budget)
		}
	}
	check("after the steal")
	s.PushAll(1, nil, nil) // shard 1's push settles
	check("after shard 1 settles")
	if _, b := s.Count(); b > budget {
		t.Errorf("%d bytes held, budget %d", b, budget)
	}
	for i, q := range s.shards {
		if q.bytes > q.reserved {
			t.Errorf("shard %d holds %d bytes on a reservation of %d", i, q.bytes, q.reserved)
		}
	}
}

// TestFIFO: a FIFO quarantine evicts in exactly the order it was pushed,
// each item once the budget behind it is full, never early; its Always
// classes, Each, Drain and Reset work as in the random one.
func TestFIFO(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	q := NewFIFO(4, 1000)
	q.SetAlways(3)
	var order []Item // budgeted items pushed, oldest first, not yet evicted
	var held int64
	next := 0
	for i := range uint64(5000) {
		it := Item{Class: int(i % 3), ID: i, Bytes: int64(1 + rng.IntN(120))}
		order = append(order, it)
		held += it.Bytes
		ev := q.Push(it, nil)
		for _, e := range ev {
			if e != order[next] {
				t.Fatalf("push %d evicted %v, want the oldest %v", i, e, order[next])
			}
			held -= e.Bytes
			next++
		}
		if held > 1000 {
			t.Fatalf("push %d: %d bytes held, budget 1000", i, held)
		}
		// Never early: the oldest item still held would not have fit.
		if len(ev) > 0 && held+order[next-1].Bytes <= 1000 {
			t.Fatalf("push %d evicted %v though the budget had room for it", i, order[next-1])
		}
		if i%100 == 0 { // an Always item, outside the budget
			if ev := q.Push(Item{Class: 3, ID: 1<<40 | i, Bytes: 1 << 20}, nil); len(ev) != 0 {
				t.Fatalf("always class evicted early: %v", ev)
			}
		}
	}
	seen := map[uint64]bool{}
	q.Each(func(it Item) { seen[it.ID] = true })
	for _, it := range order[next:] {
		if !seen[it.ID] {
			t.Fatalf("Each misses %v", it)
		}
	}
	if len(seen) != len(order)-next+50 {
		t.Fatalf("Each saw %d items, want %d budgeted and 50 always", len(seen), len(order)-next)
	}
	if d := q.Drain(); len(d) != len(seen) {
		t.Fatalf("Drain returned %d items, want %d", len(d), len(seen))
	}
	q.Reset(100, 0)
	if ev := q.Push(Item{Class: 0, ID: 1, Bytes: 60}, nil); len(ev) != 0 {
		t.Fatalf("after Reset: %v evicted at once", ev)
	}
	if ev := q.Push(Item{Class: 1, ID: 2, Bytes: 60}, nil); len(ev) != 1 || ev[0].ID != 1 {
		t.Fatalf("after Reset, budget 100: evicted %v, want item 1", ev)
	}
}

// TestShardsFIFO: each shard of NewShardsFIFO evicts its own items
// oldest first while the load is even, and the shared budget holds.
func TestShardsFIFO(t *testing.T) {
	const budget = 64 * 16
	s := NewShardsFIFO(2, 2, budget)
	var pushed [2][]uint64
	var evicted [2]int
	for id := range uint64(4000) {
		sh := int(id % 2)
		pushed[sh] = append(pushed[sh], id)
		for _, e := range s.PushAll(sh, []Item{{Class: int(id % 2), ID: id, Bytes: 16}}, nil) {
			from := int(e.ID % 2)
			if want := pushed[from][evicted[from]]; e.ID != want {
				t.Fatalf("shard %d evicted %d, want its oldest %d", from, e.ID, want)
			}
			evicted[from]++
		}
		if _, b := s.Count(); b > budget {
			t.Fatalf("budget exceeded: %d", b)
		}
	}
	if n, b := s.Count(); b != budget || n != 4000-evicted[0]-evicted[1] {
		t.Fatalf("Count %d items, %d bytes; want %d, %d", n, b, 4000-evicted[0]-evicted[1], budget)
	}
}
