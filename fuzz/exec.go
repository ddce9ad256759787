package fuzz

import (
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"iter"
	"math/bits"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"unsafe"

	"github.com/hardalloc/hardalloc/hardened"
	"github.com/hardalloc/hardalloc/internal/harness"
	"github.com/hardalloc/hardalloc/thread"
)

// Failure is a disagreement between the allocator and the shadow model,
// or a report the program did not expect. It carries the program so any
// failure replays exactly.
type Failure struct {
	Op      int // index of the op that failed, -1 at Close
	What    string
	Report  *hardened.Report
	Program Program
}

func (f *Failure) Error() string {
	s := fmt.Sprintf("fuzz: op %d: %s", f.Op, f.What)
	if f.Report != nil {
		s += "\n" + f.Report.String()
	}
	return s
}

// Config is a program's allocator configuration: the Options a user
// could give, and the harness's own (a chosen cache, junk fill, a small
// class space: harness.Extra).
type Config struct {
	hardened.Options
	Extra harness.Extra
}

// Options derives an allocator configuration from the program's seed, so
// the fuzzer explores configurations too: quarantine budgets from none to
// the default (a short program never fills a 4 MiB quarantine, which would
// hide every reuse bug), and several redzone sizes.
func Options(p Program) Config {
	s := p.Seed
	x := harness.Extra{
		// New slabs as dirty as recycled ones: a missing zeroing shows on
		// a fresh allocator too, so its crasher replays alone.
		JunkFill: 0xa5,
		// 64 MiB of address space per class (5.6 GiB an allocator, not
		// 89): the pool keeps one allocator per configuration, over a
		// thousand of them, and programs hold a few MiB.
		ClassSpace: 64 << 20,
	}
	o := hardened.Options{
		QuarantineBytes: [...]int64{-1, 2 << 10, 64 << 10, 0}[s%4],
		Redzone:         [...]int{0, 16, 48, -1}[(s>>2)%4],
		// Stacks of 4 frames, or none, or 16 (the default) in the
		// configurations that choose caches: 16 frames per allocation
		// and free were 6% of a mid-sized hardened program's time.
		StackDepth: [...]int{-1, 4, -1, 0}[(s>>4)%4],
		// The large-block cache: default, none, or one that a few large
		// blocks overflow.
		LargeCacheBytes: [...]int64{0, -1, 1 << 20, 0}[(s>>6)%4],
	}
	// One configuration in 16 runs under a Limit near what programs hold
	// (no per-P caching, out-of-memory and recovery paths; each Reset
	// gives every slab back, so the next program faults its pages in
	// again), one in 64 with protected metadata (four mprotects per
	// pair). Both are rare because the exec rate is the mean of 1/cost
	// (go test -fuzz gives every corpus entry the same time), so a slow
	// configuration costs execs out of proportion to its share.
	if (s>>8)%16 == 0 {
		o.Limit = [...]int64{2 << 20, 8 << 20}[(s>>20)%2]
	}
	o.ProtectMetadata = (s>>12)%64 == 0
	// One configuration in 32 samples blocks into guarded pages
	// (Options.SampleRate): one block in 64, 16 or 3, or every one, so
	// sampled blocks meet every op and misuse beside ordinary ones. Rare,
	// and mostly sparse: a sampled block costs two mprotects (about 5 us
	// here), and every block sampled made a program several times dearer.
	if (s>>24)%32 == 0 {
		o.SampleRate = [...]int{64, 16, 3, 1}[(s>>29)%4]
	}
	// One in four chooses the per-P cache of every operation from the
	// seed (harness.Extra.Cache): a block allocated through one cache is freed
	// through another, and caches flush and refill apart from where the
	// scheduler runs the program's goroutines. One in four aligns every
	// block to 64 bytes (Options.MinAlign), as the arrow adapter does: the
	// fast paths then place payloads past alignment slack. Both take the
	// place of a duplicate value above (the fourth StackDepth and
	// LargeCacheBytes choices); neither is part of the pool's key, since
	// ResetWith changes them on a pooled allocator (poolKey).
	if (s>>4)%4 == 3 {
		c := &chooser{}
		c.reset(s)
		x.Cache = c.next
	}
	if (s>>6)%4 == 3 {
		o.MinAlign = 64
	}
	return Config{Options: o, Extra: x}
}

