package hardened_test

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"

	"github.com/hardalloc/hardalloc/hardened"
	"github.com/hardalloc/hardalloc/internal/harness"
)

var sizes = []int{0, 1, 7, 15, 16, 17, 100, 255, 256, 257, 1000, 1024, 1025, 4095, 4096, 32768, 65535, 65536, 65537, 200_000, 1 << 21}

func TestAllocContract(t *testing.T) {
	a, _ := newAlloc(t, hardened.Options{})
	seen := map[uintptr]bool{}
	var live [][]byte
	for round := range 3 {
		for _, n := range sizes {
			b, err := a.Alloc(n)
			if err != nil {
				t.Fatalf("Alloc(%d): %v", n, err)
			}
			if len(b) != n || cap(b) != n {
				t.Fatalf("Alloc(%d): len %d cap %d", n, len(b), cap(b))
			}
			if addr(b) == 0 || addr(b)%16 != 0 {
				t.Fatalf("Alloc(%d) = %#x: not 16-byte aligned", n, addr(b))
			}
			if seen[addr(b)] {
				t.Fatalf("Alloc(%d) = %#x: handed out twice", n, addr(b))
			}
			seen[addr(b)] = true
			if !isZero(b) {
				t.Fatalf("Alloc(%d) not zeroed", n)
			}
			fill(b, byte(n+round))
			live = append(live, b)
		}
	}
	for i, b := range live {
		verify(t, b, byte(len(b)+i/len(sizes)), len(b))
		a.Free(b)
	}
	if s := a.Stats(); s.LiveBlocks != 0 || s.Requested != 0 {
		t.Fatalf("after freeing all: %+v", s)
	}
}

func TestZeroedAfterReuse(t *testing.T) {
	a, _ := newAlloc(t, hardened.Options{})
	for _, n := range sizes {
		for range 50 {
			b, err := a.Alloc(n)
			if err != nil {
				t.Fatal(err)
			}
			if !isZero(b) {
				t.Fatalf("Alloc(%d) returned dirty memory after reuse", n)
			}
			for i := range b {
				b[i] = 0xa5
			}
			a.Free(b)
		}
	}
}

func TestAllocZeroIsDistinctAndFreeable(t *testing.T) {
	a, _ := newAlloc(t, hardened.Options{})
	x := mustAlloc(t, a, 0)
	y := mustAlloc(t, a, 0)
	if x == nil || y == nil || addr(x) == addr(y) {
		t.Fatalf("Alloc(0) twice: %#x %#x", addr(x), addr(y))
	}
	a.Free(x)
	a.Free(y)
	a.Free(nil) // no-op
}

func TestAllocAligned(t *testing.T) {
	a, _ := newAlloc(t, hardened.Options{})
	for _, align := range []int{1, 2, 8, 16, 32, 64, 256, 4096, 8192, 65536, 1 << 20} {
		for _, n := range []int{0, 1, 33, 4000, 70000} {
			b, err := a.AllocAligned(n, align)
			if err != nil {
				t.Fatalf("AllocAligned(%d, %d): %v", n, align, err)
			}
			if addr(b)%uintptr(align) != 0 || len(b) != n || cap(b) != n || !isZero(b) {
				t.Fatalf("AllocAligned(%d, %d) = %#x len %d", n, align, addr(b), len(b))
			}
			fill(b, 3)
			c, err := a.Realloc(b, n+10)
			if err != nil {
				t.Fatal(err)
			}
			verify(t, c, 3, n)
			a.Free(c)
		}
	}
}

func TestBadArguments(t *testing.T) {
	a, _ := newAlloc(t, hardened.Options{})
	live := mustAlloc(t, a, 10)
	fill(live, 9)
	tests := []struct {
		name string
		call func() ([]byte, error)
		want error
	}{
		{"negative", func() ([]byte, error) { return a.Alloc(-1) }, hardened.ErrInvalidSize},
		{"huge", func() ([]byte, error) { return a.Alloc(1 << 62) }, hardened.ErrInvalidSize},
		{"max int", func() ([]byte, error) { return a.Alloc(int(^uint(0) >> 1)) }, hardened.ErrInvalidSize},
		{"aligned negative", func() ([]byte, error) { return a.AllocAligned(-5, 16) }, hardened.ErrInvalidSize},
		{"align zero", func() ([]byte, error) { return a.AllocAligned(8, 0) }, hardened.ErrAlignment},
		{"align negative", func() ([]byte, error) { return a.AllocAligned(8, -16) }, hardened.ErrAlignment},
		{"align not power of two", func() ([]byte, error) { return a.AllocAligned(8, 48) }, hardened.ErrAlignment},
		{"align too big", func() ([]byte, error) { return a.AllocAligned(8, 1<<40) }, hardened.ErrAlignment},
		{"aligned size overflow", func() ([]byte, error) { return a.AllocAligned(int(^uint(0)>>1)-10, 1<<20) }, hardened.ErrInvalidSize},
		{"realloc negative", func() ([]byte, error) { return a.Realloc(live, -1) }, hardened.ErrInvalidSize},
		{"realloc huge", func() ([]byte, error) { return a.Realloc(live, 1<<62) }, hardened.ErrInvalidSize},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := tt.call()
			if b != nil || !errors.Is(err, tt.want) {
				t.Fatalf("got %v, %v; want nil, %v", b, err, tt.want)
			}
			var oe *hardened.OpError
			if !errors.As(err, &oe) || oe.Op == "" {
				t.Fatalf("error %v is not an *OpError", err)
			}
		})
	}
	verify(t, live, 9, 10) // the block passed to the failed Reallocs is intact
	a.Free(live)
}

