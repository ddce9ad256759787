package hardened_test

import (
	"errors"
	"runtime"
	"slices"
	"strings"
	"testing"
	"unsafe"

	"github.com/hardalloc/hardalloc/hardened"
	"github.com/hardalloc/hardalloc/internal/harness"
)

// sampledAlloc returns an allocator that samples every allocation.
func sampledAlloc(t *testing.T) (*hardened.Allocator, *collector) {
	t.Helper()
	return newAlloc(t, hardened.Options{SampleRate: 1})
}

// mustSampled allocates n bytes until the block is a sampled one: race
// builds pick a cache, and so a countdown, at random, so a few
// allocations may pass first even at SampleRate 1.
func mustSampled(t *testing.T, a *hardened.Allocator, n int) []byte {
	t.Helper()
	for range 4*runtime.NumCPU() + 4 {
		b := mustAlloc(t, a, n)
		if l, ok := harness.LayoutOf(a, b); ok && l.Sampled {
			return b
		}
		a.Free(b)
	}
	t.Fatal("no block was sampled at SampleRate 1")
	return nil
}

func TestSampledBlocks(t *testing.T) {
	a, col := sampledAlloc(t)
	b := mustSampled(t, a, 100)
	for i := range b {
		if b[i] != 0 {
			t.Fatal("a sampled block is not zeroed")
		}
		b[i] = byte(i)
	}
	if s := a.Stats(); s.Sampled != 1 || s.LiveBlocks != 1 || s.Requested != 100 {
		t.Fatalf("stats with one sampled block: %+v", s)
	}
	// Realloc keeps the bytes, whether the new block is sampled or not.
	b2, err := a.Realloc(b, 3000)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 100 {
		if b2[i] != byte(i) {
			t.Fatalf("byte %d lost by Realloc", i)
		}
	}
	n, err := a.UsableSize(b2)
	if l, _ := harness.LayoutOf(a, b2); err != nil || n < 3000 || l.Sampled && n != 3000 {
		t.Errorf("UsableSize = %d, %v (sampled: %v)", n, err, l.Sampled)
	}
	// A Free of the block Realloc moved from is a double free, with sites.
	a.Free(b)
	rs := col.take()
	if len(rs) != 1 || rs[0].Kind != hardened.DoubleFree || !rs[0].Sampled || !rs[0].Alloc.Known() || !rs[0].Free.Known() {
		t.Fatalf("second free of a sampled block: %v", rs)
	}
	if !strings.Contains(rs[0].String(), "(sampled block)") {
		t.Errorf("the report does not say the block was sampled:\n%s", rs[0])
	}
	if rs[0].Free.Seq <= rs[0].Alloc.Seq {
		t.Errorf("free seq %d not after alloc seq %d", rs[0].Free.Seq, rs[0].Alloc.Seq)
	}
	a.Free(b2)
	if s := a.Stats(); s.Sampled != 0 || s.LiveBlocks != 0 || s.Requested != 0 {
		t.Fatalf("stats after freeing everything: %+v", s)
	}
}

// A pointer into the sampled pool that is no block's start: the guard page
// next to a block, an interior pointer, a slot never used.
func TestSampledInvalidFree(t *testing.T) {
	a, col := sampledAlloc(t)
	b := mustSampled(t, a, 64)
	p := unsafe.Pointer(&b[0])
	for _, bad := range []unsafe.Pointer{unsafe.Add(p, 16), unsafe.Add(p, -4096), unsafe.Add(p, 2*4096*8)} {
		a.Free(unsafe.Slice((*byte)(bad), 1))
		rs := col.take()
		if len(rs) != 1 || rs[0].Kind != hardened.InvalidFree {
			t.Errorf("Free(%p) near a sampled block: %v", bad, rs)
		}
	}
	if _, err := a.Realloc(unsafe.Slice((*byte)(unsafe.Add(p, 16)), 1), 10); err == nil {
		t.Error("Realloc of an interior pointer of a sampled block succeeded")
	}
	col.take()
	a.Free(b)
}