// chooser is the fuzz harness's Extra.Cache: a sequence of cache
// indexes derived from the program's seed. A pooled allocator keeps the
// chooser it was made with, which getAllocator re-seeds for each program,
// so a program's choices never depend on the programs before it.
type chooser struct {
	seed, n atomic.Uint64
}

func (c *chooser) reset(seed uint64) { c.seed.Store(seed); c.n.Store(0) }

func (c *chooser) next() int {
	z := (c.seed.Load() ^ c.n.Add(1)*0x9e3779b97f4a7c15) * 0xbf58476d1ce4e5b9
	return int((z ^ z>>31) >> 33)
}

// block is the model of one live block.
type block struct {
	b     []byte
	want  []byte // expected contents; nil: all zero (never written)
	align int    // AllocAligned's alignment (0: plain Alloc)
	class int    // the size class Stats count it in (-1: large), from LayoutOf
}

// expect returns the byte the model expects at offset j.
func (b *block) expect(j int) byte {
	if b.want == nil {
		return 0
	}
	return b.want[j]
}

// diff returns the first offset whose byte differs from the model, or -1.
func (b *block) diff() int {
	if b.want == nil {
		return isZero(b.b)
	}
	return firstDiff(b.b, b.want)
}

func (b *block) start() uintptr { return uintptr(unsafe.Pointer(unsafe.SliceData(b.b))) }
func (b *block) end() uintptr   { return b.start() + uintptr(max(len(b.b), 1)) }

type runner struct {
	p       Program
	a       *hardened.Allocator
	opts    Config
	slots   [NumSlots]*block
	held    uint16   // bit s set: slots[s] is not nil (setSlot)
	orphans []*block // blocks whose slot was reused without a free: expected leaks, sorted by start

	threads  [NumSlots]*thread.Thread
	exited   sync.WaitGroup
	running  atomic.Int32 // spawned threads not yet exited
	resid    residency    // the quarantine-residency oracle (residency.go)
	workErrs chan error

	mu       sync.Mutex
	reports  []*hardened.Report
	nreports atomic.Int32 // len(reports), readable without mu

	misused *misuse // the injected misuse, once done

	bulk        []bulkBlock    // the bulk set (bulk.go)
	bulkBytes   int            // its bytes
	bulkClass   []int64        // its blocks per size class
	granules    granules       // the granules it covers (overlap.go)
	perClass    []int64        // checkStats' scratch
	stats       hardened.Stats // checkStats' scratch
	fates       [NumSlots]int  // what the thread in each slot does at its end (threadFate)
	panics      atomic.Int32   // detached threads' panics (OnPanic)
	fatedPanics int32          // detached threads fated to panic
	misusedAt   int            // the misuse's op
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
	ferr := runOnce(p, opts, true)
	if ferr == nil {
		return &Failure{Op: -1, What: "fails only on a pooled allocator recycled by Reset (a fresh one passes: state Reset kept, or memory a fresh mapping gives zeroed, made the difference):\n" + err.Error(), Program: p}
	}
	return ferr
}

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
		r.stopThreads()
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
	if err := r.finish(); err != nil {
		return err
	}
	if err := r.close(); err != nil {
		return err
	}
	reuse = true // every thread is done and the allocator was verified
	return nil
}

// A pool of allocators per configuration: creating one per exec would pay
// for fresh pages every time (about 10 us a page on a VM), which made
// fuzzing ~50 times slower. harness.Reset verifies, forgets every block
// and re-keys; its report path is redirected to the current runner.
type pooled struct {
	a        *hardened.Allocator
	cur      atomic.Pointer[runner]
	choose   *chooser // Extra.Cache, if the configuration has one
	onReport func(*hardened.Report)
	// spare is the runner of the last successful run, recycled with its
	// channel and orphan list (a fresh one was about 1 KiB of garbage per
	// exec). A failed run's runner is not reused: its threads may still
	// hold it.
	spare *runner
}

// newRunner returns a runner for p, recycling pa.spare.
func (pa *pooled) newRunner(p Program, opts Config) *runner {
	r := pa.spare
	pa.spare = nil
	if r == nil {
		return &runner{p: p, a: pa.a, opts: opts, workErrs: make(chan error, 64)}
	}
	clear(r.orphans)
	r.clearBulk()
	*r = runner{p: p, a: pa.a, opts: opts, workErrs: r.workErrs, orphans: r.orphans[:0],
		bulk: r.bulk, bulkClass: r.bulkClass, granules: r.granules, perClass: r.perClass, stats: r.stats,
		resid: residency{freed: r.resid.freed}}
	return r
}

