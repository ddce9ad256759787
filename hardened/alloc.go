package hardened

import (
	crand "crypto/rand"
	"errors"
	"fmt"
	"io"
	"math/bits"
	"math/rand/v2"
	"runtime"
	"sync"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/hardalloc/hardalloc/redzone"
)

// Options configures an Allocator. The zero value is a good default.
type Options struct {
	// Limit caps the bytes the allocator maps readable (slabs and large
	// blocks). Zero or negative means no limit.
	Limit int64
	// Seed, when non-zero, derives every random choice (the header secret,
	// canary and poison keys, quarantine picks), so a run replays exactly.
	// Zero seeds from crypto/rand.
	Seed uint64
	// OnReport receives every detected bug. Nil means: print the whole
	// report (Report.String) to ReportOutput, then panic with *Error, the
	// way AddressSanitizer prints before it aborts. The allocator is usable
	// again after OnReport returns; the block concerned is never reused.
	OnReport func(*Report)
	// ReportOutput is where the default OnReport prints reports and where
	// Close prints the leaks it finds when OnReport is nil. Nil means
	// os.Stderr; io.Discard keeps both quiet (Close still returns the
	// leaks).
	ReportOutput io.Writer
	// Redzone is the minimum number of bytes between the header and the
	// payload, and after the payload, in hardened builds (rounded up to 16;
	// 0 means 16; negative means none beyond the size-class slack).
	Redzone int
	// QuarantineBytes is the hardened builds' budget of freed bytes held
	// back from reuse. 0 means 4 MiB; negative means no quarantine except
	// for the class that holds thread launch capsules (and the
	// AlwaysQuarantine and QuarantineAlways sizes): other frees then skip poisoning, since
	// their slots are reused before any check could read it.
	QuarantineBytes int64
	// StackDepth is how many frames hardened builds record for each
	// allocation and free. 0 means 16; negative means no stacks
	// (goroutine and sequence number are still recorded).
	StackDepth int
	// ProtectMetadata keeps the hardened builds' out-of-band metadata
	// (allocation/free sites) read-only outside allocator calls, so a stray
	// write into it faults instead of corrupting it. Costs two mprotect
	// calls per operation.
	ProtectMetadata bool
	// AlwaysQuarantine lists extra request sizes whose size classes are
	// always quarantined (hardened builds), whatever the budget.
	AlwaysQuarantine []int
	// ProfileName, when set in hardened builds, exports live blocks as the
	// runtime/pprof custom profile of that name (pprof.Lookup(name)), each
	// with its allocation stack: `go tool pprof` then shows who holds
	// memory. It costs a profile lock and a stack per Alloc and Free. The
	// name must be unique in the process; runtime/pprof cannot unregister a
	// profile, so after Close it stays, empty. Its stacks start at the
	// allocator's caller. Release builds record no stacks: New fails.
	ProfileName string
	// JunkFill, when non-zero, fills the slots of every slab the allocator
	// commits (or revives after a purge) with this byte, headers aside:
	// pages fresh from the OS are zero, which hides an Alloc that forgets
	// to zero. For tests and fuzz harnesses, where it makes such a bug show
	// on a new allocator as on a recycled one; it costs a fill per slab.
	JunkFill byte
	// MinAlign, when set, is the alignment of every block: a power of two
	// no larger than MaxAlign (0 means 16). Alloc and Realloc then return
	// blocks aligned to it on their fast paths, and AllocAligned with an
	// alignment up to it is Alloc; for clients whose every buffer is
	// aligned (Apache Arrow's are 64-byte aligned), at the cost of up to
	// MinAlign-16 bytes of slack per small block.
	MinAlign int
	// Wrappers lists the functions that wrap this allocator for a client
	// (an adapter's Allocate and Free, say), as prefixes of the names
	// runtime.Frame.Function gives them ("example.com/adapter.(*Alloc)."):
	// their frames are dropped from the top of every site like the
	// allocator's own, so reports and their summaries start at the code
	// that called the wrapper, the way testing.T.Helper marks test helpers.
	Wrappers []string
	// Cache, for fuzz harnesses: when set, every operation uses the per-P
	// cache whose index Cache returns (modulo the number of caches),
	// locked, instead of the current P's, the way race builds pick one at
	// random; a harness that derives the choice from its input makes a
	// block allocated through one cache be freed through another, and
	// caches fill, flush and refill apart from the scheduler, replayably.
	// It costs a lock per operation.
	Cache func() int
	// ClassSpace is the address space reserved for each size class, a
	// power of two from 16 MiB to 1 GiB (0 means 1 GiB, or less under
	// `ulimit -v`). A class whose space is full serves its requests as
	// large blocks. Fuzz harnesses that keep hundreds of allocators alive
	// use a small one: 89 GiB each would exhaust 47 bits of address space.
	ClassSpace int64
	// LargeCacheBytes is how many bytes of freed large blocks (above
	// MaxSmall) stay mapped for reuse, so that a large Alloc after a Free
	// costs a clear instead of mmap, munmap and a page fault per page.
	// Hardened builds cache a block only once it has left the large-block
	// quarantine. 0 means 32 MiB; negative means none. Cached bytes count
	// as mapped (and against Limit, which trims the cache first).
	LargeCacheBytes int64
}

