package hardened_test

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/hardalloc/hardalloc/hardened"
	"github.com/hardalloc/hardalloc/internal/harness"
)

// Options.MinAlign: every block Alloc, Realloc and AllocAligned hand out
// has it, on the fast paths and off them, zeroed and freeable.
func TestMinAlign(t *testing.T) {
	for _, align := range []int{32, 64, 4096} {
		t.Run(fmt.Sprint(align), func(t *testing.T) {
			a, _ := newAlloc(t, hardened.Options{MinAlign: align})
			var live [][]byte
			for _, n := range sizes {
				for range 3 { // a cold and two warm (cached-slot) allocations
					b := mustAlloc(t, a, n)
					if n > 0 && addr(b)%uintptr(align) != 0 {
						t.Fatalf("Alloc(%d) = %#x, not %d-aligned", n, addr(b), align)
					}
					if !isZero(b) {
						t.Fatalf("Alloc(%d) not zeroed", n)
					}
					fill(b, byte(n))
					live = append(live, b)
				}
			}
			for i, b := range live {
				n := len(b)
				nb := mustRealloc(t, a, b, n+100)
				if addr(nb)%uintptr(align) != 0 {
					t.Fatalf("Realloc(%d -> %d) = %#x, not %d-aligned", n, n+100, addr(nb), align)
				}
				verify(t, nb, byte(n), n)
				live[i] = nb
			}
			b, err := a.AllocAligned(100, align/2)
			if err != nil || addr(b)%uintptr(align) != 0 {
				t.Fatalf("AllocAligned(100, %d) = %#x, %v", align/2, addr(b), err)
			}
			live = append(live, b)
			for _, b := range live {
				a.Free(b)
			}
			if s := a.Stats(); s.LiveBlocks != 0 {
				t.Fatalf("%d blocks live after freeing all", s.LiveBlocks)
			}
		})
	}
	for _, bad := range []int{-16, 3, 48, hardened.MaxAlign * 2} {
		if _, err := hardened.New(hardened.Options{MinAlign: bad}); !errors.Is(err, hardened.ErrAlignment) {
			t.Errorf("New(MinAlign: %d) = %v, want ErrAlignment", bad, err)
		}
	}
}

// ReallocAligned keeps the alignment asked for, growing and shrinking,
// and keeps the bytes.
func TestReallocAligned(t *testing.T) {
	a, _ := newAlloc(t, hardened.Options{})
	for _, align := range []int{16, 64, 256, 8192} {
		b, err := a.ReallocAligned(nil, 40, align)
		if err != nil || addr(b)%uintptr(align) != 0 || len(b) != 40 {
			t.Fatalf("ReallocAligned(nil, 40, %d) = %#x len %d, %v", align, addr(b), len(b), err)
		}
		fill(b, 7)
		for _, n := range []int{41, 1000, 100_000, 300_000, 20, 5000} {
			old := len(b)
			b, err = a.ReallocAligned(b, n, align)
			if err != nil || addr(b)%uintptr(align) != 0 || len(b) != n {
				t.Fatalf("ReallocAligned(%d -> %d, %d) = %#x len %d, %v", old, n, align, addr(b), len(b), err)
			}
			verify(t, b, 7, min(old, n, 20))
		}
		a.Free(b)
	}
	if _, err := a.ReallocAligned(nil, 10, 24); !errors.Is(err, hardened.ErrAlignment) {
		t.Fatalf("ReallocAligned(align 24) = %v, want ErrAlignment", err)
	}
	// Realloc of an aligned block keeps only the allocator's alignment;
	// ReallocAligned is the way to keep more.
	b, _ := a.AllocAligned(64, 64)
	var err error
	if b, err = a.ReallocAligned(b, 64*1024, 64); err != nil || addr(b)%64 != 0 {
		t.Fatalf("ReallocAligned of an AllocAligned block = %#x, %v", addr(b), err)
	}
	a.Free(b)
}

// UsableSize: Realloc up to it does not move the block; after Free it is
// a use after free, reported.
func TestUsableSize(t *testing.T) {
	a, c := newAlloc(t, hardened.Options{})
	for _, n := range []int{1, 17, 100, 4000, 70_000, 200_000} {
		b := mustAlloc(t, a, n)
		u, err := a.UsableSize(b)
		if err != nil || u < n {
			t.Fatalf("UsableSize(%d-byte block) = %d, %v", n, u, err)
		}
		if hardened.Enabled && u != n {
			t.Fatalf("hardened UsableSize(%d-byte block) = %d: hardened Realloc always moves", n, u)
		}
		fill(b, 3)
		nb := mustRealloc(t, a, b, u)
		if !hardened.Enabled && addr(nb) != addr(b) {
			t.Fatalf("Realloc(%d -> UsableSize %d) moved the block", n, u)
		}
		verify(t, nb, 3, n)
		a.Free(nb)
		if _, err := a.UsableSize(nb); !errors.Is(err, hardened.UseAfterFree) {
			t.Fatalf("UsableSize of a freed block = %v, want a use after free", err)
		}
		if r := c.take(); len(r) != 1 || r[0].Kind != hardened.UseAfterFree {
			t.Fatalf("UsableSize of a freed block reported %v", r)
		}
	}
	if u, err := a.UsableSize(nil); u != 0 || err != nil {
		t.Fatalf("UsableSize(nil) = %d, %v", u, err)
	}
}