// growStack grows the calling goroutine's stack, while it is shallow, to
// what a run needs. go test -fuzz starts every exec on a new goroutine
// with the minimum stack, which then grew (copying and adjusting every
// frame) two or three times deep inside the allocator: 5% of a worker's
// time. n is 0; it only keeps the compiler from dropping the array.
//
//go:noinline
func growStack(n int) byte {
	var pad [16 << 10]byte
	return pad[n]
}

// poolKey is what an allocator's mappings depend on; the other options
// change at ResetWith.
type poolKey struct {
	quarantine int64
	redzone    int
	protect    bool
	limit      int64
	sample     int
}

var pool struct {
	sync.Mutex
	free map[poolKey][]*pooled
	n    int // allocators in free
}

// maxPooled bounds the idle allocators the pool keeps. Each reserves
// address space for its size classes (5.6 GiB with Options' ClassSpace)
// and holds up to two mappings per class it committed slabs in (50 for a
// typical program, 180 at most): past about 360 of them a process hits
// vm.max_map_count (65530) and mprotect fails with ENOMEM, which a fuzz
// run took for an out-of-memory bug of a recycled allocator.
const maxPooled = 256

func keyOf(o Config) poolKey {
	return poolKey{o.QuarantineBytes, o.Redzone, o.ProtectMetadata, o.Limit, o.SampleRate}
}

func getAllocator(opts Config) (*pooled, error) {
	k := keyOf(opts)
	pool.Lock()
	var pa *pooled
	if l := pool.free[k]; len(l) > 0 {
		pa = l[len(l)-1]
		pool.free[k] = l[:len(l)-1]
		pool.n--
	}
	pool.Unlock()
	if pa != nil {
		// ResetWith takes this program's options that shape no mapping
		// (stacks, large-block cache, chosen cache, alignment), so one
		// pooled allocator serves every configuration of its key.
		cfg := pa.hooks(opts)
		if err := harness.ResetWith(pa.a, cfg.Options, cfg.Extra); err != nil {
			pa.a.Close()
			return nil, fmt.Errorf("fuzz: pooled allocator not clean: %w", err)
		}
		return pa, nil
	}
	return newPooled(opts)
}

// hooks returns opts with the pooled allocator's report handler and, if
// opts chooses caches, its chooser, re-seeded for this program.
func (pa *pooled) hooks(opts Config) Config {
	if opts.Extra.Cache != nil {
		if pa.choose == nil {
			pa.choose = &chooser{}
		}
		pa.choose.reset(opts.Seed)
		opts.Extra.Cache = pa.choose.next
	}
	opts.OnReport = pa.onReport
	return opts
}

// newPooled makes an allocator whose reports go to its current runner.
func newPooled(opts Config) (*pooled, error) {
	pa := new(pooled)
	pa.onReport = func(rep *hardened.Report) {
		if r := pa.cur.Load(); r != nil {
			r.mu.Lock()
			r.reports = append(r.reports, rep)
			r.nreports.Add(1)
			r.mu.Unlock()
			return
		}
		panic(&hardened.Error{Report: rep})
	}
	cfg := pa.hooks(opts)
	a, err := harness.New(cfg.Options, cfg.Extra)
	if err != nil {
		return nil, err
	}
	pa.a = a
	return pa, nil
}

