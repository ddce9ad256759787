package hardened

import (
	crand "crypto/rand"
	"errors"
	"fmt"
	"math/bits"
	"math/rand/v2"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/hardalloc/hardalloc/internal/ctl"
	"github.com/hardalloc/hardalloc/redzone"
)

// This file is the allocator proper: the Allocator, New and its
// address-space reservation, Alloc and AllocAligned with their fast path,
// the general allocation path and slab growth. A block's birth and death
// are in lifecycle.go, Options in options.go, the per-P caches in
// cache.go, Free in free.go, Realloc in realloc.go.

// Each size class owns 2^shift bytes of address space: 1 GiB
// (maxClassShift) when New can reserve the 89 GiB this takes, less under an
// address-space limit (ulimit -v: see spaceBudget), down to minClassShift; a
// class whose region is full serves its requests as large blocks.
const (
	maxClassShift = 30
	minClassShift = 24
	cacheCap      = 64
)

// classRegion is the address space of one class.
//
//go:norace
func (a *Allocator) classRegion() uintptr { return 1 << a.shift }

// regionSize is the address space of all classes.
//
//go:norace
func (a *Allocator) regionSize() uintptr { return numClasses << a.shift }

// An Allocator hands out off-heap memory. It is safe for concurrent use;
// Close must not race with other calls.
type Allocator struct {
	opts   Options
	x      ctl.Extra // the harness's configuration (package harness), zero for users
	report func(*Report)
	secret uint64
	mkey   uint64 // the header mirrors' key (mirrorOf)

	mem        []byte         // the reservation holding every class region
	base       unsafe.Pointer // &mem[0]
	shift      uint           // log2 of each class region's size
	regionMask uintptr        // each class region's size - 1

	caches []*cache // per P (or, under -race, a locked pool)
	// pinned is caches, indexed by the pinned P's id on the fast paths;
	// empty under the harness's Cache (ctl.Extra), whose choice the slow paths make (pinSpare,
	// popFast and pushFast's fall-back), so the fast paths test nothing
	// more for it.
	pinned []*cache
	spare  *cache // used when GOMAXPROCS grew beyond len(caches)

	classes [numClasses]central
	// loc is what locate needs of each class, with its committed bytes
	// (grow, under the class lock), read without it by Free's validation
	// and Stats: kept apart from the centrals, whose lines their locks
	// bounce between Ps.
	loc  [numClasses]classLoc
	ccap [numClasses]uint8 // per-class cache capacity
	// always marks the classes every free quarantines, even without a
	// budget (hardened builds: Options.AlwaysQuarantine, and the sizes a
	// harness registers, such as package thread's launch capsule). They
	// neither borrow nor lend (spill). Atomic: a size registered later is
	// set while other goroutines free.
	always [numClasses]atomic.Bool

	large largeHeap

	mapped atomic.Int64 // readable bytes mapped: committed slabs and large blocks
	// handed has bit c set once class c hands a slot out of its central
	// list, cleared by Reset: walks and Reset visit only those classes.
	handed [(numClasses + 63) / 64]atomic.Uint64
	closed atomic.Bool
	holds  sync.WaitGroup // Hold: users Close waits for

	rng *rand.ChaCha8 // used only while New and Reset run

	minAlign uintptr // Options.MinAlign, at least 16

	id       uint64   // the allocator's number in the record book
	rangeIdx int      // its class reservation's range in the record book
	samp     *sampler // Options.SampleRate's pool, nil when off
	//lint:ignore U1000 release builds only (harden0.go)
	largeSeq atomic.Uint64 // release builds: the sequence numbers of large blocks' sites

	// fresh, with ctl.Extra.JunkFill, has a bit per slab of each class whose
	// pages came zero from the OS (carved, or revived after a purge) and
	// are still unused since; junk dirties only those (Reset's slabs keep
	// their old bytes). Atomic: junk reads it without the class lock.
	fresh [numClasses][]atomic.Uint64

	audit [2]auditList // Audit's scratch: the cached and the queued slots

	//lint:ignore U1000 nil without -asan (asan0.go)
	closing *closedAlloc // -asan builds: what Close keeps of it (asan.go)

	//lint:ignore U1000 empty in release builds (harden0.go)
	hardAlloc // the hardening layer's state
}

// New maps the address-space reservation for the size classes (PROT_NONE,
// nothing committed) and returns a ready allocator.
func New(opts Options) (*Allocator, error) { return newWith(opts, ctl.Extra{}) }

