package fuzz

import (
	"fmt"
	"sync/atomic"

	"github.com/hardalloc/hardalloc/hardened"
	"github.com/hardalloc/hardalloc/internal/harness"
)

// This file is how a program configures its allocator: the Options and
// the harness configuration (Extra) derived from its seed, the cache
// chooser, and what a failed program returns.

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
