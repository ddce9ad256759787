package hardened_test

import (
	"errors"
	"fmt"
	"slices"
	"testing"
	"unsafe"

	"github.com/hardalloc/hardalloc/hardened"
	"github.com/hardalloc/hardalloc/internal/harness"
)

func TestReset(t *testing.T) {
	a, c := newAlloc(t, hardened.Options{})
	var old [][]byte
	for _, n := range []int{0, 10, 100, 5000, 100_000, 200_000} {
		b := mustAlloc(t, a, n)
		fill(b, 3)
		old = append(old, b)
	}
	err := harness.Reset(a, 99)
	if !errors.Is(err, hardened.Leak) {
		t.Fatalf("Reset with live blocks = %v, want leaks", err)
	}
	if got := len(c.take()); got != len(old) {
		t.Fatalf("%d leak reports, want %d", got, len(old))
	}
	if s := a.Stats(); s.LiveBlocks != 0 || s.Requested != 0 {
		t.Fatalf("stats after Reset: %+v", s)
	}
	// Memory is reused and zeroed; pre-Reset blocks are no longer valid.
	for range 3 {
		b, err := a.Alloc(100)
		if err != nil || !isZero(b) {
			t.Fatalf("Alloc after Reset: %v", err)
		}
		a.Free(b)
	}
	a.Free(old[3]) // its slot was not handed out again
	if r := c.take(); len(r) != 1 || r[0].Kind != hardened.InvalidFree {
		t.Fatalf("Free of a pre-Reset block: %v", r)
	}
	if err := harness.Reset(a, 100); err != nil {
		t.Fatalf("Reset of a clean allocator: %v", err)
	}
}

// TestResetReplays: after Reset, an allocator hands out the same slots
// for the same program whatever earlier programs left committed (spill
// would otherwise borrow slots of classes an earlier program grew), so a
// fuzz failure found on a pooled allocator replays on a fresh one.
func TestResetReplays(t *testing.T) {
	// A Limit turns the per-P caches off: no dependence on which P runs.
	a, _ := newAlloc(t, hardened.Options{Limit: 1 << 40, QuarantineBytes: -1})
	program := func() []uintptr {
		var out []uintptr
		var live [][]byte
		for i := range 60 {
			b, err := a.Alloc([]int{540, 600, 700, 100}[i%4])
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, uintptr(unsafe.Pointer(unsafe.SliceData(b))))
			live = append(live, b)
			if i%3 == 2 {
				a.Free(live[0])
				live = live[1:]
			}
		}
		for _, b := range live {
			a.Free(b)
		}
		return out
	}
	history := func(size, n int) {
		var bs [][]byte
		for range n {
			b := mustAlloc(t, a, size)
			bs = append(bs, b)
		}
		for _, b := range bs {
			a.Free(b)
		}
	}
	var runs [][]uintptr
	for _, h := range []struct{ size, n int }{{0, 0}, {600, 300}, {700, 200}, {540, 500}} {
		history(h.size, h.n)
		if err := harness.Reset(a, 7); err != nil {
			t.Fatal(err)
		}
		runs = append(runs, program())
	}
	for k := 1; k < len(runs); k++ {
		for i := range runs[0] {
			if runs[k][i] != runs[0][i] {
				t.Fatalf("history %d: block %d at %#x, after no history at %#x", k, i, runs[k][i], runs[0][i])
			}
		}
	}
}