func putAllocator(opts Config, pa *pooled) {
	k := keyOf(opts)
	pool.Lock()
	defer pool.Unlock()
	if pool.free == nil {
		pool.free = make(map[poolKey][]*pooled)
	}
	if len(pool.free[k]) < 1 { // a worker runs one program at a time
		if pool.n >= maxPooled {
			for k2, l := range pool.free { // evict one other configuration's
				if len(l) > 0 {
					l[len(l)-1].a.Close()
					pool.free[k2] = l[:len(l)-1]
					pool.n--
					break
				}
			}
		}
		pool.free[k] = append(pool.free[k], pa)
		pool.n++
		return
	}
	pa.a.Close()
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

// live yields every block the model holds live, orphans first, numbered
// from 0, without copying them (the overlap check runs on every alloc).
func (r *runner) live() iter.Seq2[int, *block] {
	return func(yield func(int, *block) bool) {
		k := 0
		for _, l := range [2][]*block{r.orphans, r.slots[:]} {
			for _, b := range l {
				if b == nil {
					continue
				}
				if !yield(k, b) {
					return
				}
				k++
			}
		}
	}
}

// The model's copies of block contents are recycled across runs: making
// a fresh Go slice per block cost GC work, and the Go heap's scavenger
// returned the pages, which then faulted in again (about 10 us a page).
var wantPools [bits.UintSize]sync.Pool // by log2 of the capacity

func getWant(n int) []byte {
	if n == 0 {
		return []byte{}
	}
	k := bits.Len(uint(n - 1))
	if v, ok := wantPools[k].Get().(*[]byte); ok {
		return (*v)[:n] // not cleared: every caller overwrites all n bytes
	}
	return make([]byte, n, 1<<k)
}

func putWant(w []byte) {
	if cap(w) == 0 {
		return
	}
	wantPools[bits.Len(uint(cap(w)-1))].Put(&w)
}

var zeros [4096]byte

// isZero returns the index of the first non-zero byte of b, or -1.
// Comparisons go through bytes.Equal (vectorized), a page at a time.
func isZero(b []byte) int {
	for off := 0; off < len(b); off += len(zeros) {
		chunk := b[off:min(len(b), off+len(zeros))]
		if !bytes.Equal(chunk, zeros[:len(chunk)]) {
			for i, x := range chunk {
				if x != 0 {
					return off + i
				}
			}
		}
	}
	return -1
}

// setSlot sets slot s to b (nil: empty), keeping held.
func (r *runner) setSlot(s int, b *block) {
	r.slots[s] = b
	if b != nil {
		r.held |= 1 << s
	} else {
		r.held &^= 1 << s
	}
}

func (r *runner) put(slot int, b *block) {
	if old := r.slots[slot]; old != nil {
		k, _ := slices.BinarySearchFunc(r.orphans, old.start(), func(o *block, s uintptr) int { return cmp.Compare(o.start(), s) })
		r.orphans = slices.Insert(r.orphans, k, old) // kept sorted by start (checkNew)
	}
	r.setSlot(slot, b)
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
			thread.OnPanic(func(*thread.PanicError) { r.panics.Add(1) }))
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
			if err := t.Detach(); err != nil {
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
		if err := r.finish(); err != nil {
			return err
		}
		if err := r.close(); err != nil {
			return err
		}
		r.slots, r.held, r.orphans = [NumSlots]*block{}, 0, r.orphans[:0]
		on := r.resid.on
		r.startResidency() // Reset emptied the quarantine
		r.resid.on = r.resid.on && on
	}
	return nil
}

// Thread fates: what a spawned thread's function does at its end, so the
// thread package's error and panic paths run too.
const (
	fateReturn = iota // return nil
	fateError         // return errFated
	fatePanic         // panic(errFated)
)

var errFated = errors.New("fuzz: the thread's fated error")

func threadFate(aux int) int { return [...]int{fateReturn, fateReturn, fateError, fatePanic}[aux/64%4] }

// joined checks what Join returned against the thread's fate (and allows
// an out-of-memory error under a Limit).
func (r *runner) joined(err error, fate int) error {
	var pe *thread.PanicError
	switch {
	case err != nil && r.oom(err):
		return nil
	case fate == fateReturn && err == nil,
		fate == fateError && err == errFated,
		fate == fatePanic && errors.As(err, &pe) && pe.Value == errFated:
		return nil
	case err == nil:
		return fmt.Errorf("join returned nil for a thread fated %d", fate)
	}
	return err
}

// fillPattern writes byte aux+13j+1 at every offset j of w: a period
// of 256 copied from a table, then doubling copies. (Byte loops are slow
// under go test -fuzz: every iteration bumps a coverage counter.)
func fillPattern(w []byte, aux byte) { fillPeriodic(w, patRows[aux][:]) }

// fillPeriodic fills b with period p repeated: one copy of it, then
// doubling copies.
func fillPeriodic(b, p []byte) {
	n := copy(b, p)
	for m := n; m < len(b); m *= 2 {
		copy(b[m:], b[:m])
	}
}

// patRows[aux][j] is aux+13j+1, fillPattern's pattern.
var patRows = func() (t [256][256]byte) {
	for aux := range t {
		for j := range t[aux] {
			t[aux][j] = byte(aux) + byte(j*13) + 1
		}
	}
	return t
}()

