//go:build hardened && !asan

package hardened

import (
	"runtime"
	"runtime/pprof"
	"strings"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/hardalloc/hardalloc/quarantine"
	"github.com/hardalloc/hardalloc/redzone"
)

// This file is the hub of the hardening layer, compiled only with -tags
// hardened: its state (hardState, embedded through hardAlloc and
// cacheHard), its set-up, Reset and Close, and the live-block profile.
// harden0.go holds the same entry points as empty stubs for release
// builds (internal/race's race.go and norace.go), so shared code calls
// them without a gate and a release build compiles them away. The layer's
// subsystems have a file each:
//
//	harden_small.go       arming, verifying, poisoning small blocks
//	harden_quarantine.go  per-P batches, the shared quarantine, eviction
//	harden_sites.go       allocation and free sites, sequence numbers, stack depot
//	harden_large.go       large blocks' canaries and quarantine
//	harden_zero.go        the zero-size region
//	harden_meta.go        the metadata guard (Options.ProtectMetadata)
//
// Allocation and free sites live out of band, in a metadata region that
// Options.ProtectMetadata keeps read-only outside allocator calls.

// hardAlloc and cacheHard are embedded in Allocator and cache: the
// hardening layer's state, empty structs in release builds (harden0.go).
type hardAlloc struct {
	h *hardState
}

type cacheHard struct {
	// Freed blocks on their way to the quarantine, pushed there in
	// batches (FIFO order kept).
	qpend  [qBatch]quarantine.Item
	qn     int
	qbytes int64
	qi     int // this cache's quarantine shard
	// This P's batch of sequence numbers, [seq, seqEnd).
	seq, seqEnd uint64
}

func newCacheHard(shard int) cacheHard { return cacheHard{qi: shard} }

// resetHard empties the P's batch of frees (Reset cleared their headers)
// and its sequence numbers; the batch's items past qn are never read, so
// they are left as they are.
func (pc *cache) resetHard() { pc.qn, pc.qbytes, pc.seq, pc.seqEnd = 0, 0, 0, 0 }

// hardState is the hardening layer's state.
type hardState struct {
	front, rear int // redzone bytes before and (at least) after the payload
	canaryKey   uint64
	poisonKey   uint64
	pendCap     int64 // bytes of freed blocks each P batches before the quarantine
	// noBudget is set when the quarantine budget is zero: frees of
	// classes other than Allocator.always skip the quarantine altogether.
	noBudget bool
	depth    int // stack frames to record; 0 = none
	slop     int // frames recorded beyond depth, dropped as the allocator's own or Options.Wrappers'

	depot depot

	meta      []byte // site records, one per slot, per class
	metaStart [numClasses]uintptr
	guard     metaGuard

	q           *quarantine.Shards // one shard per cache (cache.qi), one budget
	largeBudget int64              // address-space budget of the large-block quarantine

	zero zeroRegion

	profile *pprof.Profile // live blocks, if Options.ProfileName is set

	// seq is where the next batch of sequence numbers starts (nextSeq):
	// its own cache line, so it does not drag the read-mostly keys above
	// into the contention.
	_   [64]byte
	seq atomic.Uint64
	_   [56]byte
}

// sites applies the options that shape the recorded sites: StackDepth
// and Wrappers (New, resetWith).
func (h *hardState) sites(opts Options) {
	h.depth = 16
	switch {
	case opts.StackDepth < 0:
		h.depth = 0
	case opts.StackDepth > 0:
		h.depth = min(opts.StackDepth, 64)
	}
	h.slop = stackSlop
	if len(opts.Wrappers) > 0 {
		h.slop += wrapperSlop
	}
}

// metaLayout lays out the site records of every class at class region size
// 1<<shift, storing where each class's records start in start, and returns
// their total size.
func metaLayout(shift uint, start *[numClasses]uintptr) uintptr {
	var total uintptr
	for c := range numClasses {
		start[c] = total
		slots := uintptr(1<<shift>>classSlabShift[c]) * uintptr(classSlots[c])
		total += alignUp(slots*recSize, pageSize)
	}
	return total
}

// hardenedSpace is the address space initHardened maps at class region
// size 1<<shift: the site records and the zero region.
func hardenedSpace(shift uint) uintptr {
	var start [numClasses]uintptr
	return metaLayout(shift, &start) + zeroRegionSize
}

// reconfigureHardened applies resetWith's new options to the hardening
// layer.
func (a *Allocator) reconfigureHardened() { a.h.sites(a.opts) }

