//go:build hardened || asan

package hardened_test

import (
	"bytes"
	"errors"
	"runtime/pprof"
	"strings"
	"sync"
	"testing"
	"unsafe"

	"github.com/hardalloc/hardalloc/hardened"
	"github.com/hardalloc/hardalloc/internal/harness"
	"github.com/hardalloc/hardalloc/thread"
)

// Alloc is zeroed even when the slot it reuses was poisoned.
func TestPoisonedSlotsComeBackZeroed(t *testing.T) {
	a, _ := newAlloc(t, hardened.Options{QuarantineBytes: 1 << 10})
	for range 2000 {
		b := mustAlloc(t, a, 96)
		if !isZero(b) {
			t.Fatal("Alloc returned poisoned or stale bytes")
		}
		fill(b, 1)
		a.Free(b)
	}
}

func TestDoubleFreeNamesFirstFree(t *testing.T) {
	a, c := newAlloc(t, hardened.Options{})
	b := allocSite(t, a, 40)
	freeSite(a, b)
	a.Free(b)
	r := c.take()
	if len(r) != 1 || r[0].Kind != hardened.DoubleFree {
		t.Fatalf("reports %v", r)
	}
	if f := r[0].Free.TopFunction(); !strings.HasSuffix(f, ".freeSite") {
		t.Fatalf("first free site %q, want freeSite:\n%s", f, r[0])
	}
	if r[0].Alloc.Goroutine == 0 || r[0].Free.Seq <= r[0].Alloc.Seq {
		t.Fatalf("sites lack goroutine or ordered sequence numbers:\n%s", r[0])
	}
	s := r[0].String()
	for _, want := range []string{"double-free", "freed by goroutine", "allocated by goroutine", "freeSite", "allocSite", "40-byte block"} {
		if !strings.Contains(s, want) {
			t.Errorf("report lacks %q:\n%s", want, s)
		}
	}
}

//go:noinline
func freeSite(a *hardened.Allocator, b []byte) { a.Free(b) }

func TestOverflowReportShowsBytes(t *testing.T) {
	if asanBuild {
		t.Skip(skipPatterns)
	}
	a, c := newAlloc(t, hardened.Options{})
	b := allocSite(t, a, 32)
	pokeBytes(b, 32, []byte("XYZ"))
	a.Free(b)
	r := c.take()
	if len(r) != 1 || r[0].Kind != hardened.Overflow || r[0].Offset != 32 {
		t.Fatalf("reports %v", r)
	}
	if string(r[0].Got[:3]) != "XYZ" || len(r[0].Want) != len(r[0].Got) {
		t.Fatalf("got/want bytes %q %q", r[0].Got, r[0].Want)
	}
	if !strings.Contains(r[0].String(), "0 bytes after the end of a 32-byte block") {
		t.Fatalf("report:\n%s", r[0])
	}
}

func TestCapsuleClassAlwaysQuarantined(t *testing.T) {
	// With no quarantine budget, a capsule-sized block still waits once a
	// thread has started on the allocator (Start registers its capsule's
	// size with that allocator, and no other).
	a, _ := newAlloc(t, hardened.Options{QuarantineBytes: -1})
	other, _ := newAlloc(t, hardened.Options{QuarantineBytes: -1})
	th, err := thread.Start(a, func() error { return nil })
	if err != nil {
		t.Fatal(err)
	}
	if err := th.Join(); err != nil {
		t.Fatal(err)
	}
	q0 := a.Stats().Quarantined // the capsule itself
	b := mustAlloc(t, a, thread.CapsuleSize)
	a.Free(b)
	if s := a.Stats(); s.Quarantined != q0+1 {
		t.Fatalf("capsule-sized block not quarantined: %d, then %d", q0, s.Quarantined)
	}
	c := mustAlloc(t, other, thread.CapsuleSize)
	other.Free(c)
	if s := other.Stats(); s.Quarantined != 0 {
		t.Fatalf("an allocator no thread started on quarantines the capsule's class: %d", s.Quarantined)
	}
	x := mustAlloc(t, a, 200)
	a.Free(x)
	if s := a.Stats(); s.Quarantined != q0+1 {
		t.Fatalf("other classes should not be held with budget -1: %d", s.Quarantined)
	}
}

