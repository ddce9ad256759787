package fuzz

import (
	"errors"
	"fmt"
	"math/bits"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"

	"github.com/hardalloc/hardalloc/hardened"
	"github.com/hardalloc/hardalloc/internal/harness"
	"github.com/hardalloc/hardalloc/thread"
)

// runner executes one program against an allocator and its model.
type runner struct {
	p    Program
	a    *hardened.Allocator
	opts Config
	model

	threads  [NumSlots]*thread.Thread
	exited   sync.WaitGroup
	running  atomic.Int32 // spawned threads not yet exited
	resid    residency    // the quarantine-residency oracle (residency.go)
	workErrs chan error

	mu       sync.Mutex
	reports  []*hardened.Report
	nreports atomic.Int32 // len(reports), readable without mu

	misused *misuse // the injected misuse, once done

	perClass    []int64        // checkStats' scratch
	stats       hardened.Stats // checkStats' scratch
	fates       [NumSlots]int  // what the thread in each slot does at its end (threadFate)
	panics      atomic.Int32   // detached threads' panics (OnPanic)
	detaching   atomic.Bool    // the owner is in Detach, which may call OnPanic itself
	resets      atomic.Int32   // Resets done (onPanic waits for the next)
	endMu       sync.Mutex
	ending      chan struct{} // closed when the program ends (endNow)
	fatedPanics int32         // detached threads fated to panic
	misusedAt   int           // the misuse's op
	// A write after free into a slot on a free list the Allocs did not
	// reach (misuse.go, reuseNotYet) is owed a report by the end: when
	// the slot is handed out again, or by the verification Close (Reset)
	// makes. owed says one is due, paid that it came.
	owed, paid bool
}

// afterMisuse is how many ops a program runs past its misuse.
const afterMisuse = 32

// Run executes p against a new allocator configured by opts (Seed and
// OnReport are set from the program) and checks every result against the
// shadow model: no two live blocks overlap, alignment, len and cap, zeroed
// on alloc, contents kept across Realloc and until Free, no report for
// correct use, Check clean, and Close reporting exactly the leaks the
// model predicts. A misuse op (FuzzMisuse) must produce exactly the
// expected report.
//
// A failing program is run again on a fresh allocator before Run returns,
// so that every failure replays from its input alone: if the fresh run
// passes, the failure depended on state a pooled allocator kept across
// Reset, which is a bug of its own and is reported as such.
func Run(p Program, opts Config) error {
	growStack(0)
	err := runOnce(p, opts, false)
	if err == nil {
		return nil
	}
	// Replay: a failure that a fresh allocator repeats is returned as the
	// fresh run saw it. One that it does not repeat depended on state the
	// pooled allocator kept across Reset, or, in a program with more than
	// one goroutine, maybe on how they interleaved; the report says which.
	for range replays {
		if ferr := runOnce(p, opts, true); ferr != nil {
			return ferr
		}
	}
	why := "state Reset kept, or memory a fresh mapping gives zeroed, made the difference"
	if concurrent(p) {
		why = "state Reset kept, or how the program's goroutines (its threads, its frees on another goroutine) interleaved, made the difference; replay it with -count=100, or under -race"
	}
	return &Failure{Op: -1, What: fmt.Sprintf("fails only on a pooled allocator recycled by Reset (%d runs on a fresh one pass: %s):\n%v", replays, why, err), Program: p}
}

// concurrent reports whether p runs code on more than one goroutine.
func concurrent(p Program) bool {
	for _, op := range p.Ops {
		if op.Kind == OpSpawn || op.Kind == OpRaceFree || op.Kind == OpBulkFree && op.Aux&0x80 != 0 {
			return true
		}
	}
	return false
}

// replays is how many times Run replays a failing program on a fresh
// allocator, to tell why it failed.
const replays = 3

