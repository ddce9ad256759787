package fuzz

import (
	"cmp"
	"errors"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"unsafe"

	"github.com/hardalloc/hardalloc/hardened"
	"github.com/hardalloc/hardalloc/thread"
)

// Bulk ops: one op allocates or frees up to 256 blocks, so that a
// program's live set reaches thousands of blocks and every path below
// Alloc and Free runs: per-P caches fill and spill half to the central
// lists, refill from them, slabs empty and are purged, classes borrow
// from their neighbours, and frees land on other Ps than the allocations
// (BulkFree on a second goroutine). A program of NumSlots blocks never
// left a P's cache.
const (
	bulkMax      = 4096    // blocks in the bulk set
	bulkMaxBytes = 4 << 20 // bytes in the bulk set
	bulkFull     = 256     // bytes of a bulk block checked in full (then its ends)
)

// bulkBlock is a block of the bulk set; its bytes are tagPattern(tag).
type bulkBlock struct {
	b     []byte
	tag   byte
	class int
}

// bulkCount is how many blocks a bulk op takes: mostly a few dozen, and
// one op in six 96, more than any per-P cache holds (64), so that it
// flushes. (256 cost 40% more per exec and reached nothing more.)
func bulkCount(aux int) int { return [...]int{4, 8, 16, 32, 64, 96}[aux%6] }

func tagAt(tag byte, j int) byte { return tag ^ byte(j*7) ^ 0x5c }

// tagSpans are the parts of an n-byte bulk block that hold its pattern:
// all of a small block, the first and last bulkFull/2 bytes of a larger
// one.
func tagSpans(n int) [2][2]int {
	if n <= bulkFull {
		return [2][2]int{{0, n}, {n, n}}
	}
	return [2][2]int{{0, bulkFull / 2}, {n - bulkFull/2, n}}
}

// fillTag writes the block's pattern.
func fillTag(b []byte, tag byte) {
	for _, s := range tagSpans(len(b)) {
		for j := s[0]; j < s[1]; j++ {
			b[j] = tagAt(tag, j)
		}
	}
}

// tagDiff returns the first offset fillTag's pattern does not hold, or -1.
func tagDiff(b []byte, tag byte) int {
	for _, s := range tagSpans(len(b)) {
		for j := s[0]; j < s[1]; j++ {
			if b[j] != tagAt(tag, j) {
				return j
			}
		}
	}
	return -1
}

// classOf is the size class the allocator's Stats count b in (-1: large).
func (r *runner) classOf(b []byte) int {
	if r.a == nil {
		return -1 // a unit test's runner, without an allocator
	}
	l, ok := r.a.LayoutOf(b)
	if !ok {
		return -2 // not live: checkNew or the overlap check fails it
	}
	return l.Class
}

func addrOf(b []byte) uintptr { return uintptr(unsafe.Pointer(unsafe.SliceData(b))) }

// oom reports whether err is the out-of-memory a configured Limit allows.
func (r *runner) oom(err error) bool {
	return r.opts.Limit > 0 && errors.Is(err, hardened.ErrOutOfMemory)
}

func (r *runner) bulkAlloc(i int, op Op) error {
	k := bulkCount(op.Aux)
	base := op.Size % 2048
	many := op.Aux&0x40 != 0 // sizes across many classes, or all one class
	for j := range k {
		if len(r.bulk) >= bulkMax || r.bulkBytes >= bulkMaxBytes {
			break
		}
		n := base
		if many {
			n = (base + j*(37+op.Aux)) % 4096
		}
		b, err := r.a.Alloc(n)
		if err != nil {
			if r.oom(err) {
				break // under a Limit: what fits, fits
			}
			return r.fail(i, "bulk Alloc(%d), block %d of %d: %v", n, j, k, err)
		}
		if len(b) != n || cap(b) != n {
			return r.fail(i, "bulk Alloc(%d): len %d cap %d", n, len(b), cap(b))
		}
		if z := isZero(b); z >= 0 {
			return r.fail(i, "bulk Alloc(%d): byte %d not zeroed", n, z)
		}
		tag := byte(op.Aux + j)
		fillTag(b, tag)
		r.bulk = append(r.bulk, bulkBlock{b, tag, r.classOf(b)})
		r.bulkBytes += n
	}
	if err := r.checkOverlap(i); err != nil {
		return err
	}
	return r.checkStats(i)
}

func (r *runner) bulkFree(i int, op Op) error {
	k := min(bulkCount(op.Aux), len(r.bulk))
	var batch []bulkBlock
	x := uint32(op.Size) | 1
	for range k {
		x = x*1664525 + 1013904223 // an LCG: the order replays
		j := int(x>>8) % len(r.bulk)
		bb := r.bulk[j]
		r.bulk[j] = r.bulk[len(r.bulk)-1]
		r.bulk = r.bulk[:len(r.bulk)-1]
		if d := tagDiff(bb.b, bb.tag); d >= 0 {
			return r.fail(i, "bulk block %#x (%d bytes): byte %d changed behind the model's back", addrOf(bb.b), len(bb.b), d)
		}
		r.bulkBytes -= len(bb.b)
		batch = append(batch, bb)
	}
	free := func() {
		for _, bb := range batch {
			r.a.Free(bb.b)
		}
	}
	if op.Aux&0x80 != 0 {
		// On another goroutine, so most likely another P: frees land in
		// a cache other than the allocations' (the fuzz workers run
		// with GOMAXPROCS >= 1; the goroutine still migrates blocks
		// between caches when it does not get its own P).
		done := make(chan struct{})
		go func() { free(); close(done) }()
		<-done
	} else {
		free()
	}
	return r.checkStats(i)
}