func TestRealloc(t *testing.T) {
	a, _ := newAlloc(t, hardened.Options{})
	steps := [][]int{
		{10, 20, 5, 0, 30},
		{16, 17, 32, 48, 64, 100, 4000},
		{5000, 100, 70000, 65536, 65537, 1 << 20, 10},
		{0, 1},
	}
	for _, seq := range steps {
		t.Run(fmt.Sprint(seq), func(t *testing.T) {
			b, err := a.Realloc(nil, seq[0])
			if err != nil || len(b) != seq[0] {
				t.Fatalf("Realloc(nil, %d) = len %d, %v", seq[0], len(b), err)
			}
			fill(b, 1)
			kept := seq[0]
			for _, n := range seq[1:] {
				nb, err := a.Realloc(b, n)
				if err != nil {
					t.Fatalf("Realloc(%d -> %d): %v", len(b), n, err)
				}
				if len(nb) != n || cap(nb) != n {
					t.Fatalf("Realloc -> %d: len %d cap %d", n, len(nb), cap(nb))
				}
				kept = min(kept, n)
				verify(t, nb, 1, kept)
				if !isZero(nb[kept:]) {
					t.Fatalf("Realloc(%d -> %d): grown bytes not zero", len(b), n)
				}
				fill(nb, 1)
				kept = n
				b = nb
			}
			a.Free(b)
		})
	}
}

func TestReallocShrinkThenGrowIsZeroed(t *testing.T) {
	a, _ := newAlloc(t, hardened.Options{})
	b := mustAlloc(t, a, 64)
	fill(b, 7)
	b = mustRealloc(t, a, b, 8)
	b = mustRealloc(t, a, b, 64) // likely in place: the old tail must not come back
	verify(t, b, 7, 8)
	if !isZero(b[8:]) {
		t.Fatal("bytes beyond a shrink reappeared after growing")
	}
	a.Free(b)
}

func TestLimit(t *testing.T) {
	for _, n := range []int{64, 4096, 100_000, 200_000} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			a, _ := newAlloc(t, hardened.Options{Limit: 2 << 20})
			var live [][]byte
			for {
				b, err := a.Alloc(n)
				if err != nil {
					if !errors.Is(err, hardened.ErrOutOfMemory) {
						t.Fatalf("want ErrOutOfMemory, got %v", err)
					}
					break
				}
				live = append(live, b)
				if len(live) > 1<<20 {
					t.Fatal("Limit not enforced")
				}
			}
			if m := a.Stats().Mapped; m > 2<<20 {
				t.Fatalf("mapped %d > limit", m)
			}
			if len(live) < (1<<20)/max(n+16, 4096) {
				t.Fatalf("only %d blocks of %d bytes fit under a 2 MiB limit", len(live), n)
			}
			for _, b := range live {
				a.Free(b)
			}
			for range len(live) {
				b, err := a.Alloc(n)
				if err != nil {
					t.Fatalf("after freeing everything: %v", err)
				}
				defer a.Free(b)
			}
		})
	}
}

// TestConcurrent runs many goroutines that allocate, tag, check and free.
// A block handed to two goroutines at once would have its tag overwritten.
func TestConcurrent(t *testing.T) {
	a, _ := newAlloc(t, hardened.Options{})
	const workers = 8
	iters := 3000
	if testing.Short() {
		iters = 500
	}
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(w), 1))
			var mine [][]byte
			for i := range iters {
				switch {
				case len(mine) > 0 && rng.IntN(3) == 0:
					j := rng.IntN(len(mine))
					b := mine[j]
					for k := range b {
						if b[k] != byte(w) {
							t.Errorf("worker %d: block %#x byte %d is %d", w, addr(b), k, b[k])
							return
						}
					}
					mine[j] = mine[len(mine)-1]
					mine = mine[:len(mine)-1]
					a.Free(b)
				default:
					n := rng.IntN(300)
					if i%97 == 0 {
						n = 70000
					}
					b, err := a.Alloc(n)
					if err != nil {
						t.Error(err)
						return
					}
					for k := range b {
						b[k] = byte(w)
					}
					mine = append(mine, b)
				}
			}
			for _, b := range mine {
				a.Free(b)
			}
		}()
	}
	wg.Wait()
	if s := a.Stats(); s.LiveBlocks != 0 {
		t.Fatalf("live blocks after all frees: %d", s.LiveBlocks)
	}
}