// AllocAligned(0, align) is a zero-size block like Alloc(0): in hardened
// builds an address in the PROT_NONE zero-size region, aligned.
func TestAllocAlignedZero(t *testing.T) {
	a, c := newAlloc(t, hardened.Options{})
	for _, align := range []int{16, 64, 4096} {
		b, err := a.AllocAligned(0, align)
		if err != nil || addr(b)%uintptr(align) != 0 || len(b) != 0 {
			t.Fatalf("AllocAligned(0, %d) = %#x, %v", align, addr(b), err)
		}
		l, ok := harness.LayoutOf(a, b)
		if !ok || l.Zero != hardened.Enabled {
			t.Fatalf("AllocAligned(0, %d): layout %+v (live %v), want Zero %v", align, l, ok, hardened.Enabled)
		}
		a.Free(b)
		a.Free(b)
		if r := c.take(); len(r) != 1 || r[0].Kind != hardened.DoubleFree {
			t.Fatalf("double free of AllocAligned(0, %d): reports %v", align, r)
		}
	}
}

// wrapAlloc and wrapFree stand for an adapter around the allocator.
func wrapAlloc(a *hardened.Allocator, n int) []byte {
	b, err := a.Alloc(n)
	if err != nil {
		panic(err)
	}
	return b
}

func wrapFree(a *hardened.Allocator, b []byte) { a.Free(b) }

// Options.Wrappers drops an adapter's frames from the top of sites, so a
// report and its summary name the adapter's caller.
func TestWrappers(t *testing.T) {
	if !hardened.Enabled {
		t.Skip("release builds record no sites")
	}
	for _, wrappers := range [][]string{nil, {"github.com/hardalloc/hardalloc/hardened_test.wrap"}} {
		a, c := newAlloc(t, hardened.Options{Wrappers: wrappers})
		b := wrapAlloc(a, 40)
		wrapFree(a, b)
		wrapFree(a, b)
		r := c.take()
		if len(r) != 1 || r[0].Kind != hardened.DoubleFree {
			t.Fatalf("reports %v, want one double free", r)
		}
		top := r[0].Alloc.Frames()[0].Function
		want := "hardened_test.wrapAlloc"
		if wrappers != nil {
			want = "hardened_test.TestWrappers"
		}
		if !strings.HasSuffix(top, want) || !strings.Contains(r[0].Summary(), want) {
			t.Errorf("wrappers %q: allocation site starts at %s, summary %q; want %s", wrappers, top, r[0].Summary(), want)
		}
		if top := r[0].Free.Frames()[0].Function; wrappers != nil && !strings.HasSuffix(top, want) {
			t.Errorf("wrappers %q: free site starts at %s, want %s", wrappers, top, want)
		}
	}
}

// The harness's Cache: every operation goes through the cache it chooses, so
// blocks allocated through one are freed through another, from several
// goroutines at once; slots are conserved and every block comes back.
func TestOptionsCache(t *testing.T) {
	var n atomic.Uint64
	a, _ := newAllocWith(t, hardened.Options{}, harness.Extra{Cache: func() int { return int(n.Add(1) * 7 >> 1) }})
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var live [][]byte
			for i := range 3000 {
				b, err := a.Alloc(16 + (i*37+g)%2000)
				if err != nil {
					t.Error(err)
					return
				}
				b[0] = byte(g)
				live = append(live, b)
				if i%3 == 2 {
					a.Free(live[0])
					live = live[1:]
				}
			}
			for _, b := range live {
				a.Free(b)
			}
		}()
	}
	wg.Wait()
	if n.Load() == 0 {
		t.Fatal("Options.Cache was never asked")
	}
	if s := a.Stats(); s.LiveBlocks != 0 {
		t.Fatalf("%d blocks live after freeing all", s.LiveBlocks)
	}
	if err := harness.Audit(a); err != nil {
		t.Fatal(err)
	}
}

// A second Free of a block whose slab has emptied and gone back to the OS
// (its header reads zero, as a never-allocated slot's does) is still a
// double free, not an invalid free: the race two Frees of one block can
// lose that way (FuzzAllocFree found it).
func TestDoubleFreeAfterPurge(t *testing.T) {
	// No per-P caching (a Limit) and no quarantine: every Free returns
	// its slot to the central list at once, and a second emptied slab is
	// purged there and then.
	a, c := newAlloc(t, hardened.Options{Limit: 1 << 30, QuarantineBytes: -1})
	var bs [][]byte
	for range 40 {
		bs = append(bs, mustAlloc(t, a, 10_000))
	}
	for _, b := range bs {
		a.Free(b)
	}
	if s := a.Stats(); s.LiveBlocks != 0 {
		t.Fatalf("%d live", s.LiveBlocks)
	}
	a.Free(bs[len(bs)-1]) // its slab was purged when it emptied
	r := c.take()
	if len(r) != 1 || r[0].Kind != hardened.DoubleFree {
		t.Fatalf("second Free after its slab was purged: reports %v, want one double free", r)
	}
}