// The same program on a new allocator and on one recycled by Reset (after
// another program) gives the same layout, the same reports and the same
// Stats: what fuzzing on pooled allocators finds replays on a fresh one.
func TestResetIsNew(t *testing.T) {
	type result struct {
		offs    []uintptr
		reports []string
		stats   hardened.Stats
	}
	program := func(a *hardened.Allocator, c *collector) result {
		var r result
		var live [][]byte
		var first uintptr
		for i := range 200 {
			b := mustAlloc(t, a, []int{24, 600, 3000, 48, 0, 9000}[i%6])
			if first == 0 {
				first = addr(b)
			}
			if len(b) > 0 { // hardened 0-byte blocks live in a mapping of their own
				r.offs = append(r.offs, addr(b)-first)
			}
			live = append(live, b)
			if i%3 == 2 {
				a.Free(live[0])
				live = live[1:]
			}
		}
		a.Free(live[0])
		a.Free(live[0]) // a double free: its report must match too
		for _, rep := range c.take() {
			r.reports = append(r.reports, fmt.Sprintf("%v %d %d", rep.Kind, rep.Size, rep.Addr-first))
		}
		r.stats = a.Stats()
		for _, b := range live[1:] {
			a.Free(b)
		}
		return r
	}
	opts := hardened.Options{Seed: 9, Limit: 1 << 40} // a Limit: no per-P caches, no dependence on the P
	fresh, fc := newAlloc(t, opts)
	want := program(fresh, fc)
	pooled, pc := newAlloc(t, opts)
	check := func(pooled *hardened.Allocator, pc *collector) {
		t.Helper()
		got := program(pooled, pc)
		if !slices.Equal(got.offs, want.offs) {
			t.Errorf("layout differs after Reset:\n got %v\nwant %v", got.offs[:12], want.offs[:12])
		}
		if !slices.Equal(got.reports, want.reports) || len(want.reports) != 1 {
			t.Errorf("reports differ: got %v, want %v", got.reports, want.reports)
		}
		if got.stats.Requested != want.stats.Requested || got.stats.LiveBlocks != want.stats.LiveBlocks ||
			got.stats.Mapped != want.stats.Mapped {
			t.Errorf("Stats differ: got %+v\nwant %+v", got.stats, want.stats)
		}
	}
	for range 3 { // another program first, then Reset with the same seed
		b := mustAlloc(t, pooled, 700)
		mustAlloc(t, pooled, 5000) // leaked: Reset reports it
		pooled.Free(b)
	}
	harness.Reset(pooled, 9)
	pc.take()
	check(pooled, pc)
	// ResetWith to other options (MinAlign, stacks, a chosen cache),
	// then back: the same program, the same result as on a new one.
	other := opts
	other.MinAlign, other.StackDepth, other.OnReport = 64, 4, pc.add
	if err := harness.ResetWith(pooled, other, harness.Extra{Cache: func() int { return 1 }}); err != nil {
		t.Fatal(err)
	}
	program(pooled, pc)
	opts.OnReport = pc.add
	if err := harness.ResetWith(pooled, opts, harness.Extra{}); err != nil {
		t.Fatal(err)
	}
	pc.take()
	check(pooled, pc)
	bad := opts
	bad.Redzone = 64
	if err := harness.ResetWith(pooled, bad, harness.Extra{}); err == nil {
		t.Fatal("ResetWith accepted a new Redzone")
	}
}

// TestResetWithOptions: the options ResetWith changes take effect.
func TestResetWithOptions(t *testing.T) {
	a, c := newAlloc(t, hardened.Options{Seed: 3})
	if err := harness.ResetWith(a, hardened.Options{Seed: 4, MinAlign: 256, OnReport: c.add}, harness.Extra{}); err != nil {
		t.Fatal(err)
	}
	for range 10 {
		b := mustAlloc(t, a, 40)
		if addr(b)%256 != 0 {
			t.Fatalf("after ResetWith(MinAlign 256): %#x", addr(b))
		}
		a.Free(b)
	}
}

// TestResetWithSampleRate: ResetWith changes a positive SampleRate (the
// countdowns take the new rate, as New would have drawn them), and
// refuses to turn sampling on or off, which maps or drops its pool.
func TestResetWithSampleRate(t *testing.T) {
	a, c := newAlloc(t, hardened.Options{Seed: 3, SampleRate: 1 << 20})
	sampled := func() int64 {
		var bs [][]byte
		for range 8 {
			bs = append(bs, mustAlloc(t, a, 40))
		}
		n := a.Stats().Sampled
		for _, b := range bs {
			a.Free(b)
		}
		return n
	}
	if n := sampled(); n != 0 {
		t.Fatalf("one in a million: %d of 8 blocks sampled", n)
	}
	if err := harness.ResetWith(a, hardened.Options{Seed: 4, SampleRate: 1, OnReport: c.add}, harness.Extra{}); err != nil {
		t.Fatal(err)
	}
	if n := sampled(); n != 8 {
		t.Fatalf("after ResetWith(SampleRate 1): %d of 8 blocks sampled, want all", n)
	}
	if err := harness.ResetWith(a, hardened.Options{Seed: 5, OnReport: c.add}, harness.Extra{}); err == nil {
		t.Fatal("ResetWith turned sampling off")
	}
	b, _ := newAlloc(t, hardened.Options{Seed: 3})
	if err := harness.ResetWith(b, hardened.Options{Seed: 4, SampleRate: 2, OnReport: c.add}, harness.Extra{}); err == nil {
		t.Fatal("ResetWith turned sampling on")
	}
}
