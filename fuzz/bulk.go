package fuzz

import (
	"errors"
	"runtime"
	"sync"
	"sync/atomic"
	"unsafe"

	"github.com/hardalloc/hardalloc/hardened"
	"github.com/hardalloc/hardalloc/internal/harness"
	"github.com/hardalloc/hardalloc/thread"
)

// Bulk ops: one op allocates or frees up to 96 blocks, so that a
// program's live set reaches a thousand blocks and every path below
// Alloc and Free runs: per-P caches fill and spill half to the central
// lists, refill from them, slabs empty and are purged, classes borrow
// from their neighbours, and frees land on other Ps than the allocations
// (BulkFree on a second goroutine). A program of NumSlots blocks never
// left a P's cache.
const (
	// The bulk set's bounds: enough to fill two slabs of any class (at
	// most 512 slots each) and every per-P cache several times over.
	// (With 4096 blocks, 4 MiB and more blocks per op, hardened runs of
	// the FuzzAllocFree corpus took 1.7 times as long, and every seeded
	// bug is found as fast without them.)
	bulkMax      = 1024    // blocks in the bulk set
	bulkMaxBytes = 1 << 20 // bytes in the bulk set
	bulkFull     = 256     // bytes of a bulk block checked in full (then its ends)
)

// bulkBlock is a block of the bulk set; its bytes are tagPattern(tag).
type bulkBlock struct {
	b     []byte
	tag   byte
	class int
}

// span is the address range the block covers (a 0-byte block one byte).
func (bb *bulkBlock) span() (uintptr, uintptr) {
	s := addrOf(bb.b)
	return s, s + uintptr(max(len(bb.b), 1))
}

// addBulk puts bb in the bulk set, its granules and its counts, and
// returns what it overlaps there ("" if nothing).
func (r *runner) addBulk(bb bulkBlock) string {
	s, e := bb.span()
	if r.granules.update(s, e, true) {
		return r.bulkOverlapping(s, e)
	}
	r.bulk = append(r.bulk, bb)
	r.bulkBytes += len(bb.b)
	r.bulkClass = countClass(r.bulkClass, bb.class)
	return ""
}

// countClass counts one more block of class c (none if c < 0: large, or
// not live) in counts, growing it to hold c.
func countClass(counts []int64, c int) []int64 {
	if c < 0 {
		return counts
	}
	for len(counts) <= c {
		counts = append(counts, 0)
	}
	counts[c]++
	return counts
}

// dropBulk takes the bulk set's block j out of it, its granules and its
// counts, and returns it.
func (r *runner) dropBulk(j int) bulkBlock {
	bb := r.bulk[j]
	r.bulk[j] = r.bulk[len(r.bulk)-1]
	r.bulk = r.bulk[:len(r.bulk)-1]
	r.bulkBytes -= len(bb.b)
	if bb.class >= 0 {
		r.bulkClass[bb.class]--
	}
	s, e := bb.span()
	r.granules.update(s, e, false)
	return bb
}

// clearBulk empties the bulk set (its blocks freed, or forgotten by Reset).
func (r *runner) clearBulk() {
	clear(r.bulk)
	r.bulk, r.bulkBytes = r.bulk[:0], 0
	clear(r.bulkClass)
	r.granules.reset()
}

// bulkCount is how many blocks a bulk op takes: mostly a few, and one op
// in eight 96, more than any per-P cache holds (64), so that it flushes.
// (256 cost 40% more per exec and reached nothing more; a few dozen on
// average were a third of a program's time, and go test -fuzz's exec rate
// is the mean of 1/cost.)
func bulkCount(aux int) int { return [...]int{2, 3, 4, 8, 12, 16, 32, 96}[aux%8] }

func tagAt(tag byte, j int) byte { return tag ^ byte(j*7) ^ 0x5c }

// tagRows[tag] holds tagAt(tag, j) for j in [0, 512): the pattern's period
// is 256, so any run of up to 256 bytes of it starts in the first half, and
// fillTag and tagDiff copy and compare whole runs (a byte loop was most of
// a bulk op's own time).
var tagRows = func() (t [256][512]byte) {
	for tag := range t {
		for j := range t[tag] {
			t[tag][j] = tagAt(byte(tag), j)
		}
	}
	return t
}()

func tagRun(tag byte, from, to int) []byte { return tagRows[tag][from%256 : from%256+to-from] }

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
		copy(b[s[0]:s[1]], tagRun(tag, s[0], s[1]))
	}
}

// checkTag fails op i if bulk block bb no longer holds its pattern.
func (r *runner) checkTag(i int, bb bulkBlock) error {
	if d := tagDiff(bb.b, bb.tag); d >= 0 {
		return r.fail(i, "bulk block %#x (%d bytes): byte %d changed behind the model's back", addrOf(bb.b), len(bb.b), d)
	}
	return nil
}

// tagDiff returns the first offset fillTag's pattern does not hold, or -1.
func tagDiff(b []byte, tag byte) int {
	for _, s := range tagSpans(len(b)) {
		if j := firstDiff(b[s[0]:s[1]], tagRun(tag, s[0], s[1])); j >= 0 {
			return s[0] + j
		}
	}
	return -1
}