func TestQuarantineBudget(t *testing.T) {
	const budget = 64 << 10
	a, _ := newAlloc(t, hardened.Options{QuarantineBytes: budget})
	for i := range 5000 {
		b := mustAlloc(t, a, 100+i%900)
		a.Free(b)
		if s := a.Stats(); s.QuarantinedBytes > budget {
			t.Fatalf("quarantine holds %d bytes, budget %d", s.QuarantinedBytes, budget)
		}
	}
}

// Frees batched per P count toward the budget too, from any number of
// goroutines, and a write after free into a block still in a P's batch is
// found by Check.
func TestQuarantineBudgetConcurrent(t *testing.T) {
	if asanBuild {
		t.Skip(skipPatterns)
	}
	const budget = 256 << 10
	a, _ := newAlloc(t, hardened.Options{QuarantineBytes: budget})
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 3000 {
				b, err := a.Alloc(16 + (g*977+i*31)%2000)
				if err != nil {
					t.Error(err)
					return
				}
				a.Free(b)
			}
		}()
	}
	wg.Wait()
	if s := a.Stats(); s.QuarantinedBytes > budget || s.Quarantined == 0 {
		t.Fatalf("quarantine holds %d blocks, %d bytes; budget %d", s.Quarantined, s.QuarantinedBytes, budget)
	}
	// A fresh allocator, so that no push can evict the block at random
	// before the write (a full budget, as above, can).
	a, c := newAlloc(t, hardened.Options{})
	b := mustAlloc(t, a, 100)
	a.Free(b) // into this P's batch: not yet in the shared quarantine
	flip(b, 10, 0xff)
	if err := a.Check(); !errors.Is(err, hardened.WriteAfterFree) {
		t.Fatalf("Check after a write into a batched freed block: %v", err)
	}
	if r := c.take(); len(r) != 1 || r[0].Kind != hardened.WriteAfterFree || r[0].Offset != 10 {
		t.Fatalf("reports %v, want one WriteAfterFree at offset 10", r)
	}
}

func TestCatchFaultPassesOtherPanics(t *testing.T) {
	a, _ := newAlloc(t, hardened.Options{})
	defer func() {
		if v := recover(); v != "boom" {
			t.Fatalf("recovered %v", v)
		}
	}()
	a.CatchFault(func() { panic("boom") })
}

func TestStackDepthOff(t *testing.T) {
	a, c := newAlloc(t, hardened.Options{StackDepth: -1})
	b := mustAlloc(t, a, 10)
	a.Free(b)
	a.Free(b)
	r := c.take()
	if len(r) != 1 || len(r[0].Alloc.Stack) != 0 || r[0].Alloc.Seq == 0 || r[0].Alloc.Goroutine == 0 {
		t.Fatalf("with stacks off, want seq and goroutine only: %+v", r)
	}
	var e *hardened.Error
	if errors.As(&hardened.Error{Report: r[0]}, &e) && !errors.Is(e, hardened.DoubleFree) {
		t.Fatal("errors.Is by kind")
	}
}