// ramp is the bytes 0 to 255, twice: ramp[k%256:][:n] for n <= 256 is
// byte(j+k) at each j, threadWork's pattern.
var ramp = func() (t [512]byte) {
	for i := range t {
		t[i] = byte(i)
	}
	return t
}()

// fillRamp writes byte(j+k) at every offset j of b.
func fillRamp(b []byte, k int) { fillPeriodic(b, ramp[k%256:][:256]) }

// rampDiff returns the first offset j of b not holding byte(j+k), or -1.
func rampDiff(b []byte, k int) int {
	for off := 0; off < len(b); off += 256 {
		chunk := b[off:min(len(b), off+256)]
		if j := firstDiff(chunk, ramp[k%256:][:len(chunk)]); j >= 0 {
			return off + j
		}
	}
	return -1
}

func (r *runner) threadExited() {
	r.running.Add(-1)
	r.exited.Done()
}

// slotNames names threads by the slot holding their handle.
var slotNames = func() (n [NumSlots]string) {
	for i := range n {
		n[i] = "slot" + strconv.Itoa(i)
	}
	return n
}()

// threadWork is what a spawned thread does: allocate, write, verify, free,
// then meet its fate.
func threadWork(a *hardened.Allocator, rounds, size, fate int) error {
	for k := range rounds + 1 {
		b, err := a.Alloc(size + k)
		if err != nil {
			return err
		}
		fillRamp(b, k)
		runtime.Gosched()
		if j := rampDiff(b, k); j >= 0 {
			return fmt.Errorf("thread block %d byte %d changed", k, j)
		}
		a.Free(b)
	}
	switch fate {
	case fateError:
		return errFated
	case fatePanic:
		panic(errFated)
	}
	return nil
}

func firstDiff(got, want []byte) int {
	if bytes.Equal(got, want) {
		return -1
	}
	for j := range got {
		if got[j] != want[j] {
			return j
		}
	}
	return -1
}

// stopThreads joins every thread still owned and waits for every worker,
// detached ones included; it returns the first Join error.
func (r *runner) stopThreads() error {
	var first error
	for s, t := range r.threads {
		if t != nil {
			r.threads[s] = nil
			if err := r.joined(t.Join(), r.fates[s]); err != nil && first == nil {
				first = err
			}
		}
	}
	r.exited.Wait()
	return first
}

// finish joins every thread still owned and waits for every worker, then
// checks the live blocks against the model a last time. The allocator's
// own last verification is close's Reset, which walks every block as
// Check does (a final Check as well walked everything twice per exec).
func (r *runner) finish() error {
	end := len(r.p.Ops)
	if err := r.stopThreads(); err != nil {
		return r.fail(end, "final Join: %v", err)
	}
	if err := r.sweep(end); err != nil {
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
	// The bulk set is freed, not left to Reset as leaks: a Free costs a
	// fraction of a leak report, and runs the free paths once more.
	for _, bb := range r.bulk {
		if err := r.checkTag(end, bb); err != nil {
			return err
		}
		r.a.Free(bb.b)
	}
	r.clearBulk()
	return nil
}

// close closes the allocator and requires exactly the predicted leaks.
func (r *runner) close() error {
	var want []int
	for _, b := range r.live() {
		if r.misused != nil && r.misused.block == b {
			continue
		}
		want = append(want, len(b.b))
	}
	harness.Reset(r.a, r.p.Seed+1) // verifies like Close: leaks and damage are reported
	var got []int
	for _, rep := range r.takeReports() {
		if r.misused != nil && rep.Kind != hardened.Leak && r.misused.covers(rep) {
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
	slices.Sort(want)
	slices.Sort(got)
	if !slices.Equal(got, want) {
		return r.fail(-1, "Close reported leaks of sizes %v, the model predicts %v", got, want)
	}
	return nil
}

// trim, at the end of one program in 64 (by its seed), gives memory back
// with Trim and checks the accounting: what Trim gives back leaves
// Stats.Mapped, a second Trim gives nothing, and Audit (which checks that
// Stats.Mapped adds up to what is mapped) holds. Not an op among the
// others: the slabs it purges must be faulted in again by the programs
// after it on the pooled allocator, which cost a whole exec each time.
func (r *runner) trim(i int) error {
	if (r.p.Seed>>40)%64 != 0 || r.running.Load() > 0 {
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