// classOf is the size class the allocator's Stats count b in (-1: large).
func (r *runner) classOf(b []byte) int {
	if r.a == nil {
		return -1 // a unit test's runner, without an allocator
	}
	l, ok := harness.LayoutOf(r.a, b)
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

// bulkRand is the j-th pseudo-random word of a bulk op (splitmix64 of
// its fields): sizes that replay.
func bulkRand(op Op, j int) uint32 {
	z := uint64(op.Size)<<32 ^ uint64(op.Aux)<<16 ^ uint64(j)
	z = (z + 0x9e3779b97f4a7c15) * 0xbf58476d1ce4e5b9
	z = (z ^ z>>27) * 0x94d049bb133111eb
	return uint32(z ^ z>>31)
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
			// Log-uniform below 4 KiB: every class about as often, at a
			// quarter of a uniform draw's bytes (zeroing, canaries and
			// the model's checks all cost per byte).
			n = logUniform(bulkRand(op, j), 12) - 1
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
		if err := r.checkReuse(i, b); err != nil {
			return err
		}
		bb := bulkBlock{b, byte(op.Aux + j), r.classOf(b)}
		s, e := bb.span()
		if s%16 != 0 {
			return r.fail(i, "bulk Alloc(%d): block %#x not aligned to 16", n, s)
		}
		o := r.overlapSlots(s, e)
		if o == "" {
			o = r.addBulk(bb) // and the bulk set's granules
		}
		if o != "" {
			return r.fail(i, "bulk Alloc(%d): new block [%#x,%#x) overlaps %s", n, s, e, o)
		}
		if z := isZero(b); z >= 0 {
			return r.fail(i, "bulk Alloc(%d): byte %d not zeroed", n, z)
		}
		fillTag(b, bb.tag)
	}
	return r.checkStats(i)
}

func (r *runner) bulkFree(i int, op Op) error {
	k := min(bulkCount(op.Aux), len(r.bulk))
	var batch []bulkBlock
	x := uint32(op.Size) | 1
	for range k {
		x = x*1664525 + 1013904223 // an LCG: the order replays
		bb := r.dropBulk(int(x>>8) % len(r.bulk))
		if err := r.checkTag(i, bb); err != nil {
			return err
		}
		batch = append(batch, bb)
	}
	for _, bb := range batch {
		r.noteFree(bb.b)
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
		beside(free, nil)
	} else {
		free()
	}
	return r.checkStats(i)
}

// helper is a goroutine that runs functions for a program: frees on
// another goroutine than the program's (so, most likely, another P's
// cache), and the second of two racing frees. Helpers are kept for reuse:
// a new goroutine per op grew its stack again each time (copying it).
type helper struct {
	work chan func()
	done chan struct{}
}

var helpers struct {
	sync.Mutex
	free []*helper
}

func getHelper() *helper {
	helpers.Lock()
	defer helpers.Unlock()
	if n := len(helpers.free); n > 0 {
		h := helpers.free[n-1]
		helpers.free = helpers.free[:n-1]
		return h
	}
	h := &helper{work: make(chan func()), done: make(chan struct{})}
	go func() {
		for f := range h.work {
			f()
			h.done <- struct{}{}
		}
	}()
	return h
}

// putHelper returns an idle helper for reuse.
func putHelper(h *helper) {
	helpers.Lock()
	helpers.free = append(helpers.free, h)
	helpers.Unlock()
}

// beside runs f on a helper while this goroutine runs here (if not nil),
// and returns once both have.
func beside(f, here func()) {
	h := getHelper()
	h.work <- f
	if here != nil {
		here()
	}
	<-h.done
	putHelper(h)
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
	r.setSlot(op.Slot, nil)
	// This goroutine and a helper (another P, when there is one to run
	// it) free the block at once.
	r.noteFree(b.b) // one of the two Frees wins
	var ready atomic.Int32
	race := func() {
		ready.Add(1)
		for ready.Load() < 2 {
			runtime.Gosched() // one P (fuzz workers) must let the other goroutine run
		}
		r.a.Free(b.b)
	}
	beside(race, race)
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

// checkStats compares the allocator's accounting with the model: live
// blocks and requested bytes, counting the launch capsules of threads not
// yet joined or detached. It runs when no thread is running (theirs
// change the counts) and before any misuse (whose blocks are withdrawn,
// not freed).
func (r *runner) checkStats(i int) error {
	if r.running.Load() != 0 || r.misused != nil {
		return nil
	}
	// The bulk set's counts are kept as it changes (addBulk, dropBulk);
	// the slots and orphans are few.
	blocks, bytes := int64(len(r.bulk)), int64(r.bulkBytes)
	perClass := append(r.perClass[:0], r.bulkClass...)
	for _, b := range r.live() {
		blocks++
		bytes += int64(len(b.b))
		perClass = countClass(perClass, b.class)
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
	harness.ReadStats(r.a, &r.stats)
	s := &r.stats
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