func TestLiveProfile(t *testing.T) {
	const name = "hardalloc.test.live"
	a, ac := newAlloc(t, hardened.Options{ProfileName: name})
	p := pprof.Lookup(name)
	if p == nil {
		t.Fatal("profile not registered")
	}
	var bs [][]byte
	for _, n := range []int{0, 10, 100_000, 200_000} {
		b := mustAlloc(t, a, n)
		bs = append(bs, b)
	}
	if p.Count() != 4 {
		t.Fatalf("profile holds %d blocks, want 4", p.Count())
	}
	var buf bytes.Buffer
	if err := p.WriteTo(&buf, 1); err != nil || !strings.Contains(buf.String(), "TestLiveProfile") {
		t.Fatalf("profile text lacks the allocation site: %v\n%s", err, buf.String())
	}
	// Stacks start at the allocator's caller, on every path (small,
	// large, zero-size): no allocator frame in them.
	if strings.Contains(buf.String(), "hardened.(*Allocator)") {
		t.Fatalf("profile stacks include the allocator's own frames:\n%s", buf.String())
	}
	for _, b := range bs {
		a.Free(b)
	}
	if p.Count() != 0 {
		t.Fatalf("profile holds %d blocks after freeing all", p.Count())
	}
	if _, err := hardened.New(hardened.Options{ProfileName: name}); err == nil {
		t.Fatal("a second allocator took the same profile name")
	}
	// After Close (a block leaked: Close reports it and takes it out of
	// the profile), the next allocator of the name takes the profile
	// over, empty.
	mustAlloc(t, a, 64)
	a.Close()
	if r := ac.take(); len(r) != 1 || r[0].Kind != hardened.Leak {
		t.Fatalf("Close reported %v, want the one leak", r)
	}
	if p.Count() != 0 {
		t.Fatalf("a closed allocator's profile holds %d blocks", p.Count())
	}
	b, _ := newAlloc(t, hardened.Options{ProfileName: name})
	if pprof.Lookup(name) != p {
		t.Fatal("the profile was not taken over")
	}
	b.Free(mustAlloc(t, b, 10))
	kept := mustAlloc(t, b, 10)
	if p.Count() != 1 {
		t.Fatalf("the new allocator's profile holds %d blocks, want 1", p.Count())
	}
	b.Free(kept)
	// A profile hardalloc did not make is not taken.
	const foreign = "hardalloc.test.foreign"
	if pprof.Lookup(foreign) == nil {
		pprof.NewProfile(foreign)
	}
	if _, err := hardened.New(hardened.Options{ProfileName: foreign}); err == nil {
		t.Fatal("New took a profile it did not make")
	}
}

// With the default handler, a fault CatchFault explains panics with the
// report's *Error once the fault's recovery is over (not nested under a
// "nil pointer dereference [recovered]" panic), after printing it.
func TestCatchFaultDefaultHandler(t *testing.T) {
	a, out := newPrinting(t, 5)
	defer a.Close()
	b := mustAlloc(t, a, 200<<10)
	a.Free(b)
	var v any
	func() {
		defer func() { v = recover() }()
		a.CatchFault(func() { sink = peek(b, 10) })
	}()
	e, ok := v.(*hardened.Error)
	if !ok || !errors.Is(e, hardened.UseAfterFree) {
		t.Fatalf("panic %T %v, want *hardened.Error of a use-after-free", v, v)
	}
	if !strings.Contains(out.String(), "==hardalloc== ERROR: heap-use-after-free") ||
		!strings.Contains(out.String(), "10 bytes inside a 204800-byte block") {
		t.Fatalf("printed:\n%s", out.String())
	}
}

// One bug has one SUMMARY however it is caught: a write after free found
// by Check and the same one found when its slot is handed out again.
func TestSummaryIndependentOfWhereCaught(t *testing.T) {
	if asanBuild {
		t.Skip(skipPatterns)
	}
	var sums []string
	for _, byCheck := range []bool{true, false} {
		a, c := newAlloc(t, hardened.Options{QuarantineBytes: 4 << 10})
		b := mustAlloc(t, a, 100)
		a.Free(b)
		flip(b, 3, 0x10)
		if byCheck {
			a.Check()
		} else {
			for range 2000 { // push it out of the 4 KiB quarantine
				a.Free(mustAlloc(t, a, 100))
			}
		}
		r := c.take()
		if len(r) != 1 || r[0].Kind != hardened.WriteAfterFree {
			t.Fatalf("byCheck=%v: reports %v", byCheck, r)
		}
		sums = append(sums, r[0].Summary())
	}
	if sums[0] != sums[1] {
		t.Fatalf("one bug, two summaries: %q (Check) and %q (reuse)", sums[0], sums[1])
	}
}