// Each size class owns 2^shift bytes of address space: 1 GiB
// (maxClassShift) when New can reserve the 89 GiB this takes, less under an
// address-space limit (ulimit -v), down to minClassShift; a class whose
// region is full serves its requests as large blocks.
const (
	maxClassShift = 30
	minClassShift = 24
	cacheCap      = 64
)

// classRegion is the address space of one class.
//
//go:norace
//go:nocheckptr
func (a *Allocator) classRegion() uintptr { return 1 << a.shift }

// regionSize is the address space of all classes.
//
//go:norace
//go:nocheckptr
func (a *Allocator) regionSize() uintptr { return numClasses << a.shift }

// An Allocator hands out off-heap memory. It is safe for concurrent use;
// Close must not race with other calls.
type Allocator struct {
	opts   Options
	report func(*Report)
	secret uint64

	mem   []byte         // the reservation holding every class region
	base  unsafe.Pointer // &mem[0]
	shift uint           // log2 of each class region's size

	caches []*cache // per P (or, under -race, a locked pool)
	spare  *cache   // used when GOMAXPROCS grew beyond len(caches)

	classes [numClasses]central
	divMul  [numClasses]uint32 // slot index = offset*divMul>>32
	ccap    [numClasses]uint8  // per-class cache capacity
	// always marks the classes every free quarantines, even without a
	// budget (hardened builds: QuarantineAlways, Options.AlwaysQuarantine).
	// They never spill: their blocks must stay in their own class.
	always [numClasses]bool

	large largeHeap

	mapped atomic.Int64 // readable bytes mapped: committed slabs and large blocks
	// handed has bit c set once class c hands a slot out of its central
	// list, cleared by Reset: walks and Reset visit only those classes.
	handed [(numClasses + 63) / 64]atomic.Uint64
	closed atomic.Bool
	holds  sync.WaitGroup // Hold: users Close waits for

	rng *rand.ChaCha8 // used only while New and Reset run

	minAlign uintptr // Options.MinAlign, at least 16

	//lint:ignore U1000 empty in release builds (harden0.go)
	hardAlloc // the hardening layer's state
}

// central holds a class's free slots that are in no per-P cache, and the
// bump pointer that carves new slabs out of the class region.
type central struct {
	mu        sync.Mutex
	slabs     []slabState   // per slab carved (central.go)
	lowest    int           // no slab below this has free slots to give
	empty     int           // slabs whose every slot is free here (purged or not)
	committed atomic.Uint64 // bytes of the class region carved into slabs
	_         [64]byte
}

// cache is one P's stock of free slots per class: an array, not an in-band
// list, so a write after free can never redirect the allocator.
type cache struct {
	shared    bool       // the spare cache: locked, not pinned
	mu        sync.Mutex // used only under -race and for the spare cache
	n         [numClasses]uint8
	free      [numClasses][cacheCap]uint32
	allocs    [numClasses]int64
	frees     [numClasses]int64
	requested int64
	cacheHard // the hardening layer's per-P state (empty in release builds)
	_         [64]byte
}

// allCaches returns every per-P cache and the spare one.
func (a *Allocator) allCaches() []*cache {
	return append(a.caches[:len(a.caches):len(a.caches)], a.spare)
}

// pop takes a free slot of class c from the cache (pinned or locked),
// counting an n-byte allocation; false if it has none.
func (pc *cache) pop(c, n int) (uint32, bool) {
	k := pc.n[c]
	if k == 0 {
		return 0, false
	}
	k--
	pc.n[c] = k
	pc.noteAlloc(c, n)
	return pc.free[c][k], true
}

// noteAlloc counts an n-byte allocation of class c on this cache's P
// (pinned or locked); Stats sums the caches.
func (pc *cache) noteAlloc(c, n int) {
	pc.allocs[c]++
	pc.requested += int64(n)
}

// noteFree counts the free of a size-byte block of class c.
func (pc *cache) noteFree(c, size int) {
	pc.frees[c]++
	pc.requested -= int64(size)
}

// New maps the address-space reservation for the size classes (PROT_NONE,
// nothing committed) and returns a ready allocator.
func New(opts Options) (*Allocator, error) {
	if opts.MinAlign < 0 || opts.MinAlign&(opts.MinAlign-1) != 0 || opts.MinAlign > MaxAlign {
		return nil, &OpError{Op: "New", Align: opts.MinAlign, Err: ErrAlignment}
	}
	a := &Allocator{opts: opts, report: opts.OnReport, minAlign: uintptr(max(opts.MinAlign, 16))}
	if a.report == nil {
		a.report = func(r *Report) {
			a.print(r.String())
			panic(&Error{Report: r})
		}
	}
	var seed [32]byte
	if opts.Seed != 0 {
		seed = seedBytes(opts.Seed)
	} else if _, err := crand.Read(seed[:]); err != nil {
		return nil, err
	}
	a.rng = rand.NewChaCha8(seed)
	a.secret = a.rng.Uint64()

	n := max(runtime.GOMAXPROCS(0), runtime.NumCPU())
	a.caches = make([]*cache, n)
	for i := range a.caches {
		a.caches[i] = &cache{cacheHard: newCacheHard(i)}
	}
	a.spare = &cache{shared: true, cacheHard: newCacheHard(n)}
	for c := range numClasses {
		stride := classSize[c] + headerSize
		a.divMul[c] = ^uint32(0)/stride + 1
		a.ccap[c] = uint8(min(cacheCap, max(2, (32<<10)/stride)))
		if opts.Limit > 0 {
			// Slots parked in another P's cache cannot be taken back by a
			// goroutine that hits the limit on this P, so an exact Limit
			// means no per-P caching: every operation takes the class lock.
			a.ccap[c] = 0
		}
	}
	if err := a.reserveSpace(); err != nil {
		return nil, err
	}
	a.large.init()
	asanRegister(a)
	return a, nil
}

