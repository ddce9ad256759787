//go:build hardened

package hardened

import (
	"fmt"
	"math/bits"
	"runtime"
	"runtime/pprof"
	"strings"
	"sync"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/hardalloc/hardalloc/quarantine"
	"github.com/hardalloc/hardalloc/redzone"
)

// This file is the hardening layer, compiled only with -tags hardened;
// harden0.go holds the same entry points as empty stubs for release
// builds (internal/race's race.go and norace.go), so shared code calls
// them without a gate and a release build compiles them away.
//
// Small slot layout in hardened builds:
//
//	| header 16 | front redzone (+ alignment slack) | payload n | rear redzone ... slot end |
//
// Both redzones hold the block's keyed canary; the rear one runs to the
// end of the slot, so an overflow of one byte past n is caught. On Free
// the canaries are verified, the first free site is recorded, the whole
// slot body is filled with keyed poison and the slot enters the
// quarantine; when it leaves, the poison is verified (WriteAfterFree).
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

func (pc *cache) shard() int { return pc.qi }

// qBatch is the most freed blocks a P batches for the quarantine.
const qBatch = 32

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
	depot    depot

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

// siteRec is one slot's diagnostics, out of band. Its size is a power of
// two (one cache line), so no record straddles a page: the metadata guard
// opens exactly one page per write.
type siteRec struct {
	allocSeq, allocG uint64
	freeSeq, freeG   uint64
	allocStack       uint32
	freeStack        uint32
	_                [24]byte
}

// A record size that does not divide the page size would let records
// straddle pages.
var _ [0]struct{} = [unsafe.Sizeof(siteRec{}) & (unsafe.Sizeof(siteRec{}) - 1)]struct{}{}

const (
	recSize   = unsafe.Sizeof(siteRec{})
	stackSlop = 6 // frames inside this package above the caller
)