// A write to a freed block after it left the quarantine lands in a slot
// on a free list that still holds its poison: the Alloc that hands the
// slot out again finds it, with both sites, and the block is withdrawn;
// a slot never handed out again is verified at Close.
// oneCache sends every operation through the first cache, so a slot freed
// into a cache is the one the next Alloc of its class may take, whichever
// P runs it (race builds otherwise choose a cache at random).
var oneCache = harness.Extra{Cache: func() int { return 0 }}

// TestWriteAfterFreeFoundAtReuse: the poison of a freed slot is verified
// when the slot is handed out again, wherever the write fell in the new
// block's layout (its front redzone, its payload, which the same pass
// zeroes, or its rear redzone), and the report names the byte written.
// The allocator stays usable and hands out zeroed blocks after it.
func TestWriteAfterFreeFoundAtReuse(t *testing.T) {
	if asanBuild {
		t.Skip(skipPatterns)
	}
	for _, tc := range []struct{ size, off, next int }{
		{4000, 7, 4000}, {4000, 2000, 4000}, {4000, 3999, 4000}, {4000, 3999, 3000}, {4000, 0, 3000}, {4000, 1500, 3990},
		{100, 7, 100}, {100, 90, 60}, // below verifyClearMin: verified, then zeroed
	} {
		// Every op through one cache: the evicted slot goes to the cache
		// the next Allocs take from (per P, or at random under -race, it
		// may sit in another and never come back).
		a, c := newAllocWith(t, hardened.Options{QuarantineBytes: 512}, oneCache)
		b := mustAlloc(t, a, tc.size)
		a.Free(b)
		for k := 0; harness.Quarantined(a, b); k++ {
			if k == 10_000 {
				t.Fatal("the block never left a 512-byte quarantine")
			}
			a.Free(mustAlloc(t, a, tc.size))
		}
		flip(b, tc.off, 0x10)
		var r []*hardened.Report
		for range 10_000 {
			if a.Free(mustAlloc(t, a, tc.next)); c.count() != 0 {
				break
			}
		}
		r = c.take()
		want := uintptr(unsafe.Pointer(unsafe.SliceData(b))) + uintptr(tc.off)
		if len(r) != 1 || r[0].Kind != hardened.WriteAfterFree || r[0].Op != "Alloc" || r[0].Addr != want || r[0].Offset != tc.off {
			t.Fatalf("write at offset %d of a %d-byte block, reused by Alloc(%d): reports %v, want one WriteAfterFree at Alloc at %#x (offset %d)", tc.off, tc.size, tc.next, r, want, tc.off)
		}
		for range 64 {
			p := mustAlloc(t, a, tc.next)
			for i, x := range p {
				if x != 0 {
					t.Fatalf("after the report, Alloc(%d) byte %d is %#x, want 0", tc.next, i, x)
				}
			}
			a.Free(p)
		}
		if n := c.count(); n != 0 {
			t.Fatalf("%d more reports after the first: %v", n, c.take())
		}
		a.Close()
	}
}

