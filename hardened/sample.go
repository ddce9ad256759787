package hardened

import (
	"math"
	"sync"
	"unsafe"

	"golang.org/x/sys/unix"
)

// This file is the sampling layer (Options.SampleRate): GWP-ASan for Go.
// One allocation in SampleRate, chosen by a per-P countdown, is served
// from a small pool of guarded pages instead of a size class:
//
//	[guard][slot 0][guard][slot 1][guard] ... [slot N-1][guard]
//
// A sampled block sits at the start of its slot's page or at its end
// (alternately, as GWP-ASan does), so an underflow or an overflow runs
// into a guard page at the first byte; on Free the page becomes PROT_NONE
// and stays so until every other free slot has been reused (the free
// slots are taken least recently freed first), so a use after free
// faults. Each block records its allocation and free sites, in every
// build, here and in the record book, where the crash monitor finds them.
//
// The countdown lives in the per-P cache and is decremented by cache.pop,
// the one step every fast-path allocation takes; with sampling off it
// starts at MaxInt64 and never runs out, so sampling costs the fast path
// one decrement and one compare either way.

const (
	sampleSlots   = 16              // slots in the pool (GWP-ASan's default)
	sampleHistory = 4 * sampleSlots // freed blocks remembered for Free's reports
	noSample      = math.MaxInt64
)

type sampler struct {
	mu     sync.Mutex
	rate   int
	pool   []byte // the mapping, guards included
	base   uintptr
	free   []int // free slots, least recently freed first
	blocks [sampleSlots]sampledBlock
	// history is a ring of freed blocks whose slots were reused since,
	// newest last: a late Free of one is still a DoubleFree with sites.
	history    [sampleHistory]sampledBlock
	historyPos int
	right      bool // the next block's alignment: the end of its page
	seq        uint64
	rangeIdx   int
}

type sampledBlock struct {
	p           uintptr
	size        int
	live, used  bool
	alloc, free Site
	rec         *bookRec
}

// initSampler maps the pool for Options.SampleRate (New).
func (a *Allocator) initSampler() error {
	if a.opts.SampleRate <= 0 {
		return nil
	}
	s := &sampler{rate: a.opts.SampleRate}
	prot := unix.PROT_NONE
	if asanEnabled {
		// AddressSanitizer's shadow guards the pool instead: Go's nil
		// checks probe an address before ASan's check of it, so a
		// PROT_NONE page would fault ahead of ASan's report.
		prot = unix.PROT_READ | unix.PROT_WRITE
	}
	mem, err := unix.Mmap(-1, 0, int((2*sampleSlots+1)*pageSize), prot,
		unix.MAP_PRIVATE|unix.MAP_ANONYMOUS|unix.MAP_NORESERVE)
	if err != nil {
		return mmapErr(err)
	}
	s.pool, s.base = mem, uintptr(unsafe.Pointer(&mem[0]))
	asanPool(mem)
	for i := range sampleSlots {
		s.free = append(s.free, i)
	}
	s.rangeIdx = bookAddRange(a.id, s.base, s.base+uintptr(len(mem)), rangeSample)
	a.samp = s
	return nil
}

// seedTicks starts every cache's countdown (New, Reset): the first
// interval of each P is drawn from the seed, so a run replays.
func (a *Allocator) seedTicks() {
	for i, pc := range a.allCaches() {
		pc.tick = noSample
		if a.samp != nil {
			pc.rng = a.secret ^ uint64(i+1)*0x9e3779b97f4a7c15
			pc.tick = pc.nextInterval(a.samp.rate)
		}
	}
}

// nextInterval draws the allocations until the next sample: uniform in
// [1, 2*rate-1], so the mean is rate (SampleRate 1 samples every
// allocation) and no fixed period can hide a bug.
func (pc *cache) nextInterval(rate int) int64 {
	x := pc.rng // xorshift64*
	x ^= x >> 12
	x ^= x << 25
	x ^= x >> 27
	pc.rng = x
	return 1 + int64((x*0x2545f4914f6cdd1d)%uint64(2*rate-1))
}

// seqSample is what popFast returns for seq when, instead of a slot, a
// sample is due: the caller serves the request from the pool.
const seqSample = ^uint64(0)

// due reports whether pc's sampling countdown has run out (pc pinned or
// locked), restarting it if so: seqSample if it has, else 0.
func (pc *cache) due(a *Allocator) uint64 {
	if pc.tick > 0 {
		return 0
	}
	pc.tick = pc.nextInterval(a.samp.rate) + 1 // the due request's own retry, should the pool be full, pops once more
	return seqSample
}

// sampleable reports whether a request of n bytes at alignment align
// (0: the allocator's own) can be sampled.
func (a *Allocator) sampleable(n, align int) bool {
	return a.samp != nil && n > 0 && uintptr(n) <= pageSize && uintptr(align) <= a.minAlign
}

// sampleContains reports whether p lies in the sampled pool.
func (a *Allocator) sampleContains(p uintptr) bool {
	s := a.samp
	return s != nil && p-s.base < uintptr(len(s.pool))
}