func (a *Allocator) initHardened() error {
	h := &hardState{
		front:     redzone.Round(a.opts.Redzone),
		canaryKey: a.rng.Uint64(),
		poisonKey: a.rng.Uint64(),
		depth:     16,
	}
	h.rear = h.front
	switch {
	case a.opts.StackDepth < 0:
		h.depth = 0
	case a.opts.StackDepth > 0:
		h.depth = min(a.opts.StackDepth, 64)
	}
	var total uintptr
	for c := range numClasses {
		h.metaStart[c] = total
		slots := uintptr(a.classRegion()>>classSlabShift[c]) * uintptr(classSlots[c])
		total += alignUp(slots*recSize, pageSize)
	}
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
	h.q = quarantine.NewShards(len(a.caches)+1, numClasses, a.sharedQuarantineBudget(h.pendCap), a.rng.Uint64())
	h.noBudget = budget <= 0
	always := func(c int) {
		h.q.SetAlways(c)
		a.always[c] = true
	}
	for _, n := range a.alwaysSizes() {
		if n >= 0 && n+h.front+h.rear <= maxSmall {
			always(sizeClass(uintptr(n + h.front + h.rear)))
		}
	}
	h.largeBudget = max(budget*4, 64<<20)
	if err := h.zero.init(); err != nil {
		unix.Munmap(meta)
		return &OpError{Op: "New", Err: mmapErr(err)}
	}
	if a.opts.ProfileName != "" {
		if pprof.Lookup(a.opts.ProfileName) != nil {
			unix.Munmap(meta)
			unix.Munmap(h.zero.mem)
			return &OpError{Op: "New", Err: fmt.Errorf("pprof profile %q already exists", a.opts.ProfileName)}
		}
		h.profile = pprof.NewProfile(a.opts.ProfileName)
	}
	a.h = h
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

// quarantineBudget is Options.QuarantineBytes with its default applied.
func (a *Allocator) quarantineBudget() int64 {
	if a.opts.QuarantineBytes == 0 {
		return 4 << 20
	}
	return a.opts.QuarantineBytes
}

func (a *Allocator) closeHardened() {
	unix.Munmap(a.h.meta)
	asanUnmap(a.h.zero.mem[:a.h.zero.next])
	unix.Munmap(a.h.zero.mem)
}

// pads returns the front and minimum rear redzone sizes.
func (a *Allocator) pads() (front, rear int) { return a.h.front, a.h.rear }

// allocSeq takes the sequence number of an allocation from slot off of
// class c, under pc's pin: after the slot's last free.
func (a *Allocator) allocSeq(pc *cache, c int, off uint32) uint64 {
	return a.takeSeq(pc, a.rec(c, off).freeSeq)
}

func (a *Allocator) rec(c int, soff uint32) *siteRec {
	slab := uintptr(soff) >> classSlabShift[c]
	in := uintptr(soff) & (uintptr(1)<<classSlabShift[c] - 1)
	idx := uintptr(uint32(uint64(in) * uint64(a.divMul[c]) >> 32))
	i := slab*uintptr(classSlots[c]) + idx
	return (*siteRec)(unsafe.Add(unsafe.Pointer(&a.h.meta[0]), a.h.metaStart[c]+i*recSize))
}

// site captures the current goroutine, a sequence number greater than
// after (the block's previous event, so a block's history reads in order)
// and the stack.
func (a *Allocator) site(after uint64) (g, seq uint64, stack uint32) {
	seq = a.nextSeq(after)
	g, stack = a.who()
	return
}

// who captures the current goroutine and stack, the parts of a site that
// need no P (interning a stack may take a lock).
func (a *Allocator) who() (g uint64, stack uint32) {
	h := a.h
	g = goid()
	if h.depth > 0 {
		var pcs [64 + stackSlop]uintptr
		n := callers(0, pcs[:h.depth+stackSlop]) // own frames are dropped by depot.get
		stack = h.depot.intern(pcs[:n])
	}
	return
}

// seqBatch is how many sequence numbers a P takes from the shared counter
// at a time: one atomic add per seqBatch operations instead of per
// operation (on this project's VMs an uncontended atomic add costs about
// as much as a whole release Alloc, and contended it was a third of a
// hardened pair in parallel).
const seqBatch = 256

// nextSeq returns a sequence number greater than after, unique in this
// allocator. Each P hands out numbers from a batch it took from the shared
// counter, so numbers from different Ps interleave only to within a
// batch; but every number ever handed out was taken from the counter, so
// a fresh batch starts above any number seen before, and a block's free
// is numbered after its allocation even when another P allocated it.
func (a *Allocator) nextSeq(after uint64) uint64 {
	pc := a.pin()
	s := a.takeSeq(pc, after)
	a.unpin(pc)
	return s
}

// takeSeq is nextSeq for a caller that has pinned pc already.
func (a *Allocator) takeSeq(pc *cache, after uint64) uint64 {
	s := pc.seq
	if s >= pc.seqEnd || s <= after {
		end := a.h.seq.Add(seqBatch)
		s, pc.seqEnd = end-seqBatch+1, end+1
	}
	pc.seq = s + 1
	return s
}

func (a *Allocator) siteOf(g, seq uint64, stack uint32) Site {
	return Site{Goroutine: g, Seq: seq, Stack: a.h.depot.get(stack), depth: a.h.depth}
}

func (a *Allocator) fillSites(r *Report, c int, soff uint32) {
	rec := a.rec(c, soff)
	if rec.allocSeq != 0 {
		r.Alloc = a.siteOf(rec.allocG, rec.allocSeq, rec.allocStack)
	}
	if rec.freeSeq != 0 {
		r.Free = a.siteOf(rec.freeG, rec.freeSeq, rec.freeStack)
	}
}

// armSmall verifies the header of a free slot about to be handed out (an
// overflow into a free neighbour shows there), fills both redzones with
// the canary, records the allocation site, then publishes the header:
// canaries go in before the header says "allocated", so a concurrent
// Check never sees a half-armed block. finishSmall zeroes the payload.
func (a *Allocator) armSmall(slot unsafe.Pointer, c int, soff uint32, n int, payOff uintptr, seq uint64) bool {
	if old := loadHeader(slot); old != 0 {
		h, ok := a.decode(slot, old)
		if ok && h.state == stateWithdrawn {
			return false // reported when it was withdrawn
		}
		if !ok || h.state != stateFree {
			a.reportHeader("Alloc", slot, c, old)
			return false
		}
	}
	h := a.h
	body := unsafe.Add(slot, headerSize)
	end := uintptr(classSize[c])
	w := redzone.Canary(h.canaryKey, uintptr(slot))
	redzone.Fill(slice(body, payOff), uintptr(body), w)
	p := unsafe.Add(body, payOff)
	rear := unsafe.Add(p, n)
	redzone.FillRear(slice(rear, end-payOff-uintptr(n)), uintptr(rear), w)

	rec := a.rec(c, soff)
	if seq == 0 { // not taken when the slot was popped (slow paths)
		seq = a.nextSeq(rec.freeSeq)
	}
	g, st := a.who()
	if h.guard.on {
		closeMeta := h.guard.open(unsafe.Pointer(rec))
		*rec = siteRec{allocSeq: seq, allocG: g, allocStack: st}
		closeMeta()
	} else {
		*rec = siteRec{allocSeq: seq, allocG: g, allocStack: st}
	}

	storeRelease(hdrWord(slot), a.encode(slot, header{size: n, off: payOff, class: c, state: stateAllocated}))
	asanSlotLive(slot, c, payOff, n)
	if h.profile != nil {
		a.profileAdd(uintptr(p))
	}
	return true
}

// verifyCanaries checks both redzones of an allocated small block.
func (a *Allocator) verifyCanaries(op string, slot unsafe.Pointer, c int, soff uint32, hd header) *Report {
	body := unsafe.Add(slot, headerSize)
	w := redzone.Canary(a.h.canaryKey, uintptr(slot))
	pay := unsafe.Add(body, hd.off)
	if bug(bugCanarySkip) && c == 5 {
		return nil // seeded bug: one size class's canaries are never checked
	}
	if i := redzone.Verify(slice(body, hd.off), uintptr(body), w); i >= 0 {
		bad := unsafe.Add(body, i)
		return a.damage(Underflow, op, bad, slot, c, soff, hd, w, int(hd.off)-i,
			"the front redzone was overwritten")
	}
	rear := unsafe.Add(pay, hd.size)
	n := uintptr(classSize[c]) - hd.off - uintptr(hd.size)
	if i := redzone.VerifyRear(slice(rear, n), uintptr(rear), w); i >= 0 {
		bad := unsafe.Add(rear, i)
		r := a.newReport(Overflow, op, bad, slot, c, soff, hd, "the rear redzone was overwritten")
		m := min(16, int(n)-i)
		r.Got = snapshot(bad, uintptr(m))
		r.Want = redzone.ExpectedRear(w, uintptr(rear), uintptr(bad), m)
		return r
	}
	return nil
}

// damage builds a report about pattern damage at bad, with up to 16 bytes
// found and expected (avail bytes of pattern remain from bad).
func (a *Allocator) damage(k Kind, op string, bad, slot unsafe.Pointer, c int, soff uint32, hd header, w uint64, avail int, detail string) *Report {
	r := a.newReport(k, op, bad, slot, c, soff, hd, detail)
	n := min(16, avail)
	r.Got = snapshot(bad, uintptr(n))
	r.Want = redzone.Expected(w, uintptr(bad), n)
	return r
}

// withdraw marks a reported slot so it is never reused nor reported again.
func (a *Allocator) withdraw(slot unsafe.Pointer, old uint64) {
	atomic.CompareAndSwapUint64(hdrWord(slot), old, restate(old, stateWithdrawn))
}

// stateFreeing is the state Free's compare-and-swap moves a live block
// to: busy, while quarantineSmall verifies and poisons it.
const stateFreeing = stateBusy

// quarantineSmall is the hardening layer's part of retireSmall, for a
// block whose header releaseSlot moved from old to busy: verify its
// canaries, record the free site, poison it and put it in this P's
// quarantine batch. Without a quarantine budget (and outside the
// always-quarantined classes) the slot is reused at once, so poison would
// be overwritten before anything could check it: the free is recorded,
// the header set free, and retireSmall recycles the slot as release
// builds do (done false).
func (a *Allocator) quarantineSmall(op string, slot unsafe.Pointer, c int, soff uint32, old uint64) (done, ok bool) {
	h := a.h
	hd := fields(old)
	if r := a.verifyCanaries(op, slot, c, soff, hd); r != nil {
		a.withdraw(slot, restate(old, stateBusy))
		a.report(r)
		return true, false
	}
	rec := a.rec(c, soff)
	g, st := a.who()
	if h.profile != nil {
		a.profileRemove(uintptr(slot) + headerSize + hd.off)
	}
	quarantined := !h.noBudget || a.always[c]
	if quarantined {
		body := unsafe.Add(slot, headerSize)
		redzone.Fill(slice(body, uintptr(classSize[c])), uintptr(body), redzone.Poison(h.poisonKey, uintptr(slot)))
	}

	// One pin for the sequence number, the record, the state change and
	// this P's quarantine batch (lock-free; a full batch goes to the
	// shared quarantine under one lock acquisition). The metadata guard
	// may take a lock, so it is opened before.
	closeMeta := nop
	if h.guard.on {
		closeMeta = h.guard.open(unsafe.Pointer(rec))
	}
	pc := a.pin()
	rec.freeSeq, rec.freeG, rec.freeStack = a.takeSeq(pc, rec.allocSeq), g, st
	if !quarantined {
		a.unpin(pc)
		closeMeta()
		storeRelease(hdrWord(slot), restate(old, stateFree))
		return false, true
	}
	it := quarantine.Item{Class: c, ID: uint64(soff), Bytes: int64(classSize[c] + headerSize)}
	storeRelease(hdrWord(slot), restate(old, stateQuarantined))
	pc.noteFree(c, hd.size)
	if pc.qn < len(pc.qpend) && pc.qbytes+it.Bytes <= h.pendCap {
		pc.qpend[pc.qn] = it
		pc.qn++
		pc.qbytes += it.Bytes
		a.unpin(pc)
		closeMeta()
		return true, true
	}
	var batch [len(pc.qpend) + 1]quarantine.Item
	n := copy(batch[:], pc.qpend[:pc.qn])
	batch[n] = it
	pc.qn, pc.qbytes = 0, 0
	a.unpin(pc)
	closeMeta()
	a.quarantineBatch(pc.qi, batch[:n+1])
	return true, true
}

// evict takes a slot out of quarantine: verify its poison, then recycle it.
func (a *Allocator) evict(c int, soff uint32) bool {
	slot := a.slotAt(c, soff)
	old := loadHeader(slot)
	hd, ok := a.decode(slot, old)
	if !ok || hd.state != stateQuarantined {
		if !ok {
			a.reportHeader("quarantine", slot, c, old)
		}
		return false // withdrawn after a report (e.g. by Check): never reused
	}
	// Nothing writes a quarantined block but a bug: verify, then one CAS
	// to free (or to withdrawn) settles any race with Check, which may
	// withdraw it too; only the winner reports.
	if r := a.verifyPoison("quarantine", slot, c, soff, hd); r != nil {
		if atomic.CompareAndSwapUint64(hdrWord(slot), old, restate(old, stateWithdrawn)) {
			a.report(r)
		}
		return false
	}
	return atomic.CompareAndSwapUint64(hdrWord(slot), old, restate(old, stateFree))
}

// drainQuarantine releases every quarantined small block.
func (a *Allocator) drainQuarantine() {
	// This P's batch too; other Ps' batches (at most pendCap bytes each)
	// cannot be touched while their owners may be running.
	pc := a.pin()
	var batch [len(pc.qpend)]quarantine.Item
	n := copy(batch[:], pc.qpend[:pc.qn])
	pc.qn, pc.qbytes = 0, 0
	a.unpin(pc)
	for _, e := range append(batch[:n], a.h.q.Drain()...) {
		if a.evict(e.Class, uint32(e.ID)) {
			a.pushSlot(e.Class, uint32(e.ID), -1)
		}
	}
}

// pendCap is how many bytes of freed blocks each P batches before pushing
// them into the shared quarantine: an eighth of the budget shared by the
// Ps, at most 32 KiB, and none under a Limit. The shared quarantine's
// budget is cut by the same amount per P (sharedQuarantineBudget), so
// batched and queued blocks together stay within Options.QuarantineBytes.
func (a *Allocator) pendCap(budget int64) int64 {
	if budget <= 0 || a.opts.Limit > 0 {
		// Under a Limit, an allocation that fails drains the quarantine,
		// which cannot reach other Ps' batches: no batching (as no per-P
		// slot caching).
		return 0
	}
	return min(budget/8/int64(len(a.caches)+1), 32<<10) // the Ps and the spare
}

// sharedQuarantineBudget is the budget of the shared quarantine: the
// whole budget less what the Ps' batches, pendCap bytes each, may hold.
func (a *Allocator) sharedQuarantineBudget(pendCap int64) int64 {
	return a.quarantineBudget() - pendCap*int64(len(a.caches)+1)
}

// evictAhead is how many evictions ahead quarantineBatch prefetches.
const evictAhead = 6

// prefetchSlot requests the first lines of a quarantined slot (poison
// verification streams the rest) and its site record, which the Alloc
// that takes the slot next writes.
func (a *Allocator) prefetchSlot(e quarantine.Item) {
	s := uintptr(a.slotAt(e.Class, uint32(e.ID)))
	for l := uintptr(0); l < min(3*64, uintptr(classSize[e.Class])+headerSize); l += 64 {
		prefetch(s + l)
	}
	prefetch(uintptr(unsafe.Pointer(a.rec(e.Class, uint32(e.ID)))))
}

// quarantineBatch pushes a P's batch of freed blocks into the quarantine
// and releases what it evicts. Evicted blocks were freed a quarantine ago
// and are long gone from the CPU caches: their headers, poison and site
// records are prefetched all at once, so the misses overlap.
func (a *Allocator) quarantineBatch(shard int, items []quarantine.Item) {
	var buf [2 * qBatch]quarantine.Item
	ev := a.h.q.PushAll(shard, items, buf[:])
	// Software-pipelined: the lines of the item evictAhead places on are
	// requested while this one is verified, so the misses overlap without
	// asking for more lines at once than the core can have in flight.
	for i := range min(evictAhead, len(ev)) {
		a.prefetchSlot(ev[i])
	}
	n := 0
	for i, e := range ev {
		if i+evictAhead < len(ev) {
			a.prefetchSlot(ev[i+evictAhead])
		}
		if a.evict(e.Class, uint32(e.ID)) {
			ev[n] = e
			n++
		}
	}
	// Back to this P's cache under one pin; what does not fit goes the
	// slow way.
	k := 0
	if !bug(bugDoublePush) {
		pc := a.pin()
		for ; k < n; k++ {
			c := ev[k].Class
			if pc.n[c] >= a.ccap[c] {
				break
			}
			pc.free[c][pc.n[c]] = uint32(ev[k].ID)
			pc.n[c]++
		}
		a.unpin(pc)
	}
	for _, e := range ev[k:n] {
		a.pushSlot(e.Class, uint32(e.ID), -1)
	}
	if bug(bugEvictTwice) && n > 0 {
		// Seeded bug: an evicted item goes back into the quarantine,
		// to be evicted (and recycled) a second time.
		var again [2 * qBatch]quarantine.Item
		for _, e := range a.h.q.PushAll(shard, ev[:1], again[:0]) {
			if a.evict(e.Class, uint32(e.ID)) {
				a.pushSlot(e.Class, uint32(e.ID), -1)
			}
		}
	}
}

func (a *Allocator) verifyPoison(op string, slot unsafe.Pointer, c int, soff uint32, hd header) *Report {
	body := unsafe.Add(slot, headerSize)
	w := redzone.Poison(a.h.poisonKey, uintptr(slot))
	n := uintptr(classSize[c])
	if i := redzone.Verify(slice(body, n), uintptr(body), w); i >= 0 {
		bad := unsafe.Add(body, i)
		r := a.damage(WriteAfterFree, op, bad, slot, c, soff, hd, w, int(n)-i,
			"a freed block's poison was overwritten while it sat in quarantine")
		return r
	}
	return nil
}

// checkHook, when set by a test, runs in Check between reading a slot's
// header and verifying the slot: the window in which another goroutine
// may free or reuse the block.
var checkHook func(slot unsafe.Pointer)

// verifyStable is verifySmall for a slot other goroutines may be freeing,
// evicting or reallocating right now: damage counts only if the header
// did not change while the slot was read, and is still there when read
// again (a slot freed and reallocated with an identical header in between
// has been re-armed by then).
func (a *Allocator) verifyStable(op string, slot unsafe.Pointer, c int, soff uint32, hd header, old uint64) *Report {
	if hd.state != stateAllocated && hd.state != stateQuarantined {
		return nil
	}
	if checkHook != nil {
		checkHook(slot) // tests: another goroutine acts right here
	}
	for range 2 {
		if a.peekSmall(slot, c, soff, hd) == nil || loadHeader(slot) != old {
			return nil
		}
	}
	return a.verifySmall(op, slot, c, soff, hd, old)
}

// peekSmall verifies without side effects.
func (a *Allocator) peekSmall(slot unsafe.Pointer, c int, soff uint32, hd header) *Report {
	if hd.state == stateAllocated {
		return a.verifyCanaries("Check", slot, c, soff, hd)
	}
	return a.verifyPoison("Check", slot, c, soff, hd)
}

// verifySmall is Check's and Close's look at one slot, whose header
// word old decodes to hd.
func (a *Allocator) verifySmall(op string, slot unsafe.Pointer, c int, soff uint32, hd header, old uint64) *Report {
	switch hd.state {
	case stateAllocated:
		if r := a.verifyCanaries(op, slot, c, soff, hd); r != nil {
			// Reported once; its Free just retires it.
			atomic.CompareAndSwapUint64(hdrWord(slot), old, restate(old, stateDamaged))
			return r
		}
	case stateQuarantined:
		if r := a.verifyPoison(op, slot, c, soff, hd); r != nil {
			a.withdraw(slot, old) // its eviction must not report it again
			return r
		}
	}
	return nil
}

func (a *Allocator) quarantineStats() (int64, int64) {
	n, b := a.h.q.Count()
	for _, pc := range a.allCaches() {
		pc.lockForRead()
		n += pc.qn
		b += pc.qbytes
		pc.unlockForRead()
	}
	a.large.mu.Lock()
	defer a.large.mu.Unlock()
	return int64(n) + int64(len(a.large.quarantined)), b + a.large.qbytes
}

// --- large blocks ---

func (a *Allocator) armLarge(lb *largeBlock) {
	g, seq, st := a.site(0)
	lb.alloc = a.siteOf(g, seq, st)
	a.profileAdd(uintptr(lb.p))
	rear := unsafe.Add(lb.p, lb.size)
	redzone.FillRear(slice(rear, lb.span-uintptr(lb.size)), uintptr(rear), redzone.Canary(a.h.canaryKey, uintptr(lb.p)))
}

func (a *Allocator) verifyLarge(op string, lb *largeBlock) *Report {
	w := redzone.Canary(a.h.canaryKey, uintptr(lb.p))
	rear := unsafe.Add(lb.p, lb.size)
	n := lb.span - uintptr(lb.size)
	if i := redzone.VerifyRear(slice(rear, n), uintptr(rear), w); i >= 0 {
		bad := unsafe.Add(rear, i)
		r := a.largeReport(Overflow, op, bad, lb, "the rear redzone (page slack) of a large block was overwritten")
		m := min(16, int(n)-i)
		r.Got = snapshot(bad, uintptr(m))
		r.Want = redzone.ExpectedRear(w, uintptr(rear), uintptr(bad), m)
		return r
	}
	return nil
}

// freeLargeHardened (lb already out of the live table, a.large.mu not
// held): verify the slack canary, make the pages inaccessible and give
// their memory back, and hold the address range in a bounded quarantine so
// late accesses fault. A damaged block is reported and kept as it is.
func (a *Allocator) freeLargeHardened(op string, lb *largeBlock) bool {
	if r := a.verifyLarge(op, lb); r != nil {
		a.report(r)
		return false
	}
	g, seq, st := a.site(lb.alloc.Seq)
	free := a.siteOf(g, seq, st)
	a.profileRemove(uintptr(lb.p))
	l := &a.large
	l.mu.Lock()
	defer l.mu.Unlock()
	lb.free = free // under the lock: a racing Free's report reads it (-race found it)
	// Keep the pages (PROT_NONE) when the cache will take the block after
	// the quarantine, so its reuse costs no page faults; otherwise give
	// them back now.
	if a.cacheable(lb.span) && l.kept+l.cacheBytes+int64(lb.span) <= a.largeCacheBudget() &&
		unix.Mprotect(lb.payload(), unix.PROT_NONE) == nil {
		lb.kept = true
		l.kept += int64(lb.span)
	} else {
		retire(lb.payload(), false)
		a.mapped.Add(-int64(lb.span))
	}
	l.quarantined = append(l.quarantined, lb)
	l.qbytes += int64(len(lb.mem))
	for len(l.quarantined) > 256 || l.qbytes > a.h.largeBudget {
		old := l.quarantined[0]
		l.quarantined = l.quarantined[1:]
		l.qbytes -= int64(len(old.mem))
		a.unquarantine(old, true)
	}
	return true
}

// unquarantine releases a block leaving the large-block quarantine
// (a.large.mu held): to the cache if its pages were kept and cache is
// set, otherwise unmapped.
func (a *Allocator) unquarantine(lb *largeBlock, cache bool) {
	l := &a.large
	if lb.kept {
		lb.kept = false
		l.kept -= int64(lb.span)
		if cache {
			a.park(lb)
			return
		}
		a.unmapFreed(lb)
		return
	}
	lb.unmap() // its pages already left the mapped count
	l.remember(lb)
}

// --- zero-size blocks ---

// zeroRegion gives every hardened Alloc(0) a distinct address in a
// PROT_NONE reservation, so any access through it faults (as in
// hardened_malloc). Freed addresses are recycled oldest first once the
// region is used up.
type zeroRegion struct {
	mu    sync.Mutex
	mem   []byte
	next  uintptr
	live  map[uintptr]*zeroBlock
	freed []uintptr
}

type zeroBlock struct {
	freed       bool
	alloc, free Site
}

const zeroRegionSize = 64 << 20

func (z *zeroRegion) init() error {
	mem, err := unix.Mmap(-1, 0, zeroRegionSize, unix.PROT_NONE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS|unix.MAP_NORESERVE)
	if err != nil {
		return err
	}
	z.mem, z.live = mem, make(map[uintptr]*zeroBlock)
	return nil
}

func (z *zeroRegion) contains(p uintptr) bool {
	base := uintptr(unsafe.Pointer(&z.mem[0]))
	return p-base < zeroRegionSize
}

func (a *Allocator) allocZero() []byte {
	z := &a.h.zero
	g, seq, st := a.site(0)
	z.mu.Lock()
	defer z.mu.Unlock()
	var off uintptr
	if z.next < zeroRegionSize {
		off = z.next
		z.next += 16
	} else {
		off = z.freed[0] // 4M frees happened: recycle the oldest
		z.freed = z.freed[1:]
	}
	z.live[off] = &zeroBlock{alloc: a.siteOf(g, seq, st)}
	asanZero(unsafe.Pointer(&z.mem[off]), false)
	a.profileAdd(uintptr(unsafe.Pointer(&z.mem[off])))
	pc := a.pin()
	pc.allocs[0]++
	a.unpin(pc)
	return unsafe.Slice((*byte)(unsafe.Pointer(&z.mem[off])), 0)
}

func (a *Allocator) freeZero(op string, p unsafe.Pointer) bool {
	z := &a.h.zero
	off := uintptr(p) - uintptr(unsafe.Pointer(&z.mem[0]))
	g, st := a.who()
	z.mu.Lock()
	zb := z.live[off]
	r := zeroMisuse(op, p, zb, DoubleFree, "the 0-byte block is already free")
	if r == nil {
		zb.freed = true
		asanZero(p, true)
		zb.free = a.siteOf(g, a.nextSeq(zb.alloc.Seq), st)
		z.freed = append(z.freed, off)
		a.profileRemove(uintptr(p))
	}
	z.mu.Unlock()
	if r != nil {
		a.report(r)
		return false
	}
	pc := a.pin()
	pc.frees[0]++
	a.unpin(pc)
	return true
}

// zeroMisuse says what is wrong with releasing the 0-byte block zb at p
// (nil: nothing); freed names the kind and detail for an already freed one.
func zeroMisuse(op string, p unsafe.Pointer, zb *zeroBlock, freed Kind, detail string) *Report {
	switch {
	case zb == nil:
		return &Report{Kind: InvalidFree, Op: op, Addr: uintptr(p), Size: -1, Class: -1,
			Detail: "the pointer is in the zero-size region but was never returned"}
	case zb.freed:
		return &Report{Kind: freed, Op: op, Addr: uintptr(p), Block: uintptr(p), Class: -1,
			Alloc: zb.alloc, Free: zb.free, Detail: detail}
	}
	return nil
}

// zeroSize validates a 0-byte block for Realloc.
func (a *Allocator) zeroSize(op string, p unsafe.Pointer) (int, error) {
	z := &a.h.zero
	off := uintptr(p) - uintptr(unsafe.Pointer(&z.mem[0]))
	z.mu.Lock()
	r := zeroMisuse(op, p, z.live[off], UseAfterFree, "Realloc of a 0-byte block that is already free")
	z.mu.Unlock()
	if r != nil {
		a.report(r)
		return 0, &Error{Report: r}
	}
	return 0, nil
}

// zeroLeaks reports every 0-byte block still live.
func (a *Allocator) zeroLeaks(op string) []*Report {
	z := &a.h.zero
	z.mu.Lock()
	defer z.mu.Unlock()
	base := uintptr(unsafe.Pointer(&z.mem[0]))
	var out []*Report
	for off, zb := range z.live {
		if !zb.freed {
			out = append(out, &Report{Kind: Leak, Op: op, Addr: base + off, Block: base + off, Class: -1,
				Alloc: zb.alloc, Detail: "a 0-byte block still allocated at " + op})
		}
	}
	return out
}

// --- metadata guard ---

// metaGuard is the seed notes' scoped metadata guard: with
// ProtectMetadata the site records are PROT_READ, and every write to them
// happens between open(addr) and the closer it returns. Only the page
// holding addr is made writable; opens of one page nest and may come from
// many goroutines at once: the first opener makes it writable, the last
// closer read-only again. Reads need no guard.
type metaGuard struct {
	on    bool
	mu    sync.Mutex
	depth map[uintptr]int // open count per page offset
	mem   []byte
}

func nop() {}

func (g *metaGuard) init(mem []byte, on bool) {
	g.on, g.mem = on, mem
	g.depth = make(map[uintptr]int)
}

// open makes the metadata page holding p writable until the returned
// closer is called.
func (g *metaGuard) open(p unsafe.Pointer) (closer func()) {
	if !g.on {
		return nop
	}
	pg := (uintptr(p) - uintptr(unsafe.Pointer(&g.mem[0]))) &^ (pageSize - 1)
	g.mu.Lock()
	if g.depth[pg] == 0 {
		unix.Mprotect(g.mem[pg:pg+pageSize], unix.PROT_READ|unix.PROT_WRITE)
	}
	g.depth[pg]++
	g.mu.Unlock()
	return func() { g.close(pg) }
}

func (g *metaGuard) close(pg uintptr) {
	g.mu.Lock()
	g.depth[pg]--
	if g.depth[pg] == 0 {
		delete(g.depth, pg)
		unix.Mprotect(g.mem[pg:pg+pageSize], unix.PROT_READ)
	}
	g.mu.Unlock()
}

// --- stack depot ---

// depot interns stacks: each distinct stack is stored once and named by a
// uint32 id, so per-slot records stay small and memory stays bounded by
// the number of distinct call sites.
type depot struct {
	// seen is a lock-free cache in front of the shards, read on every
	// Alloc and Free that records a stack: entries pack the stack hash's
	// top 40 bits with its id (seenEntry), linearly probed, filled once
	// and never changed. A stack not found there (a new one, or one of
	// more distinct stacks than it holds) takes the locked path. Two
	// RWMutex operations per site on a line all Ps share were a quarter
	// of a hardened pair with stacks.
	seen   [depotSeen]atomic.Uint64
	shards [64]depotShard
	mu     sync.Mutex
	stacks [][]uintptr // id-1 -> stack
}

const (
	depotSeen  = 1 << 12
	seenProbes = 8
	seenIDBits = 24
)

// seenEntry packs hash h's top bits with id, or returns 0 when id does
// not fit the entry.
func seenEntry(h uint64, id uint32) uint64 {
	if id >= 1<<seenIDBits {
		return 0
	}
	return h&^(1<<seenIDBits-1) | uint64(id)
}

type depotShard struct {
	mu  sync.RWMutex
	ids map[uint64]uint32 // stack hash -> id
	_   [32]byte
}

func (d *depot) intern(pcs []uintptr) uint32 {
	h := uint64(len(pcs))
	for _, pc := range pcs {
		h = bits.RotateLeft64(h^uint64(pc), 27) * 0x9e3779b97f4a7c15
	}
	top := h &^ (1<<seenIDBits - 1)
	for k := range uint64(seenProbes) {
		e := d.seen[(h+k)%depotSeen].Load()
		if e == 0 {
			break
		}
		if e&^(1<<seenIDBits-1) == top {
			return uint32(e & (1<<seenIDBits - 1))
		}
	}
	id := d.internLocked(pcs, h)
	if e := seenEntry(h, id); e != 0 {
		for k := range uint64(seenProbes) {
			slot := &d.seen[(h+k)%depotSeen]
			if old := slot.Load(); old == e || old == 0 && slot.CompareAndSwap(0, e) {
				break
			}
		}
	}
	return id
}

// internLocked is intern's path through the shards' maps.
func (d *depot) internLocked(pcs []uintptr, h uint64) uint32 {
	sh := &d.shards[h>>58]
	sh.mu.RLock()
	id, ok := sh.ids[h]
	sh.mu.RUnlock()
	if ok {
		return id
	}
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if id, ok := sh.ids[h]; ok {
		return id
	}
	d.mu.Lock()
	d.stacks = append(d.stacks, append([]uintptr(nil), pcs...))
	id = uint32(len(d.stacks))
	d.mu.Unlock()
	if sh.ids == nil {
		sh.ids = make(map[uint64]uint32)
	}
	sh.ids[h] = id
	return id
}

// get returns stack id: physical return addresses from the frame-pointer
// walk, the allocator's own frames included (Site.Frames drops them after
// inline expansion, which needs the whole slice).
func (d *depot) get(id uint32) []uintptr {
	if id == 0 {
		return nil
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.stacks[id-1]
}

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

func (a *Allocator) explainZero(addr uintptr) *Report {
	z := &a.h.zero
	base := uintptr(unsafe.Pointer(&z.mem[0]))
	off := (addr - base) &^ 15
	z.mu.Lock()
	zb := z.live[off]
	z.mu.Unlock()
	r := &Report{Kind: Overflow, Op: "fault", Addr: addr, Block: base + off, Size: 0, Class: -1,
		Offset: int(addr - base - off), Detail: "an access through a 0-byte block (Alloc(0) returns inaccessible memory)"}
	if zb != nil {
		r.Alloc, r.Free = zb.alloc, zb.free
		if zb.freed {
			r.Kind = UseAfterFree
		}
	}
	return r
}

func (a *Allocator) zeroContains(p uintptr) bool { return a.h.zero.contains(p) }

func (a *Allocator) resetHardened() {
	h := a.h
	h.canaryKey = a.rng.Uint64()
	h.poisonKey = a.rng.Uint64()
	h.seq.Store(0)
	h.q.Reset(a.sharedQuarantineBudget(h.pendCap), a.rng.Uint64())
	z := &h.zero
	z.mu.Lock()
	z.next, z.live, z.freed = 0, make(map[uintptr]*zeroBlock), nil
	z.mu.Unlock()
}

// alwaysSizes returns the registered sizes and Options.AlwaysQuarantine.
func (a *Allocator) alwaysSizes() []int {
	registered.Lock()
	defer registered.Unlock()
	return append(append([]int(nil), registered.sizes...), a.opts.AlwaysQuarantine...)
}

// quarantined calls fn for every small slot in the quarantine or in a P's
// batch on its way there (Audit).
func (a *Allocator) quarantined(fn func(c int, off uint32)) {
	for _, pc := range a.allCaches() {
		pc.lockForRead()
		for _, it := range pc.qpend[:pc.qn] {
			fn(it.Class, uint32(it.ID))
		}
		pc.unlockForRead()
	}
	a.h.q.Each(func(it quarantine.Item) { fn(it.Class, uint32(it.ID)) })
}