// newWith is New with the configuration only harnesses give (package
// harness).
func newWith(opts Options, x ctl.Extra) (*Allocator, error) {
	if opts.MinAlign != 0 && !validAlign(opts.MinAlign) {
		return nil, &OpError{Op: "New", Align: opts.MinAlign, Err: ErrAlignment}
	}
	a := &Allocator{opts: opts, x: x, id: newAllocatorID()}
	var seed [32]byte
	if opts.Seed != 0 {
		seed = seedBytes(opts.Seed)
	} else if _, err := crand.Read(seed[:]); err != nil {
		return nil, err
	}
	a.rng = rand.NewChaCha8(seed)
	a.secret, a.mkey = a.rng.Uint64(), a.rng.Uint64()

	n := max(runtime.GOMAXPROCS(0), runtime.NumCPU())
	all := make([]*cache, n+1) // the caches, then the spare (allCaches)
	for i := range n {
		all[i] = &cache{cacheHard: newCacheHard(i)}
	}
	all[n] = &cache{shared: true, cacheHard: newCacheHard(n)}
	a.caches, a.spare = all[:n], all[n]
	a.initLoc()
	for c := range numClasses {
		stride := classSize[c] + headerSize
		a.ccap[c] = uint8(min(cacheCap, max(2, cacheBytes/stride)))
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
	a.configure()
	a.large.init()
	if err := a.initSampler(); err != nil {
		a.closeHardened()
		unix.Munmap(a.mem)
		return nil, &OpError{Op: "New", Err: err}
	}
	a.seedTicks()
	a.rangeIdx = bookAddRange(a.id, uintptr(a.base), uintptr(a.base)+a.regionSize(), rangeClasses)
	meta, metaStart, depot := a.siteRecords()
	bookSetClasses(a.rangeIdx, a.shift, meta, metaStart, depot)
	asanRegister(a)
	return a, nil
}

// configure applies the options New and resetWith share, those that
// shape no mapping: the report handler, MinAlign, Cache and JunkFill's
// bookkeeping (the hardening layer's in initHardened and
// reconfigureHardened).
func (a *Allocator) configure() {
	opts := a.opts
	handler := opts.OnReport
	if handler == nil {
		handler = func(r *Report) {
			a.print(r.String())
			panic(&Error{Report: r})
		}
	}
	a.report = func(r *Report) {
		// The call that caught the bug (a second Free, a Realloc, Check)
		// is part of the report, as ASan's "freed by thread T0 here"
		// beside "previously freed by": not only in the default
		// handler's panic trace. Leaks and faults have their own.
		if r.Kind != Leak && r.Op != "fault" && len(r.Caught.Stack) == 0 {
			r.Caught = a.caught()
		}
		handler(r)
	}
	a.minAlign = uintptr(max(opts.MinAlign, 16))
	a.pinned = nil
	if a.x.Cache == nil {
		a.pinned = a.caches
	}
	for _, pc := range a.caches {
		pc.shared = a.x.Cache != nil // locked by pinChosen, unlocked by unpin
	}
	if a.x.JunkFill != 0 && a.fresh[0] == nil {
		for c := range numClasses {
			a.fresh[c] = make([]atomic.Uint64, (a.classRegion()>>classSlabShift[c]+63)/64)
		}
	}
}

// reserveSpace maps the PROT_NONE reservation of the class regions (and,
// hardened, the site records sized by it), halving each region's size
// until the reservation fits under an address-space limit.
func (a *Allocator) reserveSpace() error {
	a.shift = maxClassShift
	if cs := a.x.ClassSpace; cs != 0 {
		if cs&(cs-1) != 0 || cs < 1<<minClassShift || cs > 1<<maxClassShift {
			return &OpError{Op: "New", Err: fmt.Errorf("ClassSpace %d is not a power of two from 16 MiB to 1 GiB", cs)}
		}
		a.shift = uint(bits.TrailingZeros64(uint64(cs)))
	}
	budget := spaceBudget()
	for ; ; a.shift = max(a.shift-2, minClassShift) {
		if a.shift > minClassShift && a.regionSize()+hardenedSpace(a.shift) > budget {
			continue
		}
		mem, err := unix.Mmap(-1, 0, int(a.regionSize()), unix.PROT_NONE,
			unix.MAP_PRIVATE|unix.MAP_ANONYMOUS|unix.MAP_NORESERVE)
		if err == nil {
			a.mem, a.base = mem, unsafe.Pointer(&mem[0])
			a.regionMask = a.classRegion() - 1
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

// spaceBudget is the most address space New reserves: half of what an
// address-space limit (RLIMIT_AS) leaves this process, so that the Go heap,
// goroutine stacks and cgo keep the other half. A reservation that took all
// of it would fit, and the process would die later in the runtime's own
// "out of memory" on a 4 MiB heap growth.
func spaceBudget() uintptr {
	var lim unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_AS, &lim); err != nil || lim.Cur == unix.RLIM_INFINITY {
		return ^uintptr(0)
	}
	used := uint64(0)
	if b, err := os.ReadFile("/proc/self/statm"); err == nil {
		if f := strings.Fields(string(b)); len(f) > 0 {
			if pages, err := strconv.ParseUint(f[0], 10, 64); err == nil {
				used = pages * uint64(os.Getpagesize())
			}
		}
	}
	if used >= lim.Cur {
		return 0
	}
	return uintptr((lim.Cur - used) / 2)
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
func (a *Allocator) slotAt(c int, off uint32) unsafe.Pointer {
	return unsafe.Add(a.base, a.classBase(c)+uintptr(off))
}

// Alloc returns n zeroed bytes with len == cap == n. Alloc(0) returns a
// distinct, freeable, empty slice.
//
// Never inlined: its fast path hands its own frame record (frame) to the
// site's stack walk, which must start at the caller's call.
//
//go:noinline
//go:norace
//go:nocheckptr
func (a *Allocator) Alloc(n int) ([]byte, error) {
	// Fast path: a non-empty request whose slot (with the hardened
	// redzones: pads) is small, from this P's cache, born as on the
	// general path. After Close the caches are empty, so it falls through
	// to the checks. Release builds first try the same path inlined.
	if releaseFast && n > 0 && n <= maxSmall && a.minAlign == 16 {
		// Release builds: the fast path below (popFast, then smallBorn,
		// whose hooks are empty here but armSmall's JunkFill) in this one
		// frame, the pin the only call. The two calls it saves were
		// 10-14% of the release pair at 16-256 B.
		c := sizeClass(uintptr(n))
		pid := procPin()
		if uint(pid) < uint(len(a.pinned)) {
			pc := a.pinned[pid]
			if off, ok := pc.pop(c, n); ok {
				procUnpin()
				slot := a.slotAt(c, off)
				// armSmall, inlined: the free word verified by its mirror,
				// and the harnesses' JunkFill.
				old := loadHeader(slot)
				if !a.freeWordOK(slot, old) {
					a.freeHeaderDamaged(slot, c, off, old)
					return a.alloc("Alloc", n, 0) // the slot was reported and dropped
				}
				if old == 0 && a.x.JunkFill != 0 {
					a.junkPayload(slot, c, off, 0, n)
				}
				v := uint64(n) | uint64(c)<<hdrClsShift | uint64(stateAllocated)<<hdrStShift | hdrUsedBit
				if (old^v)&(1<<hdrSumShift-1)&^(7<<hdrStShift) == 0 {
					// As in smallBorn; the mirror holds this word already.
					publish(slot, old^freeToLive)
				} else {
					a.publishLive(slot, v|a.checksum(slot, v)<<hdrSumShift)
				}
				b := slice(unsafe.Add(slot, headerSize), uintptr(n))
				clear(b)
				return b, nil
			}
			pc.tick++ // pop counted this request down; the path below counts it again
		}
		procUnpin()
	}
	front, rear := a.pads()
	slack := int(a.minAlign) - 16 // Options.MinAlign: the most alignment padding a slot needs
	if n > 0 && n <= maxSmall-front-rear-slack {
		c := sizeClass(uintptr(front + slack + n + rear))
		if off, seq, ok := a.popFast(c, n); ok {
			payOff := uintptr(front)
			if slack > 0 {
				slot := a.slotAt(c, off)
				payOff = alignUp(uintptr(slot)+headerSize+payOff, a.minAlign) - uintptr(slot) - headerSize
			}
			if b := a.smallBorn(c, off, n, payOff, seq, false, frame()); b != nil {
				return b, nil
			}
		} else if seq == seqSample && a.sampleable(n, 0) {
			if b := a.allocSampled(n); b != nil {
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
	if !validAlign(align) {
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
	if n == 0 {
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
			if err == errSampleDue {
				if a.sampleable(n, align) {
					if b := a.allocSampled(n); b != nil {
						return b, nil
					}
				}
				continue // the countdown restarted: the next pop takes a slot
			}
			if err != nil {
				if errors.Is(err, errClassFull) {
					break // fall back to a large block
				}
				return nil, &OpError{Op: op, Size: n, Align: align, Err: err}
			}
			slot := a.slotAt(d, off)
			payOff := alignUp(uintptr(slot)+headerSize+uintptr(front), uintptr(align)) - uintptr(slot) - headerSize
			if b := a.smallBorn(d, off, n, payOff, seq, d != c, nil); b != nil {
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

// hold registers a user of the allocator's memory that runs on its own,
// such as package thread's workers, which touch their launch capsule after
// the owner has let go: Close waits until every hold is released, so it
// never unmaps memory under a running goroutine. release may be called
// more than once; only the first call counts.
func (a *Allocator) hold() (release func()) {
	a.holds.Add(1)
	return sync.OnceFunc(a.holds.Done)
}

// maxAllocSize bounds requests so that size arithmetic cannot overflow.
const maxAllocSize = 1<<47 - 1

func alignUp(x, a uintptr) uintptr { return (x + a - 1) &^ (a - 1) }

// validAlign reports whether align is an alignment the allocator takes:
// a positive power of two no larger than MaxAlign.
func validAlign(align int) bool { return align > 0 && align&(align-1) == 0 && align <= MaxAlign }

// grow carves the next slab of class c (c's central lock held).
func (a *Allocator) grow(c int) error {
	cl := &a.classes[c]
	slab := uintptr(1) << classSlabShift[c]
	start := a.loc[c].committed.Load()
	if start+slab > a.classRegion() {
		return errClassFull
	}
	if err := a.reserve(int64(slabCommit[c])); err != nil {
		return err
	}
	if err := unix.Mprotect(a.slabMem(c, len(cl.slabs)), unix.PROT_READ|unix.PROT_WRITE); err != nil {
		a.mapped.Add(-int64(slabCommit[c]))
		return mmapErr(err)
	}
	a.asanSlab(c, uint64(start)) // (hardened: the slab's site records are NORESERVE, backed on first touch)
	a.setFresh(c, len(cl.slabs), true)
	cl.newSlab(c)
	a.loc[c].committed.Store(start + slab)
	return nil
}

// junkPayload applies ctl.Extra.JunkFill (fillJunk: its head and tail) to
// the n-byte payload at payOff of a never-used slot (header zero: the
// caller has read it) of class c about to be handed out, if its slab's
// pages came zero from the OS: pages fresh from the OS are zero, which
// would hide an Alloc that forgets to zero. At handout, the one slot the
// Alloc takes (armSmall, every build), not after Reset, whose slabs keep
// their old bytes (junking every first use after a Reset cost fuzzing
// 15%), and not at take: junking the never-used slots of every refill,
// most of them never handed out before the next Reset, faulted in pages
// no program used (22 us of a 160 us FuzzAllocFree exec in release
// builds, against 4 us so).
func (a *Allocator) junkPayload(slot unsafe.Pointer, c int, soff uint32, payOff uintptr, n int) {
	if !a.freshSlab(c, soff) {
		return
	}
	fillJunk(unsafe.Add(slot, headerSize+payOff), uintptr(n), uint64(a.x.JunkFill)*0x0101010101010101)
}

// fillJunk fills the first junkHead and last junkTail of the n bytes at
// p (all of them if there are fewer) with w: where every payload starts
// and most end, so a block not zeroed, or zeroed short at either end,
// shows junk. Uninstrumented: the bytes are not live to ASan.
func fillJunk(p unsafe.Pointer, n uintptr, w uint64) {
	if n <= junkHead+junkTail {
		redzone.Fill(slice(p, n), uintptr(p), w)
		return
	}
	redzone.Fill(slice(p, junkHead), uintptr(p), w)
	tail := unsafe.Add(p, n-junkTail)
	redzone.Fill(slice(tail, junkTail), uintptr(tail), w)
}

// junkHead and junkTail bound what fillJunk fills.
const (
	junkHead = 512
	junkTail = 64
)

// freshSlab reports whether the slab holding class c's slot off holds
// pages fresh from the OS, untouched since (JunkFill only).
func (a *Allocator) freshSlab(c int, off uint32) bool {
	s, _ := a.slabIndex(c, off)
	return a.fresh[c][s/64].Load()>>(s%64)&1 != 0
}

// setFresh marks slab s of class c as holding pages fresh from the OS, or
// not (JunkFill only).
func (a *Allocator) setFresh(c, s int, fresh bool) {
	if a.fresh[c] == nil {
		return
	}
	if fresh {
		a.fresh[c][s/64].Or(1 << (s % 64))
	} else {
		a.fresh[c][s/64].And(^uint64(1 << (s % 64)))
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

// headerReport is the one HeaderCorruption report, for a slot whose
// header word v fails its checksum (Free, Realloc, Alloc, Check, Close).
func (a *Allocator) headerReport(op string, slot unsafe.Pointer, c int, v uint64) *Report {
	return &Report{
		Kind: HeaderCorruption, Op: op, Addr: uintptr(slot), Block: uintptr(slot) + headerSize,
		Size: -1, Class: c, Header: v,
		Detail: "the block header failed its keyed checksum or holds an impossible state; the block is not used again",
	}
}