// runOnce is one execution of p: on a pooled allocator, or a fresh one.
func runOnce(p Program, opts Config, fresh bool) (err error) {
	opts.Seed = p.Seed | 1
	var pa *pooled
	if fresh {
		pa, err = newPooled(opts)
	} else {
		pa, err = getAllocator(opts)
	}
	if err != nil {
		return err
	}
	r := pa.newRunner(p, opts)
	r.startResidency()
	pa.cur.Store(r)
	reuse := false
	defer func() {
		if reuse && !fresh {
			pa.cur.Store(nil)
			pa.spare = r
			putAllocator(opts, pa)
			return
		}
		// A failed run: its threads may still be running. Wait for them,
		// then close; what Close reports (leaks, usually) goes to this
		// runner, whose failure is already being returned.
		r.stopThreads(true)
		pa.a.Close()
		pa.cur.Store(nil)
	}()
	for i, op := range p.Ops {
		if err := r.step(i, op); err != nil {
			return err
		}
		if err := r.sweep(i); err != nil {
			return err
		}
		if err := r.checkShadow(i); err != nil {
			return err
		}
		// After a misuse the program goes on for a while: the allocator
		// must stay usable, and report nothing more but that misuse's
		// block.
		if r.misused != nil && i > r.misusedAt+afterMisuse {
			break
		}
	}
	closing := p.Seed>>24%4 == 0
	if err := r.finish(closing); err != nil {
		return err
	}
	if err := r.close(closing); err != nil {
		return err
	}
	reuse = true // every thread is done and the allocator was verified
	return nil
}

func (r *runner) fail(i int, format string, args ...any) error {
	return &Failure{Op: i, What: fmt.Sprintf(format, args...), Program: r.p}
}