func TestStats(t *testing.T) {
	a, _ := newAlloc(t, hardened.Options{})
	b1 := mustAlloc(t, a, 100)
	b2 := mustAlloc(t, a, 200_000)
	s := a.Stats()
	if s.LiveBlocks != 2 || s.LargeLive != 1 || s.Requested != 200_100 || s.Mapped < 200_100 {
		t.Fatalf("stats: %+v", s)
	}
	var found bool
	for _, c := range s.Classes {
		if c.Live == 1 && c.Size >= 100 {
			found = true
		}
	}
	if !found {
		t.Fatal("per-class live count missing")
	}
	a.Free(b1)
	a.Free(b2)
	if s := a.Stats(); s.LiveBlocks != 0 || s.Requested != 0 {
		t.Fatalf("stats after free: %+v", s)
	}
}

// TestSpill: a class whose free slots are all handed out borrows free
// slots of a slightly larger class before it carves a new slab, and an
// always-quarantined class never does. (A Limit turns the per-P caches
// off, so which slots are free where is deterministic.)
func TestSpill(t *testing.T) {
	classOf := func(a *hardened.Allocator, size int) int {
		for i, cs := range a.Stats().Classes {
			if cs.Size == size {
				return i
			}
		}
		t.Fatalf("no %d-byte class", size)
		return -1
	}
	for _, always := range []bool{false, true} {
		if always && !hardened.Enabled {
			continue // AlwaysQuarantine is a hardened option
		}
		opts := hardened.Options{Limit: 1 << 30, QuarantineBytes: -1}
		if always {
			opts.AlwaysQuarantine = []int{540}
		}
		a, _ := newAlloc(t, opts)
		// 600-byte blocks use the 640-byte class, 540-byte ones the
		// 576-byte class (with or without 16-byte redzones).
		big, small := classOf(a, 640), classOf(a, 576)
		var held [][]byte
		for range 20 {
			b, err := a.Alloc(600)
			if err != nil {
				t.Fatal(err)
			}
			held = append(held, b)
		}
		for _, b := range held {
			a.Free(b)
		}
		slots := (16 << 10) / (576 + 16) // one 16 KiB slab of the 576-byte class
		var blocks [][]byte
		for i := range slots + 20 {
			b, err := a.Alloc(540)
			if err != nil {
				t.Fatal(err)
			}
			if len(b) != 540 || cap(b) != 540 {
				t.Fatalf("len %d cap %d", len(b), cap(b))
			}
			for j, x := range b {
				if x != 0 {
					t.Fatalf("block %d: byte %d not zeroed", i, j)
				}
			}
			for j := range b {
				b[j] = byte(i)
			}
			blocks = append(blocks, b)
		}
		st := a.Stats()
		// Every slot of the 640-byte class's one slab is borrowed (the 20
		// freed and the 4 never used), so the 47 blocks fit in it and one
		// slab of their own.
		wantSlabs, wantBorrowed := int64(1), int64((16<<10)/(640+16))
		if always {
			wantSlabs, wantBorrowed = 2, 0
		}
		if st.Classes[small].Slabs != wantSlabs || st.Classes[big].Live != wantBorrowed {
			t.Errorf("always=%v: %d slabs of the 576-byte class and %d live 640-byte slots, want %d and %d",
				always, st.Classes[small].Slabs, st.Classes[big].Live, wantSlabs, wantBorrowed)
		}
		if err := a.Check(); err != nil {
			t.Fatal(err)
		}
		for i, b := range blocks {
			for j, x := range b {
				if x != byte(i) {
					t.Fatalf("block %d byte %d = %d: blocks overlap", i, j, x)
				}
			}
			a.Free(b)
		}
		if st := a.Stats(); st.LiveBlocks != 0 || st.Requested != 0 {
			t.Fatalf("after freeing everything: %d live blocks, %d bytes", st.LiveBlocks, st.Requested)
		}
	}
}

// TestReadStatsAfterReset: ReadStats reuses its Classes and counts what
// was allocated since Reset, 0-byte blocks (which take no slot in
// hardened builds) included.
func TestReadStatsAfterReset(t *testing.T) {
	a, _ := newAlloc(t, hardened.Options{})
	a.Free(mustAlloc(t, a, 0))
	a.Free(mustAlloc(t, a, 300))
	harness.Reset(a, 7)
	var s hardened.Stats
	harness.ReadStats(a, &s)
	if s.LiveBlocks != 0 || s.Requested != 0 {
		t.Fatalf("after Reset: %d live blocks, %d bytes", s.LiveBlocks, s.Requested)
	}
	classes := &s.Classes[0]
	z := mustAlloc(t, a, 0)
	b := mustAlloc(t, a, 5000)
	harness.ReadStats(a, &s)
	if &s.Classes[0] != classes {
		t.Error("ReadStats made a new Classes slice")
	}
	var live int64
	for _, c := range s.Classes {
		live += c.Live
	}
	if s.LiveBlocks != 2 || live != 2 || s.Requested != 5000 {
		t.Fatalf("after Alloc(0) and Alloc(5000): %d live blocks (%d by class), %d bytes", s.LiveBlocks, live, s.Requested)
	}
	a.Free(z)
	a.Free(b)
	if st := a.Stats(); st.LiveBlocks != 0 {
		t.Fatalf("after freeing both: %d live blocks", st.LiveBlocks)
	}
}