func (a *Allocator) initHardened() error {
	h := &hardState{
		front:     redzone.Round(a.opts.Redzone),
		canaryKey: a.rng.Uint64(),
		poisonKey: a.rng.Uint64(),
		depth:     16,
	}
	h.rear = h.front
	h.sites(a.opts)
	total := metaLayout(a.shift, &h.metaStart)
	prot := unix.PROT_READ | unix.PROT_WRITE
	if a.opts.ProtectMetadata {
		prot = unix.PROT_READ
	}
	meta, err := unix.Mmap(-1, 0, int(total), prot, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS|unix.MAP_NORESERVE)
	if err != nil {
		return &OpError{Op: "New", Err: mmapErr(err)}
	}
	h.meta = meta
	h.guard.init(meta, a.opts.ProtectMetadata)
	budget := a.quarantineBudget()
	h.pendCap = a.pendCap(budget)
	if asanEnabled {
		// ASan's shadow catches a freed block at the access for as long
		// as the block waits, and an -asan build defends against bugs,
		// not attackers: a FIFO quarantine gives every block the whole
		// budget of later frees before reuse (the random arrays release
		// some sooner) and costs less per free.
		h.q = quarantine.NewShardsFIFO(len(a.caches)+1, numClasses, a.sharedQuarantineBudget(h.pendCap))
	} else {
		h.q = quarantine.NewShards(len(a.caches)+1, numClasses, a.sharedQuarantineBudget(h.pendCap), a.rng.Uint64())
	}
	h.noBudget = budget <= 0
	h.largeBudget = max(budget*4, 64<<20)
	if err := h.zero.init(); err != nil {
		unix.Munmap(meta)
		return &OpError{Op: "New", Err: mmapErr(err)}
	}
	h.zero.rangeIdx = bookAddRange(a.id, uintptr(unsafe.Pointer(&h.zero.mem[0])), uintptr(unsafe.Pointer(&h.zero.mem[0]))+zeroRegionSize, rangeZero)
	if a.opts.ProfileName != "" {
		p, err := takeProfile(a.opts.ProfileName)
		if err != nil {
			unix.Munmap(meta)
			unix.Munmap(h.zero.mem)
			return &OpError{Op: "New", Err: err}
		}
		h.profile = p
	}
	a.h = h
	for _, n := range a.opts.AlwaysQuarantine {
		a.alwaysQuarantine(n)
	}
	return nil
}

// profileAdd and profileRemove keep the live-block profile, if any.
//
//go:noinline
func (a *Allocator) profileAdd(p uintptr) {
	if a.h.profile != nil {
		a.h.profile.Add(p, 1+ownFrames()) // 1: Add itself
	}
}

// ownFrames counts this package's frames from its caller up, so that a
// profile's stacks start at the code that called the allocator (the
// depth differs between the small, large and zero-size paths).
//
//go:noinline
func ownFrames() int {
	var pcs [32]uintptr
	n := runtime.Callers(2, pcs[:]) // from ownFrames' caller
	fr := runtime.CallersFrames(pcs[:n])
	k := 0
	for {
		f, more := fr.Next()
		if !strings.HasPrefix(f.Function, pkgPath+".") {
			return k
		}
		k++
		if !more {
			return k
		}
	}
}

func (a *Allocator) profileRemove(p uintptr) {
	if a.h.profile != nil {
		a.h.profile.Remove(p)
	}
}

func (a *Allocator) closeHardened() {
	if a.h.profile != nil {
		releaseProfile(a.opts.ProfileName)
	}
	unix.Munmap(a.h.meta)
	asanUnmap(a.h.zero.mem[:a.h.zero.next])
	unix.Munmap(a.h.zero.mem)
	bookCloseRange(a.h.zero.rangeIdx)
}

// pads returns the front and minimum rear redzone sizes.
func (a *Allocator) pads() (front, rear int) { return a.h.front, a.h.rear }

// explainHardened explains an address in the hardening layer's own
// mappings: the site records and the zero-size region.
func (a *Allocator) explainHardened(addr uintptr) *Report {
	h := a.h
	mb := uintptr(unsafe.Pointer(&h.meta[0]))
	if addr-mb < uintptr(len(h.meta)) {
		return &Report{Kind: MetadataWrite, Op: "fault", Addr: addr, Size: -1, Class: -1,
			Detail: "an access to the allocator's protected metadata (allocation and free sites)"}
	}
	if h.zero.contains(addr) {
		return a.explainZero(addr)
	}
	return nil
}

func (a *Allocator) resetHardened() {
	h := a.h
	h.canaryKey = a.rng.Uint64()
	h.poisonKey = a.rng.Uint64()
	h.seq.Store(0)
	h.q.Reset(a.sharedQuarantineBudget(h.pendCap), a.rng.Uint64())
	z := &h.zero
	z.mu.Lock()
	z.next, z.freed = 0, nil
	clear(z.live)
	z.mu.Unlock()
}

// patterns says whether the layer writes and checks its byte patterns:
// canaries in the redzones and poison in freed blocks. Under -asan it
// does not: the shadow marks the same bytes (redzones, freed and
// quarantined blocks), so ASan stops an instrumented access there at the
// access, with its stack, where a pattern shows the damage only at the
// next Free, Check or eviction, and costs nothing per block. What the
// shadow cannot see are writes ASan does not instrument (assembly, C
// built without -fsanitize=address, the kernel): those the patterns of
// plain hardened builds catch. The redzones stay (the shadow poisons
// them), and so do the sites, the quarantine and the header checks.
const patterns = !asanEnabled

// hardening is true: this build has the hardening layer.
const hardening = true

// cacheBytes is about what each P's cache holds of one class (in slots,
// from 2 to cacheCap): twice release builds', so that the blocks one
// quarantine batch evicts at once (up to pendCap, 32 KiB, all into this
// P's cache) fit beside the half a flush leaves. With release builds'
// 32 KiB, a P freeing 4 KiB blocks flushed to the central list and
// refilled from it, under its lock, about once a batch: the 4 KiB pair
// ran 9% slower on one goroutine and scaled 1.52x on two, 1.64x so.
const cacheBytes = 64 << 10

// inPlace is Realloc's resize within the slot: hardened builds always
// move a block, so that a moved block catches stale pointers and canaries
// never change place under a Check.
func (a *Allocator) inPlace(p unsafe.Pointer, size, n int) ([]byte, bool) { return nil, false }

// usable is UsableSize for a live size-byte block: Realloc always moves,
// so it can grow in place by nothing.
func (a *Allocator) usable(p unsafe.Pointer, size int) int { return size }

// quarantineHolds reports whether freed blocks may wait in quarantine,
// which a class at its Limit takes back (drainQuarantine) before failing.
func (a *Allocator) quarantineHolds() bool { return true }