// TestWriteAfterEvictionFound: a write into a block that has left the
// quarantine for a free list is reported once, with both sites, by
// whichever looks first: Check (the slot's header still says quarantined
// until its next Alloc claims it), the Alloc that takes the slot, or
// Close. Check on the same slot before the write reports nothing.
func TestWriteAfterEvictionFound(t *testing.T) {
	if asanBuild {
		t.Skip(skipPatterns)
	}
	for _, by := range []string{"Check", "Alloc", "Close"} {
		a, c := newAllocWith(t, hardened.Options{QuarantineBytes: 512}, oneCache) // as in TestWriteAfterFreeFoundAtReuse
		b := mustAlloc(t, a, 100)
		a.Free(b)
		for k := 0; harness.Quarantined(a, b); k++ {
			if k == 10_000 {
				t.Fatal("the block never left a 512-byte quarantine")
			}
			a.Free(mustAlloc(t, a, 100)) // may take b's slot and free it again: it ends evicted
		}
		if err := a.Check(); err != nil || c.count() != 0 {
			t.Fatalf("%s: Check of an intact evicted slot: %v, %v", by, err, c.take())
		}
		flip(b, 7, 0x01)
		switch by {
		case "Check":
			if err := a.Check(); !errors.Is(err, hardened.WriteAfterFree) {
				t.Fatalf("Check: %v, want a WriteAfterFree", err)
			}
		case "Alloc":
			for range 10_000 {
				if a.Free(mustAlloc(t, a, 100)); c.count() != 0 {
					break
				}
			}
		case "Close":
			a.Close()
		}
		r := c.take()
		if len(r) != 1 || r[0].Kind != hardened.WriteAfterFree || r[0].Op != by || r[0].Offset != 7 || !r[0].Alloc.Known() || !r[0].Free.Known() {
			t.Fatalf("%s: reports %v, want one WriteAfterFree at offset 7 from %s with both sites", by, r, by)
		}
		// Reported once: the slot is withdrawn, dropped by the Alloc
		// that takes it, and never looked at again.
		if by != "Close" {
			for range 1000 {
				a.Free(mustAlloc(t, a, 100))
			}
			a.Check()
			a.Close()
		}
		if r := c.take(); len(r) != 0 {
			t.Fatalf("%s: %d more reports after the first: %v", by, len(r), r)
		}
	}
}

// TestWriteAfterFreeKeepsSlab: a write into a block that left the
// quarantine, whose slab then empties, is still reported. A purge would
// give the slab's pages back, the write with them, and the slot would
// come back as zeros, taken for fresh; the purge verifies the slab's
// free slots first and keeps a damaged one mapped, for Close (or the
// slot's next Alloc) to report. A Limit turns per-P slot caching off, so
// every evicted slot goes straight back to its slab's bitmap.
func TestWriteAfterFreeKeepsSlab(t *testing.T) {
	if asanBuild {
		t.Skip(skipPatterns)
	}
	for _, trim := range []bool{false, true} {
		a, c := newAllocWith(t, hardened.Options{QuarantineBytes: 1, Limit: 64 << 20}, oneCache)
		x := make([][]byte, 300)
		for i := range x {
			x[i] = mustAlloc(t, a, 4000)
		}
		b := x[0]
		a.Free(b)
		k := len(x)
		for harness.Quarantined(a, b) { // displaced from its class's random array
			if k--; k == 1 {
				t.Fatal("the block never left the quarantine")
			}
			a.Free(x[k])
		}
		flip(b, 7, 0x01)
		// Without Trim, b's slab empties last, when the class already
		// keeps an empty one, and the free tries to purge it; with Trim,
		// first: it is the one kept, and Trim tries.
		for i := range k - 1 {
			if trim {
				a.Free(x[1+i])
			} else {
				a.Free(x[k-1-i])
			}
		}
		if harness.Released(a, b) {
			t.Fatalf("trim=%v: the damaged block's slab was purged: the write went with its pages", trim)
		}
		if trim {
			if _, err := a.Trim(); err != nil {
				t.Fatal(err)
			}
			if harness.Released(a, b) {
				t.Fatal("Trim purged the damaged block's slab")
			}
		}
		if err := harness.Audit(a); err != nil {
			t.Fatalf("trim=%v: %v", trim, err)
		}
		if r := c.take(); len(r) != 0 {
			t.Fatalf("trim=%v: reported before Close: %v", trim, r)
		}
		a.Close()
		r := c.take()
		if len(r) < 1 || r[0].Kind != hardened.WriteAfterFree || r[0].Offset != 7 || !r[0].Alloc.Known() || !r[0].Free.Known() {
			t.Fatalf("trim=%v: reports %v, want a WriteAfterFree at offset 7 with both sites", trim, r)
		}
	}
}

