package hardened

import (
	"sync"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Large blocks (more than maxSmall bytes, or alignments a slot cannot
// give) each get their own mapping: a PROT_NONE guard page, the payload
// pages, and a PROT_NONE guard after them, so a linear overflow or
// underflow faults at once. Their metadata is out of band, in largeHeap:
// nothing in the mapping itself can be corrupted into a bad free.
type largeHeap struct {
	mu   sync.Mutex
	live map[uintptr]*largeBlock // by payload address
	// recent remembers freed payload addresses (a ring) so that a second
	// Free is reported as a DoubleFree rather than an InvalidFree.
	recent    [256]*largeBlock
	recentPos int
	// quarantined holds freed mappings kept PROT_NONE (hardened builds).
	quarantined []*largeBlock
	qbytes      int64
	// withdrawn holds blocks whose Free was refused after a report: kept
	// mapped as they are, unmapped by Reset and Close.
	withdrawn []*largeBlock
	// cache holds freed mappings kept for reuse, oldest first (Scudo's
	// secondary cache): a large Alloc that finds one costs a clear instead
	// of mmap, two guard installs, munmap and a page fault per page (about
	// 10 us each on a VM). Release builds cache a block when it is freed;
	// hardened builds keep it PROT_NONE and cache it only when it leaves
	// the large-block quarantine, so late accesses still fault.
	cache      []*largeBlock
	cacheBytes int64 // spans of the cached blocks
	// kept is the hardened quarantine's resident part: blocks retired
	// with their pages kept (PROT_NONE) because the cache will take them.
	kept int64
}

// maxCached bounds the number of cached large blocks (twice Scudo's default).
const maxCached = 64

type largeBlock struct {
	mem   []byte         // the whole mapping, guards included
	p     unsafe.Pointer // payload start
	size  int            // requested size
	span  uintptr        // readable bytes (payload rounded to pages)
	freed bool
	kept  bool // hardened: retired PROT_NONE with its pages, for the cache
	none  bool // its payload is PROT_NONE (hardened: kept, or cached after)
	alloc Site
	free  Site
	rec   *bookRec // its record in the record book, for the crash monitor
	// pcs back the release builds' sites (releaseSite), so recording one
	// allocates nothing.
	//lint:ignore U1000 release builds only (harden0.go)
	pcs [2][bookDepth + 8]uintptr
}

func (l *largeHeap) init() { l.live = make(map[uintptr]*largeBlock) }

// madvGuardInstall is Linux's MADV_GUARD_INSTALL (6.13+), spelled here so
// that the module builds with a golang.org/x/sys that predates it (and so
// with Go 1.24).
const madvGuardInstall = 102

// haveGuardRegions reports whether the kernel has MADV_GUARD_INSTALL
// (Linux 6.13+): guard pages inside one read-write mapping, so a large
// block is one VMA instead of three (PROT_NONE, RW, PROT_NONE).
var haveGuardRegions = func() bool {
	m, err := unix.Mmap(-1, 0, 2*int(pageSize), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		return false
	}
	defer unix.Munmap(m)
	return unix.Madvise(m[:pageSize], madvGuardInstall) == nil
}()

// mapGuarded maps total bytes with the span readable bytes starting at an
// al-aligned offset start, and everything else faulting.
func mapGuarded(total, span, al uintptr) (mem []byte, start uintptr, err error) {
	prot := unix.PROT_NONE
	if haveGuardRegions {
		prot = unix.PROT_READ | unix.PROT_WRITE
	}
	mem, err = unix.Mmap(-1, 0, int(total), prot, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS|unix.MAP_NORESERVE)
	if err != nil {
		return nil, 0, err
	}
	base := uintptr(unsafe.Pointer(&mem[0]))
	start = alignUp(base+pageSize, al) - base
	if haveGuardRegions {
		err = unix.Madvise(mem[:start], madvGuardInstall)
		if err == nil {
			err = unix.Madvise(mem[start+span:], madvGuardInstall)
		}
	} else {
		err = unix.Mprotect(mem[start:start+span], unix.PROT_READ|unix.PROT_WRITE)
	}
	if err != nil {
		unix.Munmap(mem)
		return nil, 0, err
	}
	return mem, start, nil
}

// retire makes b fault for good and gives its pages back; none says it
// is PROT_NONE already (guards are installed only in readable memory).
func retire(b []byte, none bool) {
	if haveGuardRegions && !none && unix.Madvise(b, madvGuardInstall) == nil {
		return // installing guards also drops the pages
	}
	unix.Mprotect(b, unix.PROT_NONE)
	unix.Madvise(b, unix.MADV_DONTNEED)
}

var pageSize = uintptr(unix.Getpagesize())

func (a *Allocator) allocLarge(n, align int) ([]byte, error) {
	// Room for the hardened builds' byte-precise rear redzone in the
	// page slack.
	_, rear := a.pads()
	span := alignUp(uintptr(max(n, 1)+rear), pageSize)
	al := max(uintptr(align), pageSize)
	lb := a.reuseLarge(n, span, al)
	if lb == nil {
		// guard + alignment slack + payload + guard
		total := pageSize + (al - pageSize) + span + pageSize
		if err := a.reserve(int64(span)); err != nil {
			return nil, err
		}
		mem, start, err := mapGuarded(total, span, al)
		if err != nil {
			a.mapped.Add(-int64(span))
			return nil, mmapErr(err)
		}
		lb = &largeBlock{mem: mem, p: unsafe.Pointer(&mem[start]), size: n, span: span}
	}
	return a.largeBorn(lb), nil
}

// find returns the live or recently freed large block whose mapping
// contains addr (l.mu held).
func (l *largeHeap) find(addr uintptr) *largeBlock {
	if lb := l.live[addr]; lb != nil {
		return lb
	}
	for _, lb := range l.live {
		if lb.contains(addr) {
			return lb
		}
	}
	for _, lb := range l.quarantined {
		if lb.contains(addr) {
			return lb
		}
	}
	for _, lb := range l.cache {
		if lb.contains(addr) {
			return lb
		}
	}
	// Newest first: an address range freed, unmapped and mapped again
	// belongs to its latest block (allocLarge drops older records that
	// overlap a new mapping, so this order only breaks ties).
	for i := range len(l.recent) {
		lb := l.recent[(l.recentPos-1-i+2*len(l.recent))%len(l.recent)]
		if lb != nil && lb.contains(addr) {
			return lb
		}
	}
	return nil
}

// forgetOverlapping drops the records of freed, unmapped blocks whose
// range the new block lb's mapping reuses (a.large.mu held): a Free
// through an address there is about lb, not about a block gone before it.
func (l *largeHeap) forgetOverlapping(lb *largeBlock) {
	lo := uintptr(unsafe.Pointer(&lb.mem[0]))
	hi := lo + uintptr(len(lb.mem))
	for i, old := range l.recent {
		if old != nil && old != lb {
			olo := uintptr(unsafe.Pointer(&old.mem[0]))
			if olo < hi && lo < olo+uintptr(len(old.mem)) {
				l.recent[i] = nil
			}
		}
	}
}

func (lb *largeBlock) contains(addr uintptr) bool {
	base := uintptr(unsafe.Pointer(&lb.mem[0]))
	return addr >= base && addr < base+uintptr(len(lb.mem))
}

func (a *Allocator) largeReport(k Kind, op string, p unsafe.Pointer, lb *largeBlock, detail string) *Report {
	r := &Report{Kind: k, Op: op, Addr: uintptr(p), Size: -1, Class: -1, Detail: detail}
	if lb != nil {
		r.Block = uintptr(lb.p)
		r.Size = lb.size
		r.Offset = int(uintptr(p) - uintptr(lb.p))
		r.Alloc, r.Free = lb.alloc, lb.free
	}
	return r
}

// largeMisuse says what p is, given the large block other whose mapping
// holds it (nil: none), when p is not a live large block's start; freed
// names the kind and detail for an already freed block.
func (a *Allocator) largeMisuse(op string, p unsafe.Pointer, other *largeBlock, freed Kind, detail string) *Report {
	switch {
	case other == nil:
		return a.largeReport(InvalidFree, op, p, nil, "the pointer was not returned by this allocator")
	case other.freed && other.p == p:
		return a.largeReport(freed, op, p, other, detail)
	}
	return a.largeReport(InvalidFree, op, p, other, "the pointer is not the start of a block (an interior pointer)")
}

// freeLarge releases the large block starting at p, or reports why not.
func (a *Allocator) freeLarge(op string, p unsafe.Pointer) bool {
	l := &a.large
	l.mu.Lock()
	lb := l.live[uintptr(p)]
	if lb == nil {
		// The report copies the block's sites under the lock: a racing
		// Free of the same block writes them.
		r := a.largeMisuse(op, p, l.find(uintptr(p)), DoubleFree, "the large block is already free")
		l.mu.Unlock()
		a.report(r)
		return false
	}
	delete(l.live, uintptr(p))
	return a.largeDies(op, lb)
}

// largeSize validates p as a live large block for Realloc.
func (a *Allocator) largeSize(op string, p unsafe.Pointer) (int, error) {
	l := &a.large
	l.mu.Lock()
	lb := l.live[uintptr(p)]
	var r *Report
	if lb == nil {
		r = a.largeMisuse(op, p, l.find(uintptr(p)), UseAfterFree, "Realloc of a large block that is already free")
	}
	l.mu.Unlock()
	if r != nil {
		a.report(r)
		return 0, &Error{Report: r}
	}
	return lb.size, nil
}

// dropLarge forgets every large block, for Reset (keep: true) and Close.
// Live blocks (reported as leaks by then) and quarantined blocks whose
// pages were kept go to the cache when keep is set; everything else is
// unmapped. Withdrawn blocks are never reused.
func (a *Allocator) dropLarge(keep bool) {
	l := &a.large
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, lb := range l.live {
		lb.freed = true
		lb.booked()
		asanLargeDead(lb)
		if keep {
			// Hardened builds would make it PROT_NONE, but mprotect is
			// slow per page and makes every page fault again when reused
			// (about 1 us a page here), and blocks leaked at Reset are the
			// common case for fuzz programs. A stale access to one after
			// Reset therefore does not fault; a stale Free is still
			// reported.
			a.park(lb)
			continue
		}
		a.unmapLarge(lb)
		a.mapped.Add(-int64(lb.span))
	}
	for _, lb := range l.withdrawn {
		a.unmapLarge(lb)
		a.mapped.Add(-int64(lb.span))
	}
	for _, lb := range l.quarantined {
		a.unquarantine(lb, keep)
	}
	for !keep && len(l.cache) > 0 {
		a.unmapOldestCached()
	}
	clear(l.live) // not a new map: Reset runs once per fuzz exec
	l.quarantined, l.qbytes, l.kept, l.withdrawn = nil, 0, 0, nil
	l.recent, l.recentPos = [len(l.recent)]*largeBlock{}, 0
}

// booked marks lb's record in the record book freed, with its free site.
func (lb *largeBlock) booked() {
	if lb.rec.owns(uintptr(lb.p)) {
		lb.rec.free.setSite(lb.free)
		atomic.StoreUint32(&lb.rec.state, recFreed)
	}
}

func (lb *largeBlock) payload() []byte { return slice(lb.p, lb.span) }

// unmap gives the whole mapping back to the OS.
func (a *Allocator) unmapLarge(lb *largeBlock) {
	if a.keepClosed(lb.mem) {
		return
	}
	asanUnmap(lb.mem)
	unix.Munmap(lb.mem)
}

// largeCacheBudget is Options.LargeCacheBytes with its default applied.
func (a *Allocator) largeCacheBudget() int64 {
	switch b := a.opts.LargeCacheBytes; {
	case b < 0:
		return 0
	case b == 0:
		return 32 << 20
	default:
		return b
	}
}

// cacheable reports whether a freed block of span bytes may be cached.
func (a *Allocator) cacheable(span uintptr) bool {
	return int64(span) <= a.largeCacheBudget()/2
}

// park caches the freed block lb (a.large.mu held), evicting the oldest
// entries past the budget (which the hardened quarantine's kept pages
// share), or unmaps it if it does not fit. Hardened builds park PROT_NONE
// blocks, except those Reset parks open.
func (a *Allocator) park(lb *largeBlock) {
	l := &a.large
	if !a.cacheable(lb.span) {
		a.unmapFreed(lb)
		return
	}
	l.cache = append(l.cache, lb)
	l.cacheBytes += int64(lb.span)
	budget := a.largeCacheBudget()
	for len(l.cache) > maxCached || l.cacheBytes+l.kept > budget {
		a.unmapOldestCached()
	}
}

// unmapOldestCached unmaps the oldest cached block (a.large.mu held).
func (a *Allocator) unmapOldestCached() {
	l := &a.large
	old := l.cache[0]
	l.cache = l.cache[1:]
	l.cacheBytes -= int64(old.span)
	a.unmapFreed(old)
}

// unmapFreed unmaps a freed, still counted block (a.large.mu held).
func (a *Allocator) unmapFreed(lb *largeBlock) {
	a.unmapLarge(lb)
	a.mapped.Add(-int64(lb.span))
	a.large.remember(lb)
}

// remember keeps an unmapped block's address range in the recent ring
// (l.mu held), so a late Free of it is a DoubleFree.
func (l *largeHeap) remember(lb *largeBlock) {
	l.recent[l.recentPos] = lb
	l.recentPos = (l.recentPos + 1) % len(l.recent)
}

// trimCache unmaps cached blocks, oldest first, until n more bytes fit
// under Options.Limit; it reports whether any were unmapped.
func (a *Allocator) trimCache(n int64) bool {
	l := &a.large
	l.mu.Lock()
	defer l.mu.Unlock()
	trimmed := false
	for len(l.cache) > 0 && a.mapped.Load()+n > a.opts.Limit {
		a.unmapOldestCached()
		trimmed = true
	}
	// Then the pages the hardened quarantine kept for the cache.
	for _, lb := range l.quarantined {
		if a.mapped.Load()+n <= a.opts.Limit {
			break
		}
		trimmed = a.dropKept(lb) || trimmed
	}
	return trimmed
}

// dropKept gives back the pages of a quarantined large block that kept
// them for the cache (a.large.mu held); the block stays quarantined and
// PROT_NONE. It reports whether there were any.
func (a *Allocator) dropKept(lb *largeBlock) bool {
	if !lb.kept {
		return false
	}
	unix.Madvise(lb.payload(), unix.MADV_DONTNEED)
	lb.kept = false
	a.large.kept -= int64(lb.span)
	a.mapped.Add(-int64(lb.span))
	return true
}

// reuseLarge takes the best-fitting cached block for span bytes at
// alignment al (no more than twice the span, so little is wasted) and
// turns it into a fresh, zeroed n-byte block; nil if none fits. Pages
// beyond span become guard pages for good: the rear guard still follows
// the payload's last page.
func (a *Allocator) reuseLarge(n int, span, al uintptr) *largeBlock {
	l := &a.large
	l.mu.Lock()
	best := -1
	for i, lb := range l.cache {
		if lb.span >= span && lb.span <= 2*span && uintptr(lb.p)%al == 0 &&
			(best < 0 || lb.span < l.cache[best].span) {
			best = i
		}
	}
	if best < 0 {
		l.mu.Unlock()
		return nil
	}
	old := l.cache[best]
	l.cache = append(l.cache[:best], l.cache[best+1:]...)
	l.cacheBytes -= int64(old.span)
	l.mu.Unlock()

	pay := old.payload()
	if old.none && unix.Mprotect(pay[:span], unix.PROT_READ|unix.PROT_WRITE) != nil {
		l.mu.Lock()
		a.unmapFreed(old)
		l.mu.Unlock()
		return nil
	}
	if old.span > span {
		retire(pay[span:], old.none)
		a.mapped.Add(-int64(old.span - span))
	}
	clear(pay[:n])
	return &largeBlock{mem: old.mem, p: old.p, size: n, span: span}
}
