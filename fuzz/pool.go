package fuzz

import (
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/hardalloc/hardalloc/hardened"
	"github.com/hardalloc/hardalloc/internal/harness"
)

// This file is the pool of allocators the runs share, recycled by
// harness.Reset between programs, and the runners recycled with them.

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
	*r = runner{p: p, a: pa.a, opts: opts, workErrs: r.workErrs,
		model:    model{orphans: r.orphans[:0], bulk: r.bulk, bulkClass: r.bulkClass, granules: r.granules},
		perClass: r.perClass, stats: r.stats,
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
	sampled    bool // the rate changes at ResetWith; the pool is mapped or not
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
// run took for an out-of-memory bug of a recycled allocator. Options
// derives 192 keys (4 budgets, 4 redzones, protected or not, 3 limits,
// sampled or not), so the pool never evicts: keyed by the sample rate
// too (5 values), it closed an allocator and mapped a fresh one in one
// program in 300, whose slabs were then committed (mprotect, 7 times as
// often per exec as 84cfd01), faulted in and junked again.
const maxPooled = 256

func keyOf(o Config) poolKey {
	return poolKey{o.QuarantineBytes, o.Redzone, o.ProtectMetadata, o.Limit, o.SampleRate > 0}
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
		// (stacks, large-block cache, chosen cache, alignment, sample
		// rate), so one pooled allocator serves every configuration of
		// its key.
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