// TestWriteIntoPurgedSlabFaults: a slab whose slots are all free goes
// back to the OS read-only, so a write through a stale pointer into it
// faults at the write, and the fault is a use-after-free report with the
// block's sites; a read sees zeros, and a second Free is still a report.
// The slab is writable again once reused.
func TestWriteIntoPurgedSlabFaults(t *testing.T) {
	if asanBuild {
		t.Skip("-asan builds: the shadow stops the write first (TestAccessCatalog)")
	}
	a, c := newAllocWith(t, hardened.Options{QuarantineBytes: -1, Limit: 64 << 20}, oneCache)
	x := make([][]byte, 300)
	for i := range x {
		x[i] = mustAlloc(t, a, 4000)
	}
	for i := len(x) - 1; i >= 0; i-- { // x[0]'s slab empties last: the class already keeps one
		a.Free(x[i])
	}
	b := x[0]
	if !harness.Released(a, b) {
		t.Fatal("the first slab was not purged")
	}
	if b[7] != 0 {
		t.Fatalf("a purged slab reads %#x, want zeros", b[7])
	}
	r := a.CatchFault(func() { b[7] = 1 })
	if r == nil || r.Kind != hardened.UseAfterFree || r.Addr != uintptr(unsafe.Pointer(&b[7])) || !r.Alloc.Known() || !r.Free.Known() {
		t.Fatalf("write into a purged slab: report %v, want a UseAfterFree at the write with both sites", r)
	}
	if got := c.take(); len(got) != 1 {
		t.Fatalf("OnReport got %d reports, want the fault's", len(got))
	}
	a.Free(b)
	if got := c.take(); len(got) != 1 || got[0].Kind != hardened.DoubleFree {
		t.Fatalf("Free into a purged slab: %v, want a DoubleFree", got)
	}
	for i := range x { // the slabs come back, writable
		x[i] = mustAlloc(t, a, 4000)
		x[i][0], x[i][3999] = 1, 1
	}
	for _, p := range x {
		a.Free(p)
	}
	if err := harness.Audit(a); err != nil {
		t.Fatal(err)
	}
}

// TestTrimKeepsEvictedDamage: a block evicted from the quarantine whose
// header still says quarantined (eviction leaves it to the slot's next
// Alloc), written after free, in a slab that is then wholly free: a purge
// (Trim) must keep that slab, or the write goes with its pages and the
// slot's next Alloc takes the zeros for a fresh slot. Close reports it.
func TestTrimKeepsEvictedDamage(t *testing.T) {
	if asanBuild {
		t.Skip("-asan builds: the shadow stops the write first (TestAccessCatalog)")
	}
	a, c := newAllocWith(t, hardened.Options{QuarantineBytes: 4096}, oneCache)
	b := mustAlloc(t, a, 100)
	a.Free(b)
	for i := 0; harness.Quarantined(a, b); i++ { // its class's frees displace it, bigger ones push it out
		if i == 10000 {
			t.Fatal("the block never left the quarantine")
		}
		a.Free(mustAlloc(t, a, 100))
		a.Free(mustAlloc(t, a, 3000))
	}
	if harness.Released(a, b) {
		t.Fatal("the block's slab went back to the OS before the write")
	}
	poke(b, 5, 0x5a)
	harness.Settle(a)
	if _, err := a.Trim(); err != nil {
		t.Fatal(err)
	}
	if harness.Released(a, b) {
		t.Fatal("Trim purged the slab of a freed block written after free: the write is lost")
	}
	if got := c.take(); len(got) != 0 {
		t.Fatalf("reports before Close: %v", got)
	}
	a.Close()
	got := c.take()
	if len(got) != 1 || got[0].Kind != hardened.WriteAfterFree || got[0].Block != addr(b) {
		t.Fatalf("Close: reports %v, want the WriteAfterFree in the block at %#x", got, addr(b))
	}
}