// reserveSpace maps the PROT_NONE reservation of the class regions (and,
// hardened, the site records sized by it), halving each region's size
// until the reservation fits under an address-space limit.
func (a *Allocator) reserveSpace() error {
	a.shift = maxClassShift
	if cs := a.opts.ClassSpace; cs != 0 {
		if cs&(cs-1) != 0 || cs < 1<<minClassShift || cs > 1<<maxClassShift {
			return &OpError{Op: "New", Err: fmt.Errorf("Options.ClassSpace %d is not a power of two from 16 MiB to 1 GiB", cs)}
		}
		a.shift = uint(bits.TrailingZeros64(uint64(cs)))
	}
	for ; ; a.shift = max(a.shift-2, minClassShift) {
		mem, err := unix.Mmap(-1, 0, int(a.regionSize()), unix.PROT_NONE,
			unix.MAP_PRIVATE|unix.MAP_ANONYMOUS|unix.MAP_NORESERVE)
		if err == nil {
			a.mem, a.base = mem, unsafe.Pointer(&mem[0])
			if err = a.initHardened(); err == nil {
				return nil
			}
			unix.Munmap(mem)
		}
		if !errors.Is(err, unix.ENOMEM) {
			return err
		}
		if a.shift == minClassShift {
			return &OpError{Op: "New", Err: fmt.Errorf("reserving %d MiB of address space for the size classes (is `ulimit -v` below that?): %w",
				a.regionSize()>>20, mmapErr(err))}
		}
	}
}

func mmapErr(err error) error {
	if errors.Is(err, unix.ENOMEM) {
		return errors.Join(ErrOutOfMemory, err)
	}
	return err
}

// sizeClass returns the class of an n-byte payload, n <= maxSmall.
//
//go:norace
//go:nocheckptr
func sizeClass(n uintptr) int {
	if n <= 1024 {
		return int(sizeToClass16[(n+15)>>4])
	}
	return int(sizeToClass128[(n-1024+127)>>7])
}

func (a *Allocator) classBase(c int) uintptr { return uintptr(c) << a.shift }

// slotAt is the address of the slot at offset off of class c's region.
//
//go:norace
//go:nocheckptr
func (a *Allocator) slotAt(c int, off uint32) unsafe.Pointer {
	return unsafe.Add(a.base, a.classBase(c)+uintptr(off))
}

// Alloc returns n zeroed bytes with len == cap == n. Alloc(0) returns a
// distinct, freeable, empty slice.
//
//go:norace
//go:nocheckptr
func (a *Allocator) Alloc(n int) ([]byte, error) {
	// Fast path, the same in both builds: a non-empty request whose slot
	// (with the hardened redzones: pads) is small, from this P's cache,
	// armed by finishSmall as on the general path. After Close the caches
	// are empty, so this falls through to the checks.
	front, rear := a.pads()
	slack := int(a.minAlign) - 16 // Options.MinAlign: the most alignment padding a slot needs
	if n > 0 && n <= maxSmall-front-rear-slack {
		c := sizeClass(uintptr(front + slack + n + rear))
		if off, seq, ok := a.popFast(c, n); ok {
			// finishSmall, by hand: it is over the inlining budget, and
			// the call cost release builds ~4 ns of a 40 ns pair.
			slot := a.slotAt(c, off)
			payOff := uintptr(front)
			if slack > 0 {
				payOff = alignUp(uintptr(slot)+headerSize+payOff, a.minAlign) - uintptr(slot) - headerSize
			}
			if a.armSmall(slot, c, off, n, payOff, seq) {
				b := unsafe.Slice((*byte)(unsafe.Add(slot, headerSize+payOff)), n)
				if !bug(bugNoZero) {
					clear(b)
				}
				return b, nil
			}
		}
	}
	return a.alloc("Alloc", n, 0)
}

// AllocAligned returns n zeroed bytes whose address is a multiple of
// align, a power of two no larger than MaxAlign. An alignment up to
// Options.MinAlign is Alloc's, fast path included; AllocAligned(0, align)
// is a zero-size block as Alloc(0) is (in hardened builds, an address in
// the PROT_NONE zero-size region, for alignments up to a page).
func (a *Allocator) AllocAligned(n, align int) ([]byte, error) {
	if align <= 0 || align&(align-1) != 0 || align > MaxAlign {
		return nil, &OpError{Op: "AllocAligned", Size: n, Align: align, Err: ErrAlignment}
	}
	if uintptr(align) <= a.minAlign && n > 0 {
		return a.Alloc(n) // its errors say Op "Alloc"
	}
	return a.alloc("AllocAligned", n, align)
}