// raceFree frees one block from two goroutines released together by a
// spin barrier: the header's compare-and-swap must let exactly one win,
// the other must be reported as a double free, and nothing may be
// corrupted.
//
// Only while no thread runs: a thread's Alloc could take the slot between
// the two Frees, and the second would then free the thread's block (a
// double free across a reuse is undetectable by design).
func (r *runner) raceFree(i int, op Op) error {
	if r.running.Load() != 0 {
		return nil
	}
	b := r.slots[op.Slot]
	if b == nil {
		nb, err := r.a.Alloc(op.Size % 1024)
		if err != nil {
			if r.oom(err) {
				return nil
			}
			return r.fail(i, "Alloc for RaceFree: %v", err)
		}
		if b, err = r.checkNew(i, nb, op.Size%1024, 0, nil); err != nil {
			return err
		}
	}
	r.slots[op.Slot] = nil
	var ready atomic.Int32
	var wg sync.WaitGroup
	for range 2 {
		wg.Go(func() {
			ready.Add(1)
			for ready.Load() < 2 {
				runtime.Gosched() // one P (fuzz workers) must let the other goroutine run
			}
			r.a.Free(b.b)
		})
	}
	wg.Wait()
	putWant(b.want)
	reps := r.takeReports()
	if len(reps) != 1 {
		return r.fail(i, "two racing Frees of a %d-byte block gave %d reports, want exactly 1", len(b.b), len(reps))
	}
	if rep := reps[0]; rep.Kind != hardened.DoubleFree || rep.Addr != b.start() {
		return &Failure{Op: i, What: "two racing Frees: want one double-free of the block", Report: rep, Program: r.p}
	}
	return r.checkStats(i)
}

// checkOverlap sorts every block the model holds by address and checks
// that no two overlap: exact, where checkNew's look at the slots and
// orphans does not see the bulk set.
func (r *runner) checkOverlap(i int) error {
	spans := r.spans[:0]
	for _, b := range r.live() {
		spans = append(spans, [2]uintptr{b.start(), b.end()})
	}
	for _, bb := range r.bulk {
		s := addrOf(bb.b)
		spans = append(spans, [2]uintptr{s, s + uintptr(max(len(bb.b), 1))})
	}
	slices.SortFunc(spans, func(x, y [2]uintptr) int { return cmp.Compare(x[0], y[0]) })
	for k := 1; k < len(spans); k++ {
		if spans[k][0] < spans[k-1][1] {
			return r.fail(i, "live blocks [%#x,%#x) and [%#x,%#x) overlap", spans[k-1][0], spans[k-1][1], spans[k][0], spans[k][1])
		}
	}
	r.spans = spans
	return nil
}

// checkStats compares the allocator's accounting with the model: live
// blocks and requested bytes, counting the launch capsules of threads not
// yet joined or detached. It runs when no thread is running (theirs
// change the counts) and before any misuse (whose blocks are withdrawn,
// not freed).
func (r *runner) checkStats(i int) error {
	if r.running.Load() != 0 || r.misused != nil {
		return nil
	}
	var blocks, bytes int64
	perClass := r.perClass[:0]
	count := func(n, class int) {
		blocks++
		bytes += int64(n)
		if class >= 0 {
			for len(perClass) <= class {
				perClass = append(perClass, 0)
			}
			perClass[class]++
		}
	}
	for _, b := range r.live() {
		count(len(b.b), b.class)
	}
	for _, bb := range r.bulk {
		count(len(bb.b), bb.class)
	}
	capsules := 0
	for _, t := range r.threads {
		if t != nil {
			capsules++
			blocks++
			bytes += thread.CapsuleSize
		}
	}
	r.perClass = perClass
	s := r.a.Stats()
	if s.LiveBlocks != blocks || s.Requested != bytes {
		return r.fail(i, "Stats: %d live blocks, %d bytes requested; the model holds %d blocks, %d bytes",
			s.LiveBlocks, s.Requested, blocks, bytes)
	}
	if capsules > 0 {
		return nil // the model does not know the capsules' classes
	}
	for c, cs := range s.Classes {
		want := int64(0)
		if c < len(perClass) {
			want = perClass[c]
		}
		if cs.Live != want {
			return r.fail(i, "Stats: class %d (%d bytes) has %d live blocks, the model %d", c, cs.Size, cs.Live, want)
		}
	}
	return nil
}