// slotAddr is the start of slot i's page.
func (s *sampler) slotAddr(i int) uintptr { return s.base + pageSize + uintptr(i)*2*pageSize }

// ptr turns an address in the pool into a pointer.
func (s *sampler) ptr(p uintptr) unsafe.Pointer {
	return unsafe.Add(unsafe.Pointer(unsafe.SliceData(s.pool)), p-s.base)
}

// slotPage returns slot i's page as a slice.
func (s *sampler) slotPage(i int) []byte {
	off := s.slotAddr(i) - s.base
	return s.pool[off : off+pageSize]
}

// allocSampled serves an n-byte request (0 < n <= a page) from a free
// slot; nil when every slot is live or the Limit is reached (the request
// then goes to its class as usual).
func (a *Allocator) allocSampled(n int) []byte {
	s := a.samp
	site := a.capture(make([]uintptr, bookDepth+8)) // before the lock
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.free) == 0 || uintptr(n) > pageSize || a.reserve(int64(pageSize)) != nil {
		return nil
	}
	i := s.free[0]
	page := s.slotPage(i)
	if injecting && bug(bugSampleGuard) {
		page = page[: 2*pageSize : 2*pageSize] // seeded bug: the guard page after it too
	}
	if !asanEnabled && unix.Mprotect(page, unix.PROT_READ|unix.PROT_WRITE) != nil {
		a.mapped.Add(-int64(pageSize))
		return nil
	}
	s.free = s.free[1:]
	b := &s.blocks[i]
	if b.used {
		s.history[s.historyPos] = *b
		s.historyPos = (s.historyPos + 1) % sampleHistory
	}
	p := s.slotAddr(i)
	if s.right {
		p += pageSize - alignUp(uintptr(n), a.minAlign)
	}
	s.right = !s.right
	s.seq++
	*b = sampledBlock{p: p, size: n, live: true, used: true}
	site.Seq = s.seq
	b.alloc = site
	if b.rec = bookRecord(recSampled, a.id, s.slotAddr(i), s.slotAddr(i)+pageSize, p, n); b.rec != nil {
		b.rec.alloc.setSite(b.alloc)
	}
	out := unsafe.Slice((*byte)(s.ptr(p)), n)
	asanSampled(s.ptr(p), n, true)
	clear(out) // the page keeps its last block's bytes (retireSampled)
	pc := a.pin()
	pc.requested += int64(n)
	pc.tick-- // the pop due() allowed for a retry that did not happen
	a.unpin(pc)
	return out
}

// sampledAt returns the slot whose page holds addr, or -1 (a guard page).
func (s *sampler) sampledAt(addr uintptr) int {
	off := addr - s.base
	if off >= uintptr(len(s.pool)) || (off/pageSize)%2 == 0 {
		return -1
	}
	return int(off / pageSize / 2)
}

// freeSampled releases the sampled block at p, or reports why not.
func (a *Allocator) freeSampled(op string, p unsafe.Pointer) bool {
	s := a.samp
	site := a.capture(make([]uintptr, bookDepth+8)) // before the lock
	s.mu.Lock()
	i := s.sampledAt(uintptr(p))
	if i < 0 || !s.blocks[i].live || s.blocks[i].p != uintptr(p) {
		r := s.misuse(op, uintptr(p), DoubleFree, "the sampled block is already free")
		s.mu.Unlock()
		a.report(r)
		return false
	}
	b := &s.blocks[i]
	b.live = false
	s.seq++
	site.Seq = s.seq
	b.free = site
	if b.rec.owns(b.p) {
		b.rec.free.setSite(b.free)
		b.rec.state = recFreed
	}
	page := s.slotPage(i)
	asanSampled(p, b.size, false)
	retireSampled(page)
	s.free = append(s.free, i)
	size := b.size
	s.mu.Unlock()
	a.mapped.Add(-int64(pageSize))
	pc := a.pin()
	pc.requested -= int64(size)
	a.unpin(pc)
	return true
}

// sampleSize validates p as a live sampled block for Realloc and
// UsableSize.
func (a *Allocator) sampleSize(op string, p unsafe.Pointer) (int, error) {
	s := a.samp
	s.mu.Lock()
	i := s.sampledAt(uintptr(p))
	if i >= 0 && s.blocks[i].live && s.blocks[i].p == uintptr(p) {
		n := s.blocks[i].size
		s.mu.Unlock()
		return n, nil
	}
	r := s.misuse(op, uintptr(p), UseAfterFree, op+" of a sampled block that is already free")
	s.mu.Unlock()
	a.report(r)
	return 0, &Error{Report: r}
}