// alloc is the general path: any size, any alignment, hardened or not.
func (a *Allocator) alloc(op string, n, align int) ([]byte, error) {
	if n < 0 || n > maxAllocSize {
		return nil, &OpError{Op: op, Size: n, Align: align, Err: ErrInvalidSize}
	}
	if a.closed.Load() {
		return nil, &OpError{Op: op, Size: n, Align: align, Err: ErrClosed}
	}
	align = max(align, int(a.minAlign))
	if Enabled && n == 0 && uintptr(align) <= pageSize {
		if b := a.allocZero(uintptr(align)); b != nil {
			return b, nil
		}
	}
	front, rear := a.pads()
	// Worst-case room the slot needs: front pad, alignment slack, payload,
	// rear pad.
	// At least one byte, so even an empty payload lies strictly inside its
	// slot and its address maps back to it.
	need := uintptr(front) + uintptr(align-16) + uintptr(max(n, 1)) + uintptr(rear)
	if need <= maxSmall && front+align-16 <= maxHdrOffset {
		c := sizeClass(need)
		for {
			d, off, seq, err := a.popSlot(c, n)
			if err != nil {
				if errors.Is(err, errClassFull) {
					break // fall back to a large block
				}
				return nil, &OpError{Op: op, Size: n, Align: align, Err: err}
			}
			slot := a.slotAt(d, off)
			payOff := alignUp(uintptr(slot)+headerSize+uintptr(front), uintptr(align)) - uintptr(slot) - headerSize
			if b := a.finishSmall(d, off, n, payOff, seq, d != c); b != nil {
				return b, nil
			}
			// The slot's header was damaged while it was free: it has been
			// reported and dropped; take another.
		}
	}
	b, err := a.allocLarge(n, align)
	if err != nil {
		return nil, &OpError{Op: op, Size: n, Align: align, Err: err}
	}
	return b, nil
}

// Hold registers a user of the allocator's memory that runs on its own,
// such as package thread's workers, which touch their launch capsule after
// the owner has let go: Close waits until every hold is released, so it
// never unmaps memory under a running goroutine. release may be called
// more than once; only the first call counts.
func (a *Allocator) Hold() (release func()) {
	a.holds.Add(1)
	return sync.OnceFunc(a.holds.Done)
}

// maxAllocSize bounds requests so that size arithmetic cannot overflow.
const maxAllocSize = 1<<47 - 1

func alignUp(x, a uintptr) uintptr { return (x + a - 1) &^ (a - 1) }

var errClassFull = errors.New("size class region exhausted")

// popSlot takes a free slot for an n-byte request of class c: from this
// P's cache if it has one, else a batch from the class's central list;
// when that is empty, one free slot of a slightly larger class (spill)
// before carving a new slab. It returns the class of the slot it took.
func (a *Allocator) popSlot(c int, n int) (int, uint32, uint64, error) {
	if off, seq, ok := a.popFast(c, n); ok {
		return c, off, seq, nil
	}

	var batch [cacheCap]uint32
	cl := &a.classes[c]
	want := max(1, int(a.ccap[c]+1)/2)
	cl.mu.Lock()
	k, err := a.take(c, batch[:want], false)
	if err == nil && k == 0 {
		cl.mu.Unlock()
		if d, off, seq, ok := a.spill(c, n); ok {
			return d, off, seq, nil
		}
		cl.mu.Lock()
		k, err = a.take(c, batch[:want], true)
	}
	if err == nil && k == 0 {
		err = a.grow(c)
		if err != nil && Enabled && errors.Is(err, ErrOutOfMemory) {
			// Over the limit with freed blocks waiting in quarantine:
			// release them all (verifying their poison) and try again.
			cl.mu.Unlock()
			a.drainQuarantine()
			cl.mu.Lock()
			k, err = a.take(c, batch[:want], true)
			if err == nil && k == 0 {
				err = a.grow(c)
			}
		}
		if err == nil && k == 0 {
			k, err = a.take(c, batch[:want], true)
		}
	}
	cl.mu.Unlock()
	if err != nil {
		return 0, 0, 0, err
	}

	// Keep one, stock this P's cache with the rest.
	k--
	off := batch[k]
	pc := a.pin()
	pc.noteAlloc(c, n)
	room := int(a.ccap[c]) - int(pc.n[c])
	m := min(room, k)
	if bug(bugRefillDup) && m < room {
		m++ // seeded bug: batch[k], the slot kept, is stocked too
		copy(pc.free[c][pc.n[c]:], batch[k-m+1:k+1])
	} else {
		copy(pc.free[c][pc.n[c]:], batch[k-m:k])
	}
	pc.n[c] += uint8(m)
	a.unpin(pc)
	if m < k {
		cl.mu.Lock()
		a.put(c, batch[:k-m])
		cl.mu.Unlock()
	}
	return c, off, 0, nil // hardened builds take the sequence number in armSmall
}

// Spilling: a class whose free slots have all been handed out borrows one
// free slot from the next few larger classes, at most spillRatio times
// its size, before it carves a new slab. Segregated size classes each
// hold memory up to their own high-water mark; on a workload whose
// per-class demand drifts (BenchmarkMixed: 4096 live blocks of 96 sizes,
// replaced at random), the free slots of all classes at once came to 43%
// of the live bytes. Letting neighbours share them costs a spilled block
// at most spillRatio-1 of its size in slack (which hardened builds fill
// with canary: more overflow is caught, not less), and costs time only on
// the path that would otherwise mprotect a new slab.
const (
	spillClasses = 6
	spillRatio   = 1.75
)