func (r *runner) takeReports() []*hardened.Report {
	if r.nreports.Load() == 0 {
		return nil // the common case, checked after every op: no lock
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	out := r.reports
	r.reports = nil
	r.nreports.Store(0)
	return out
}

// sweep checks that nothing was reported and that every live block still
// holds its first and last expected bytes (a cheap overlap detector).
func (r *runner) sweep(i int) error {
	for _, rep := range r.takeReports() {
		if m := r.misused; m != nil && rep.Kind == m.kind && m.covers(rep) {
			r.paid = true
			continue // the misuse's block, found again (its eviction, say)
		}
		return &Failure{Op: i, What: "unexpected report for correct use", Report: rep, Program: r.p}
	}
	select {
	case err := <-r.workErrs:
		return r.fail(i, "thread: %v", err)
	default:
	}
	for m := r.held; m != 0; m &= m - 1 {
		s := bits.TrailingZeros16(m)
		b := r.slots[s]
		if len(b.b) == 0 {
			continue
		}
		if b.b[0] != b.expect(0) || b.b[len(b.b)-1] != b.expect(len(b.b)-1) {
			return r.fail(i, "slot %d: block %#x (%d bytes) changed behind the model's back", s, b.start(), len(b.b))
		}
	}
	return nil
}

func (r *runner) checkNew(i int, b []byte, n, align int, err error) (*block, error) {
	if err != nil {
		return nil, r.fail(i, "allocating %d bytes (align %d): %v", n, align, err)
	}
	nb := &block{b: b, class: r.classOf(b)} // zero until written
	if len(b) != n || cap(b) != n {
		return nil, r.fail(i, "got len %d cap %d, want %d", len(b), cap(b), n)
	}
	if b == nil || nb.start()%uintptr(max(align, 16)) != 0 {
		return nil, r.fail(i, "block %#x not aligned to %d", nb.start(), max(align, 16))
	}
	if o := r.overlap(nb.start(), nb.end()); o != "" {
		return nil, r.fail(i, "new block [%#x,%#x) overlaps %s", nb.start(), nb.end(), o)
	}
	if err := r.checkReuse(i, b); err != nil {
		return nil, err
	}
	return nb, nil
}

func (r *runner) step(i int, op Op) error {
	a := r.a
	switch op.Kind {
	case OpAlloc, OpAllocAligned:
		align := 0
		var b []byte
		var err error
		if op.Kind == OpAllocAligned {
			align = 1 << (op.Aux % 17)
			b, err = a.AllocAligned(op.Size, align)
		} else {
			b, err = a.Alloc(op.Size)
		}
		if err != nil && r.oom(err) {
			return nil // over the Limit: nothing was allocated, the slot keeps its block
		}
		nb, ferr := r.checkNew(i, b, op.Size, align, err)
		if ferr != nil {
			return ferr
		}
		if z := isZero(b); z >= 0 {
			return r.fail(i, "Alloc(%d): byte %d not zeroed", op.Size, z)
		}
		nb.align = align
		r.put(op.Slot, nb)
	case OpRealloc:
		old := r.slots[op.Slot]
		var ob []byte
		if old != nil {
			ob = old.b
		}
		r.noteFree(ob) // hardened builds always move a block
		b, err := a.Realloc(ob, op.Size)
		if err != nil && r.oom(err) {
			return nil // over the Limit: the old block is still valid and unchanged
		}
		r.setSlot(op.Slot, nil)
		nb, ferr := r.checkNew(i, b, op.Size, 0, err)
		if ferr != nil {
			return ferr
		}
		if old != nil {
			if old.want != nil {
				kept := min(len(old.want), op.Size)
				nb.want = getWant(op.Size)
				copy(nb.want, old.want[:kept])
				clear(nb.want[kept:])
				putWant(old.want)
			}
			if nb.start() == old.start() {
				// Resized in place (release builds): still where the
				// aligned allocation put it, header and all.
				nb.align = old.align
			}
		}
		if j := nb.diff(); j >= 0 {
			return r.fail(i, "Realloc(%d -> %d): byte %d is %#x, want %#x", len(ob), op.Size, j, b[j], nb.expect(j))
		}
		r.setSlot(op.Slot, nb)
	case OpFree:
		if b := r.slots[op.Slot]; b != nil {
			if j := b.diff(); j >= 0 {
				return r.fail(i, "before Free: byte %d of slot %d changed", j, op.Slot)
			}
			r.noteFree(b.b)
			a.Free(b.b)
			r.setSlot(op.Slot, nil)
			putWant(b.want)
			if err := r.checkFreed(i, b.b); err != nil {
				return err
			}
		}
	case OpWrite:
		if b := r.slots[op.Slot]; b != nil {
			if b.want == nil {
				b.want = getWant(len(b.b)) // every byte is written next
			}
			fillPattern(b.want, byte(op.Aux))
			copy(b.b, b.want)
		}
	case OpVerify:
		for s, b := range r.live() {
			if j := b.diff(); j >= 0 {
				return r.fail(i, "block %d (%#x, %d bytes): byte %d is %#x, want %#x", s, b.start(), len(b.b), j, b.b[j], b.expect(j))
			}
		}
	case OpCheck:
		if err := a.Check(); err != nil {
			return r.fail(i, "Check: %v", err)
		}
	case OpSpawn:
		if r.threads[op.Slot] != nil {
			return nil // a live handle would be lost: not generated
		}
		r.resid.on = false // the threads' frees are not the model's
		r.exited.Add(1)
		r.running.Add(1)
		work, size, fate := op.Aux%8, op.Size%8192, threadFate(op.Aux)
		t, err := thread.Start(a, func() error { return threadWork(a, work, size, fate) },
			thread.OnExit(r.threadExited), thread.Name(slotNames[op.Slot]),
			thread.OnPanic(r.onPanic))
		if err != nil {
			r.threadExited()
			if r.oom(err) {
				return nil
			}
			return r.fail(i, "thread.Start: %v", err)
		}
		r.threads[op.Slot] = t
		r.fates[op.Slot] = fate
	case OpJoin:
		if t := r.threads[op.Slot]; t != nil {
			r.threads[op.Slot] = nil
			if err := r.joined(t.Join(), r.fates[op.Slot]); err != nil {
				return r.fail(i, "Join: %v", err)
			}
			if err := t.Join(); !errors.Is(err, thread.ErrJoined) {
				return r.fail(i, "second Join: %v, want ErrJoined", err)
			}
		}
	case OpDetach:
		if t := r.threads[op.Slot]; t != nil {
			r.threads[op.Slot] = nil
			r.detaching.Store(true)
			err := t.Detach()
			r.detaching.Store(false)
			if err != nil {
				return r.fail(i, "Detach: %v", err)
			}
			if r.fates[op.Slot] == fatePanic {
				r.fatedPanics++ // its panic must reach OnPanic, once
			}
			if err := t.Join(); !errors.Is(err, thread.ErrDetached) {
				return r.fail(i, "Join after Detach: %v, want ErrDetached", err)
			}
		}
	case OpYield:
		// A switch only matters with a thread to switch to; without one,
		// Gosched would just wake an idle P for nothing (13% of an exec).
		if r.running.Load() > 0 {
			runtime.Gosched()
		}
	case OpMisuse:
		return r.misuse(i, op)
	case OpBulkAlloc:
		return r.bulkAlloc(i, op)
	case OpBulkFree:
		return r.bulkFree(i, op)
	case OpRaceFree:
		return r.raceFree(i, op)
	case OpReset:
		closing := op.Aux%2 == 1
		if err := r.finish(closing); err != nil {
			return err
		}
		if err := r.close(closing); err != nil {
			return err
		}
		r.slots, r.held, r.orphans = [NumSlots]*block{}, 0, r.orphans[:0]
		on := r.resid.on
		r.startResidency() // Reset emptied the quarantine
		r.resid.on = r.resid.on && on
	}
	return nil
}

// slotNames names threads by the slot holding their handle.
var slotNames = func() (n [NumSlots]string) {
	for i := range n {
		n[i] = "slot" + strconv.Itoa(i)
	}
	return n
}()

// finish joins every thread still owned and waits for every worker, then
// checks the live blocks against the model a last time. The allocator's
// own last verification is close's Reset, which walks every block as
// Check does (a final Check as well walked everything twice per exec).
//
// closing: detached workers are not waited for. The allocator is reset
// (close) while they may still be running, in their panic path too:
// Reset, as Close, waits for them itself, and must find every capsule
// freed. Stats, Audit and the final sweeps need a quiet allocator and are
// left to the other programs.
func (r *runner) finish(closing bool) error {
	end := len(r.p.Ops)
	if err := r.stopThreads(!closing); err != nil {
		return r.fail(end, "final Join: %v", err)
	}
	if closing && r.running.Load() > 0 {
		r.freeBulk()
		return nil
	}
	if err := r.sweep(end); err != nil {
		return err
	}
	if err := r.sweepShadow(end, true); err != nil {
		return err
	}
	if n := r.panics.Load(); n != r.fatedPanics {
		return r.fail(end, "%d detached threads panicked into OnPanic, %d were fated to", n, r.fatedPanics)
	}
	if err := r.checkStats(end); err != nil {
		return err
	}
	if err := r.trim(end); err != nil {
		return err
	}
	if err := harness.Audit(r.a); err != nil {
		return r.fail(end, "slot audit: %v", err)
	}
	for _, bb := range r.bulk {
		if err := r.checkTag(end, bb); err != nil {
			return err
		}
	}
	r.freeBulk()
	if r.owed && !r.paid && r.running.Load() == 0 {
		return r.purgeOwed(end)
	}
	return nil
}

// purgeOwed runs when a write after free waits in a slot no Alloc
// reached (misuse.go, reuseNotYet), which close must still find: it frees
// every live block, releases the quarantine and the caches' slots to the
// central lists (harness.Settle), so the slot's slab is likely wholly
// free, and then Trims. A purge must keep that slab: purging it would
// take the write with the pages, and the slot's next Alloc would take
// the zeros for a fresh slot.
func (r *runner) purgeOwed(end int) error {
	for _, b := range r.live() {
		if b != r.misused.block {
			r.a.Free(b.b)
		}
		putWant(b.want)
	}
	r.slots, r.held, r.orphans = [NumSlots]*block{}, 0, r.orphans[:0]
	harness.Settle(r.a)
	return r.trimNow(end)
}

// freeBulk frees the bulk set, not left to Reset as leaks: a Free costs a
// fraction of a leak report, and runs the free paths once more.
func (r *runner) freeBulk() {
	for _, bb := range r.bulk {
		r.a.Free(bb.b)
	}
	r.clearBulk()
}

// close closes the allocator and requires exactly the predicted leaks.
func (r *runner) close(closing bool) error {
	var want []int
	for _, b := range r.live() {
		if r.misused != nil && r.misused.block == b {
			continue
		}
		want = append(want, len(b.b))
	}
	harness.Reset(r.a, r.p.Seed+1) // verifies like Close: leaks and damage are reported
	n := r.panics.Load()
	r.exited.Wait() // Reset waited for the detached workers' holds; this, for their last steps
	r.endDone()
	var got []int
	for _, rep := range r.takeReports() {
		if r.misused != nil && rep.Kind != hardened.Leak && r.misused.covers(rep) {
			r.paid = true
			continue // e.g. a damaged header found again at Close
		}
		if rep.Kind != hardened.Leak {
			return &Failure{Op: -1, What: "unexpected report at Close", Report: rep, Program: r.p}
		}
		got = append(got, rep.Size)
	}
	for _, b := range r.live() {
		putWant(b.want)
	}
	if r.owed && !r.paid {
		// Its slab may not go back to the OS while the write is in it
		// (a purge verifies first): the slot was handed out again, or
		// it is still free, poisoned and damaged for Close to find.
		return r.fail(r.misusedAt, "misuse (%v): a write after free into a slot no Alloc reached was never reported, not when the slot was handed out again nor at Close", r.misused.kind)
	}
	slices.Sort(want)
	slices.Sort(got)
	if !slices.Equal(got, want) {
		return r.fail(-1, "Close reported leaks of sizes %v, the model predicts %v", got, want)
	}
	if closing && n != r.fatedPanics {
		return r.fail(-1, "%d detached threads panicked into OnPanic before Reset, %d were fated to", n, r.fatedPanics)
	}
	return nil
}

// trim, at the end of every program that runs under a Limit and of one
// in 1024 of the others (by its seed), gives memory back with Trim and
// checks the accounting: what Trim gives back leaves Stats.Mapped, a
// second Trim gives nothing, and Audit (which checks that Stats.Mapped
// adds up to what is mapped) holds. Not an op among the others, and
// mostly where Reset gives every slab back anyway (Options.Limit): the
// slabs Trim purges on a pooled allocator must be faulted in again by
// the programs after it (at the end of one program in 64 of every
// configuration, a replay of the inputs a fuzz worker ran took 20%
// longer). The rare others keep Trim's run beside per-P caches that
// hold slots.
func (r *runner) trim(i int) error {
	if r.opts.Limit == 0 && (r.p.Seed>>40)%1024 != 0 {
		return nil
	}
	return r.trimNow(i)
}

// trimNow is trim's Trim and its accounting checks, in every
// configuration.
func (r *runner) trimNow(i int) error {
	if r.running.Load() > 0 {
		return nil
	}
	harness.ReadStats(r.a, &r.stats)
	before := r.stats.Mapped
	n, err := r.a.Trim()
	if err != nil {
		return r.fail(i, "Trim: %v", err)
	}
	harness.ReadStats(r.a, &r.stats)
	if n < 0 || n != before-r.stats.Mapped {
		return r.fail(i, "Trim gave back %d bytes, but Stats.Mapped went from %d to %d", n, before, r.stats.Mapped)
	}
	if n2, _ := r.a.Trim(); n2 != 0 {
		return r.fail(i, "a second Trim gave back %d more bytes", n2)
	}
	return nil
}