// misuse says what p is when it is not a live sampled block's start (s.mu
// held): a freed block (freed: the kind to report), an interior pointer,
// or nothing the pool handed out.
func (s *sampler) misuse(op string, p uintptr, freed Kind, detail string) *Report {
	if i := s.sampledAt(p); i >= 0 {
		b := &s.blocks[i]
		switch {
		case b.used && b.p == p && !b.live:
			return b.report(freed, op, p, detail)
		case b.live:
			return b.report(InvalidFree, op, p, "the pointer is not the start of a block (an interior pointer)")
		}
	}
	for k := range sampleHistory {
		if h := &s.history[(s.historyPos-1-k+2*sampleHistory)%sampleHistory]; h.used && h.p == p {
			return h.report(freed, op, p, detail+" (its page has been reused since)")
		}
	}
	return &Report{Kind: InvalidFree, Op: op, Addr: p, Size: -1, Class: -1, Sampled: true,
		Detail: "the pointer is in the sampled pool but was never the start of a block"}
}

func (b *sampledBlock) report(k Kind, op string, addr uintptr, detail string) *Report {
	return &Report{Kind: k, Op: op, Addr: addr, Block: b.p, Size: b.size, Class: -1, Sampled: true,
		Offset: int(addr - b.p), Alloc: b.alloc, Free: b.free, Detail: detail}
}

// explainSampled says what a fault at addr in the pool was: a use of a
// freed block, or the guard page beside the nearest block (s.mu taken).
func (a *Allocator) explainSampled(addr uintptr) *Report {
	s := a.samp
	s.mu.Lock()
	defer s.mu.Unlock()
	return explainPool(addr, s.base, func(i int) *sampledBlock {
		if i < 0 || i >= sampleSlots || !s.blocks[i].used {
			return nil
		}
		return &s.blocks[i]
	})
}

// explainPool is the one classification of a fault in a sampled pool at
// base, for Explain and for the crash monitor (which rebuilds the blocks
// from the record book): block(i) is slot i's current or last block.
func explainPool(addr, base uintptr, block func(int) *sampledBlock) *Report {
	page := int((addr - base) / pageSize)
	if page%2 == 1 {
		if b := block(page / 2); b != nil {
			if !b.live {
				return b.report(UseAfterFree, "fault", addr, "an access to a freed sampled block")
			}
			if addr < b.p {
				return b.report(Underflow, "fault", addr, "an access before the start of a sampled block, inside its page")
			}
			return b.report(Overflow, "fault", addr, "an access past the end of a sampled block, inside its page")
		}
		return &Report{Kind: InvalidAccess, Op: "fault", Addr: addr, Size: -1, Class: -1, Sampled: true,
			Detail: "an access to a sampled slot that never held a block"}
	}
	// A guard page: the nearer of the block before it (an overflow) and the
	// block after it (an underflow).
	before, after := block(page/2-1), block(page/2)
	if page == 0 {
		before = nil
	}
	var best *sampledBlock
	var kind Kind
	if before != nil {
		best, kind = before, Overflow
	}
	if after != nil && (best == nil || after.p-addr < addr-(before.p+uintptr(before.size))) {
		best, kind = after, Underflow
	}
	if best == nil {
		return &Report{Kind: InvalidAccess, Op: "fault", Addr: addr, Size: -1, Class: -1, Sampled: true,
			Detail: "an access to a guard page of the sampled pool, next to no block"}
	}
	detail := "an access to the guard page past the end of a sampled block"
	if kind == Underflow {
		detail = "an access to the guard page before a sampled block"
	}
	if !best.live {
		kind, detail = UseAfterFree, detail+" (the block is freed)"
	}
	return best.report(kind, "fault", addr, detail)
}

// retireSampled makes a freed slot's page fault (under -asan the shadow
// says it is freed instead). The page keeps its memory: a slot is reused
// within 16 samples, and giving the page back would cost a page fault
// (microseconds on a VM) on every sampled allocation, where a clear of
// the block costs nanoseconds.
func retireSampled(page []byte) {
	if !asanEnabled && !(injecting && bug(bugSampleKeeps)) {
		unix.Mprotect(page, unix.PROT_NONE)
	}
}

// sampleLeaks reports every live sampled block as a Leak (Close, Reset).
func (a *Allocator) sampleLeaks(op string) []*Report {
	s := a.samp
	if s == nil {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []*Report
	for i := range s.blocks {
		if b := &s.blocks[i]; b.live {
			out = append(out, b.report(Leak, op, b.p, plural(b.size, "byte")+" still allocated at "+op+" (sampled block)"))
		}
	}
	return out
}

// dropSampled frees every slot (Reset: keep the pool; Close: unmap it).
func (a *Allocator) dropSampled(unmap bool) {
	s := a.samp
	if s == nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := range s.blocks {
		b := &s.blocks[i]
		if b.live {
			b.live = false
			asanSampled(s.ptr(b.p), b.size, false)
			retireSampled(s.slotPage(i))
			a.mapped.Add(-int64(pageSize))
		}
		if !unmap {
			*b = sampledBlock{}
		}
	}
	s.free = s.free[:0]
	for i := range sampleSlots {
		s.free = append(s.free, i)
	}
	s.history, s.historyPos, s.seq, s.right = [sampleHistory]sampledBlock{}, 0, 0, false
	if unmap {
		unix.Munmap(s.pool)
		bookCloseRange(s.rangeIdx)
	}
}