// Every sampled slot in use: the next allocations come from the classes,
// and the pool serves again once a slot is free.
func TestSampledPoolFull(t *testing.T) {
	a, _ := sampledAlloc(t)
	var bs [][]byte
	for range 40 {
		bs = append(bs, mustAlloc(t, a, 32))
	}
	if s := a.Stats(); s.Sampled != 16 || s.LiveBlocks != 40 {
		t.Fatalf("40 blocks with 16 sampled slots: %+v", s)
	}
	a.Free(bs[0])
	// Race builds pick a cache, and so a countdown, at random: a few
	// allocations may pass before one is sampled.
	bs[0] = mustAlloc(t, a, 32)
	for i := 0; a.Stats().Sampled != 16 && i < 4*runtime.NumCPU()+4; i++ {
		bs = append(bs, mustAlloc(t, a, 32))
	}
	if s := a.Stats(); s.Sampled != 16 {
		t.Fatalf("a freed slot was not reused: %d sampled", s.Sampled)
	}
	for _, b := range bs {
		a.Free(b)
	}
}

// Sampled blocks left live at Close are leaks with their allocation site
// in every build.
func TestSampledLeak(t *testing.T) {
	col := new(collector)
	a, err := hardened.New(hardened.Options{SampleRate: 1, OnReport: col.add})
	if err != nil {
		t.Fatal(err)
	}
	mustSampled(t, a, 10)
	err = a.Close()
	var e *hardened.Error
	if !errors.As(err, &e) || e.Report.Kind != hardened.Leak || !e.Report.Sampled {
		t.Fatalf("Close: %v", err)
	}
	if !strings.Contains(e.Report.String(), "hardened_test.TestSampledLeak") {
		t.Errorf("the leak's site does not name the test:\n%s", e.Report)
	}
}

// A fault on a freed sampled block inside CatchFault is a report through
// OnReport, and the allocator goes on.
func TestSampledCatchFault(t *testing.T) {
	if asanBuild {
		t.Skip("under -asan the pool is readable and AddressSanitizer stops the read (TestSampledAsan)")
	}
	a, col := sampledAlloc(t)
	b := mustSampled(t, a, 200)
	a.Free(b)
	r := a.CatchFault(func() { _ = read1(unsafe.Pointer(&b[150])) })
	if r == nil || r.Kind != hardened.UseAfterFree || r.Offset != 150 || !r.Sampled {
		t.Fatalf("CatchFault: %v", r)
	}
	col.take()
	c := mustAlloc(t, a, 200)
	a.Free(c)
}

// The same Seed samples the same allocations: a run on one P replays
// (the countdowns are per P, so a goroutine that moves between Ps takes
// another's).
func TestSampledReplay(t *testing.T) {
	if raceOrAsan {
		t.Skip("race builds pick a per-P cache, and so a countdown, at random for each operation")
	}
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	pattern := func() []int {
		a, _ := newAlloc(t, hardened.Options{SampleRate: 10, Seed: 99})
		var got []int
		for i := range 300 {
			b := mustAlloc(t, a, 48)
			if a.Stats().Sampled == 1 {
				got = append(got, i)
			}
			a.Free(b)
		}
		return got
	}
	p1, p2 := pattern(), pattern()
	if len(p1) < 10 || len(p1) > 60 || !slices.Equal(p1, p2) {
		t.Fatalf("SampleRate 10 over 300 allocations sampled %v, then %v", p1, p2)
	}
}

// Sampling is off by default: no allocation leaves the classes.
func TestSamplingOff(t *testing.T) {
	a, _ := newAlloc(t, hardened.Options{})
	for range 20000 {
		b := mustAlloc(t, a, 64)
		if a.Stats().Sampled != 0 {
			t.Fatal("a block was sampled with SampleRate 0")
		}
		a.Free(b)
	}
}