// spill takes one free slot for an n-byte request from a class above c,
// from this P's cache or the class's central list, without reviving a
// purged slab. Always-quarantined classes (thread capsules) never spill:
// their blocks must stay in their own class.
func (a *Allocator) spill(c, n int) (int, uint32, uint64, bool) {
	if a.always[c] {
		return 0, 0, 0, false
	}
	for d := c + 1; d < numClasses && d <= c+spillClasses && float64(classSize[d]) <= spillRatio*float64(classSize[c]); d++ {
		if off, seq, ok := a.popFast(d, n); ok {
			return d, off, seq, true
		}
		var one [1]uint32
		cl := &a.classes[d]
		cl.mu.Lock()
		k, _ := a.take(d, one[:], false)
		cl.mu.Unlock()
		if k == 1 {
			pc := a.pin()
			pc.noteAlloc(d, n)
			a.unpin(pc)
			return d, one[0], 0, true
		}
	}
	return 0, 0, 0, false
}

// pushSlot returns a free slot to this P's cache, spilling half the cache
// to the central list when it is full.
func (a *Allocator) pushSlot(c int, off uint32, size int) {
	pc := a.pin()
	if size >= 0 { // size -1: already counted as freed (hardened quarantine)
		pc.noteFree(c, size)
	}
	k := pc.n[c]
	if bug(bugDoublePush) && (off>>4)%16 == 0 && k+1 < a.ccap[c] {
		pc.free[c][k] = off // seeded bug: the slot is handed out twice
		k++
		pc.n[c] = k
	}
	if a.ccap[c] == 0 {
		a.unpin(pc)
		cl := &a.classes[c]
		cl.mu.Lock()
		a.put(c, []uint32{off})
		cl.mu.Unlock()
		return
	}
	if k < a.ccap[c] {
		pc.free[c][k] = off
		pc.n[c] = k + 1
		a.unpin(pc)
		return
	}
	var batch [cacheCap]uint32
	half := k / 2
	m := copy(batch[:], pc.free[c][k-half:k])
	pc.free[c][k-half] = off
	pc.n[c] = k - half + 1
	a.unpin(pc)
	if bug(bugFlushLoses) {
		m-- // seeded bug: the flush hands back one slot less than it took out
	}
	cl := &a.classes[c]
	cl.mu.Lock()
	a.put(c, batch[:m])
	cl.mu.Unlock()
}

// countFree counts a free of a size-byte block without recycling its slot.
func (a *Allocator) countFree(c int, size int) {
	pc := a.pin()
	pc.noteFree(c, size)
	a.unpin(pc)
}

// grow carves the next slab of class c (c's central lock held).
func (a *Allocator) grow(c int) error {
	cl := &a.classes[c]
	slab := uint64(1) << classSlabShift[c]
	start := cl.committed.Load()
	if start+slab > uint64(a.classRegion()) {
		return errClassFull
	}
	if err := a.reserve(int64(slabCommit[c])); err != nil {
		return err
	}
	lo := a.classBase(c) + uintptr(start)
	if err := unix.Mprotect(a.mem[lo:lo+slabCommit[c]], unix.PROT_READ|unix.PROT_WRITE); err != nil {
		a.mapped.Add(-int64(slabCommit[c]))
		return mmapErr(err)
	}
	a.asanSlab(c, start) // (hardened: the slab's site records are NORESERVE, backed on first touch)
	cl.newSlab(c)
	cl.committed.Store(start + slab)
	return nil
}

// junk applies Options.JunkFill to the slots take hands out that were
// never used since their pages were committed (header zero: a fresh or
// revived slab), once each, just before their first use: per slot handed
// out rather than per slab carved, since a 1 MiB slab of 144 KiB slots
// filled at once cost fuzz programs that allocate one of them the other
// six.
func (a *Allocator) junk(c int, offs []uint32) {
	if a.opts.JunkFill == 0 {
		return
	}
	w := uint64(a.opts.JunkFill) * 0x0101010101010101
	for _, off := range offs {
		slot := a.slotAt(c, off)
		if loadHeader(slot) == 0 {
			body := unsafe.Add(slot, headerSize)
			redzone.Fill(slice(body, uintptr(classSize[c])), uintptr(body), w) // uninstrumented: the slot is redzone to ASan
		}
	}
}

// reserve accounts n more mapped bytes, failing past Options.Limit.
func (a *Allocator) reserve(n int64) error {
	for {
		cur := a.mapped.Load()
		if a.opts.Limit > 0 && cur+n > a.opts.Limit {
			if a.trimCache(n) {
				continue
			}
			return ErrOutOfMemory
		}
		if a.mapped.CompareAndSwap(cur, cur+n) {
			return nil
		}
	}
}

// finishSmall is where a small block becomes live, on every Alloc path
// of both builds: armSmall publishes the slot just taken from a free list
// (hardened builds verify its free header, arm its canaries and record
// the allocation site first), then the payload is zeroed. It returns the
// payload, or nil if the slot's header showed it was damaged while free
// (reported; the slot is dropped). spilled says the slot was borrowed
// from a larger class than n's.
//
//go:norace
//go:nocheckptr
func (a *Allocator) finishSmall(c int, off uint32, n int, payOff uintptr, seq uint64, spilled bool) []byte {
	slot := a.slotAt(c, off)
	if !a.armSmall(slot, c, off, n, payOff, seq) {
		return nil
	}
	b := unsafe.Slice((*byte)(unsafe.Add(slot, headerSize+payOff)), n)
	if !bug(bugNoZero) && !(spilled && bug(bugSpillNoZero)) {
		clear(b)
	}
	return b
}

// headerReport is the one HeaderCorruption report, for a slot whose
// header word v fails its checksum (Free, Realloc, Alloc, Check, Close).
func (a *Allocator) headerReport(op string, slot unsafe.Pointer, c int, v uint64) *Report {
	return &Report{
		Kind: HeaderCorruption, Op: op, Addr: uintptr(slot), Block: uintptr(slot) + headerSize,
		Size: -1, Class: c, Header: v,
		Detail: "the block header failed its keyed checksum or holds an impossible state; the block is not used again",
	}
}

// Free releases b. Free(nil) is a no-op. Freeing anything but a live block
// from this allocator (again, partially, or from elsewhere) is reported and
// changes nothing.
//
//go:norace
//go:nocheckptr
func (a *Allocator) Free(b []byte) {
	p := unsafe.Pointer(unsafe.SliceData(b))
	if p == nil {
		return
	}
	// Fast path, the same in both builds: a live small block with a good
	// header, freed through the start of its payload (aligned ones too), is
	// released with one compare-and-swap and retired. Anything
	// else (and everything after Close, when no slab is committed any
	// more) takes the general path, which reports.
	if off := uintptr(p) - uintptr(a.base); off < a.regionSize() {
		slot, c, soff, ok := a.locate(off)
		if ok {
			// decode, inlined: allocated, used, this class, the payload
			// where the header says, and the checksum holds.
			const mask = 0x7f<<hdrClsShift | 7<<hdrStShift | hdrUsedBit
			old := loadHeader(slot)
			if old&mask == uint64(c)<<hdrClsShift|uint64(stateAllocated)<<hdrStShift|hdrUsedBit &&
				unsafe.Add(slot, headerSize+uintptr(old>>hdrOffShift&(1<<hdrOffBits-1))*16) == p &&
				old>>hdrSumShift == a.checksum(slot, old) &&
				(freeHook == nil || hookFree(slot)) &&
				(!bug(bugPlainFree) && atomic.CompareAndSwapUint64(hdrWord(slot), old, restate(old, stateFreeing)) ||
					bug(bugPlainFree) && releasePlain(slot, old, stateFreeing)) { // releaseSlot, by hand: over the inlining budget
				// retireSmall, by hand (over the inlining budget).
				asanSlotDead(slot, c)
				if done, _ := a.quarantineSmall("Free", slot, c, soff, old); !done {
					size := int(old & (1<<hdrSizeBits - 1))
					if !a.pushFast(c, soff, size) {
						a.pushSlot(c, soff, size)
					}
				}
				return
			}
		}
	}
	a.free("Free", p)
}

// locate maps a payload pointer inside the class regions to its slot.
// ok is false when p is in no committed slot.
//
//go:norace
//go:nocheckptr
func (a *Allocator) locate(off uintptr) (slot unsafe.Pointer, c int, soff uint32, ok bool) {
	c = int(off>>a.shift) % numClasses
	coff := uint32(off & (a.classRegion() - 1))
	in := coff & (1<<classSlabShift[c] - 1)
	idx := uint32(uint64(in) * uint64(a.divMul[c]) >> 32)
	soff = coff - in + idx*(classSize[c]+headerSize)
	// Beyond the committed slabs, or in a slab's unused tail: no slot.
	ok = uint64(coff) < a.classes[c].committed.Load() && idx < classSlots[c]
	return unsafe.Add(a.base, off-uintptr(coff)+uintptr(soff)), c, soff, ok
}

// free validates p and releases its block. It returns false if it reported.
func (a *Allocator) free(op string, p unsafe.Pointer) bool {
	if a.closed.Load() {
		a.report(&Report{Kind: UseAfterClose, Op: op, Addr: uintptr(p), Size: -1, Class: -1,
			Detail: "the allocator was closed; its memory is gone"})
		return false
	}
	off := uintptr(p) - uintptr(a.base)
	if off >= a.regionSize() {
		if a.zeroContains(uintptr(p)) {
			return a.freeZero(op, p)
		}
		return a.freeLarge(op, p)
	}
	for {
		ref, r := a.validate(op, p, off, DoubleFree, "the block is already free", true)
		if r != nil {
			a.report(r)
			return false
		}
		if freeHook != nil {
			freeHook(ref.slot) // tests: another goroutine acts between the load and the state change
		}
		slot, c, soff, h, old := ref.slot, ref.c, ref.soff, ref.h, ref.old
		if h.state == stateDamaged {
			// Check already reported this block's damage; this Free ends
			// its life. It is withdrawn, never reused.
			if atomic.CompareAndSwapUint64(hdrWord(slot), old, restate(old, stateWithdrawn)) {
				asanSlotDead(slot, c)
				a.countFree(c, h.size)
				return true
			}
			continue
		}
		if a.releaseSlot(slot, old, stateFreeing) {
			return a.retireSmall(op, slot, c, soff, old)
		}
		// Lost a race with another Free/Realloc of the same block: look again.
	}
}

// retireSmall is where a small block dies, on every Free and Realloc
// path of both builds, once releaseSlot has moved its header word old to
// stateFreeing (free in release builds; busy in hardened ones, whose
// quarantineSmall verifies, records, poisons and quarantines it). Release
// builds and unquarantined hardened frees recycle the slot here. It
// returns false if the block was reported (damaged redzones).
//
//go:norace
//go:nocheckptr
func (a *Allocator) retireSmall(op string, slot unsafe.Pointer, c int, soff uint32, old uint64) bool {
	asanSlotDead(slot, c) // before anything can hand it out again
	if done, ok := a.quarantineSmall(op, slot, c, soff, old); done {
		return ok
	}
	size := int(old & (1<<hdrSizeBits - 1))
	if !a.pushFast(c, soff, size) {
		a.pushSlot(c, soff, size)
	}
	return true
}

// smallRef is a pointer into the class regions, located and validated:
// its slot, class and offset, and the header word as loaded and decoded.
type smallRef struct {
	slot unsafe.Pointer
	c    int
	soff uint32
	old  uint64
	h    header
}

// validate is the one classification of a pointer p (at offset off in the
// class regions) that must be the start of a live block, shared by Free
// and Realloc: in no slot, never allocated, a damaged header, withdrawn
// after a report, freed (reported as freed, with detail: DoubleFree for
// Free, UseAfterFree for Realloc), or interior. A block whose redzone
// damage Check already reported (stateDamaged) is live for Free only
// (damagedLive), which ends its life.
func (a *Allocator) validate(op string, p unsafe.Pointer, off uintptr, freed Kind, detail string, damagedLive bool) (smallRef, *Report) {
	slot, c, soff, ok := a.locate(off)
	if !ok {
		return smallRef{}, &Report{Kind: InvalidFree, Op: op, Addr: uintptr(p), Size: -1, Class: c,
			Detail: "the pointer is inside the allocator's address range but in no slot"}
	}
	old := loadHeader(slot)
	h, ok := a.decode(slot, old)
	ref := smallRef{slot: slot, c: c, soff: soff, old: old, h: h}
	pay := unsafe.Add(slot, headerSize+h.off)
	switch {
	case old == 0:
		return ref, &Report{Kind: InvalidFree, Op: op, Addr: uintptr(p), Size: -1, Class: c,
			Detail: "the pointer is in a slot that was never allocated"}
	case !ok:
		return ref, a.headerReport(op, slot, c, old)
	case h.state == stateDamaged && damagedLive && pay == p:
		return ref, nil
	case h.state == stateWithdrawn:
		return ref, a.newReport(InvalidFree, op, p, slot, c, soff, h, "the block was withdrawn from use after an earlier report")
	case h.state != stateAllocated:
		if uintptr(p) < uintptr(pay) || uintptr(p) >= uintptr(pay)+uintptr(max(h.size, 1)) {
			return ref, a.newReport(InvalidFree, op, p, slot, c, soff, h,
				"the pointer is not the start of a block (and the block there is already free)")
		}
		return ref, a.newReport(freed, op, p, slot, c, soff, h, detail)
	case pay != p:
		return ref, a.newReport(InvalidFree, op, p, slot, c, soff, h, "the pointer is not the start of a block (an interior pointer)")
	}
	return ref, nil
}

// freeHook, when set by a test, runs in Free's fast path and in Free and
// Realloc's general path between loading a slot's header and changing its
// state: the window in which a racing Free of the same block must lose
// cleanly.
var freeHook func(slot unsafe.Pointer)

// hookFree runs freeHook in an expression.
func hookFree(slot unsafe.Pointer) bool {
	freeHook(slot)
	return true
}

// releaseSlot moves a slot's header from old (allocated) to state by
// compare-and-swap; false means another goroutine changed it first.
//
//go:norace
//go:nocheckptr
func (a *Allocator) releaseSlot(slot unsafe.Pointer, old uint64, state slotState) bool {
	if bug(bugPlainFree) {
		return releasePlain(slot, old, state)
	}
	return atomic.CompareAndSwapUint64(hdrWord(slot), old, restate(old, state))
}

// releasePlain is the seeded bug BugPlainFree: a load, a compare and a
// store where the state change must be one atomic step.
//
//go:noinline
func releasePlain(slot unsafe.Pointer, old uint64, state slotState) bool {
	if loadHeader(slot) != old {
		return false
	}
	runtime.Gosched() // widen the window the CAS closes
	storeHeader(slot, restate(old, state))
	return true
}

// newReport builds a report about the small block in slot.
func (a *Allocator) newReport(k Kind, op string, addr, slot unsafe.Pointer, c int, soff uint32, h header, detail string) *Report {
	blk := uintptr(slot) + headerSize + h.off
	r := &Report{Kind: k, Op: op, Addr: uintptr(addr), Block: blk, Size: h.size, Class: c,
		Offset: int(uintptr(addr) - blk), Detail: detail}
	if Enabled {
		a.fillSites(r, c, soff)
	}
	return r
}

// Realloc resizes b to n bytes, keeping min(len(b), n) of its bytes, and
// returns the new slice (possibly at the same address), aligned as Alloc
// aligns (Options.MinAlign). Realloc(nil, n) allocates. On error b is
// still valid and unchanged.
func (a *Allocator) Realloc(b []byte, n int) ([]byte, error) {
	return a.realloc("Realloc", b, n, 0)
}

// ReallocAligned is Realloc for a block that must stay aligned to align
// (a power of two no larger than MaxAlign), as AllocAligned's are: it
// resizes in place when b's address already has the alignment, and moves
// the bytes into a new aligned block otherwise.
func (a *Allocator) ReallocAligned(b []byte, n, align int) ([]byte, error) {
	if align <= 0 || align&(align-1) != 0 || align > MaxAlign {
		return nil, &OpError{Op: "ReallocAligned", Size: n, Align: align, Err: ErrAlignment}
	}
	if uintptr(align) <= a.minAlign {
		align = 0
	}
	return a.realloc("ReallocAligned", b, n, align)
}

func (a *Allocator) realloc(op string, b []byte, n, align int) ([]byte, error) {
	p := unsafe.Pointer(unsafe.SliceData(b))
	if p == nil {
		return a.alloc(op, n, align)
	}
	if n < 0 || n > maxAllocSize {
		return nil, &OpError{Op: op, Size: n, Align: align, Err: ErrInvalidSize}
	}
	if a.closed.Load() {
		return nil, &OpError{Op: op, Size: n, Align: align, Err: ErrClosed}
	}
	size, err := a.liveSize(op, p)
	if err != nil {
		return nil, err
	}
	if uintptr(p)&(uintptr(max(align, 1))-1) == 0 {
		if !Enabled && n == size {
			return unsafe.Slice((*byte)(p), n), nil // nothing to do (hardened builds always move)
		}
		if nb, ok := a.reallocInPlace(p, size, n); ok {
			return nb, nil
		}
	}
	nb, err := a.alloc(op, n, align)
	if err != nil {
		return nil, err
	}
	keep := min(len(b), size, n)
	if bug(bugReallocShort) && keep > 0 {
		keep-- // seeded bug
	}
	copy(nb, unsafe.Slice((*byte)(p), keep))
	// If the old block changed state under us (a concurrent Free), free
	// reports it; the caller keeps the new block either way.
	a.free(op, p)
	return nb, nil
}

// UsableSize returns how far b can grow in place: the size Realloc can
// resize it to without moving it (at least len(b)). Release builds resize
// a small block within its slot; hardened builds always move a block on
// Realloc (a moved block catches stale pointers, and canaries never move
// under a Check), so there it is len(b). A b that is not a live block is
// reported, as Realloc would report it.
func (a *Allocator) UsableSize(b []byte) (int, error) {
	p := unsafe.Pointer(unsafe.SliceData(b))
	if p == nil {
		return 0, nil
	}
	if a.closed.Load() {
		return 0, &OpError{Op: "UsableSize", Err: ErrClosed}
	}
	size, err := a.liveSize("UsableSize", p)
	if err != nil || Enabled {
		return size, err
	}
	off := uintptr(p) - uintptr(a.base)
	if off >= a.regionSize() {
		return size, nil // large blocks move on Realloc
	}
	slot, c, _, _ := a.locate(off)
	return int(uintptr(classSize[c]) - (uintptr(p) - uintptr(slot) - headerSize)), nil
}

// liveSize validates p as a live block's start and returns its size. On a
// bad pointer it reports and returns the report as an *Error.
func (a *Allocator) liveSize(op string, p unsafe.Pointer) (int, error) {
	off := uintptr(p) - uintptr(a.base)
	if off >= a.regionSize() {
		if a.zeroContains(uintptr(p)) {
			return a.zeroSize(op, p)
		}
		return a.largeSize(op, p)
	}
	ref, got := a.validate(op, p, off, UseAfterFree, op+" of a block that is already free", false)
	if got == nil {
		return ref.h.size, nil
	}
	a.report(got)
	return 0, &Error{Report: got}
}

// reallocInPlace resizes a small block within its slot when the new size
// still fits with its pads, updating the header by compare-and-swap.
func (a *Allocator) reallocInPlace(p unsafe.Pointer, size, n int) ([]byte, bool) {
	off := uintptr(p) - uintptr(a.base)
	if Enabled || off >= a.regionSize() || n > maxSmall {
		// Hardened builds always move: a moved block catches stale
		// pointers, and canaries never change place under a Check.
		return nil, false
	}
	slot, c, _, _ := a.locate(off)
	old := loadHeader(slot)
	h, ok := a.decode(slot, old)
	if !ok || h.state != stateAllocated {
		return nil, false
	}
	if headerSize+h.off+uintptr(n) > uintptr(classSize[c])+headerSize {
		return nil, false
	}
	// Shrinking far is better served by a smaller class.
	if c > 0 && uintptr(n)+h.off <= uintptr(classSize[c-1])/2 {
		return nil, false
	}
	nh := h
	nh.size = n
	if !atomic.CompareAndSwapUint64(hdrWord(slot), old, a.encode(slot, nh)) {
		return nil, false
	}
	asanSlotLive(slot, c, h.off, n)
	b := unsafe.Slice((*byte)(p), n)
	if n > size {
		clear(b[size:])
	}
	pc := a.pin()
	pc.requested += int64(n - size)
	a.unpin(pc)
	return b, true
}

// QuarantineAlways registers a request size whose size class every
// Allocator created afterwards quarantines on each free in hardened
// builds, whatever Options.QuarantineBytes, and never lends to a smaller
// class: a size whose use after free matters most. Package thread
// registers its launch capsule, the class this project was born from (a
// late mutex write into a freed thread launch capsule).
// Options.AlwaysQuarantine does the same for one allocator.
func QuarantineAlways(n int) {
	registered.Lock()
	registered.sizes = append(registered.sizes, n)
	registered.Unlock()
}

var registered struct {
	sync.Mutex
	sizes []int
}
