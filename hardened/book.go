package hardened

import (
	"reflect"
	"sync"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"
)

// This file is the record book: what a crash monitor (Monitor) needs to
// turn a fault into a report, kept where a second process can read it
// after this one has died. It is one process-wide shared mapping of a
// memfd, the way Android's debuggerd reads GWP-ASan's metadata out of a
// crashed process: the address ranges of every allocator (live or
// closed) and of its zero-size region, and a record per large and
// sampled block (its mapping, payload, size, state, allocation and free
// sites as raw return addresses). It is written only where memory is
// mapped, unmapped or sampled, never on the small-block paths, so it
// costs nothing per ordinary Alloc or Free.
//
// Records are never freed: each ring overwrites its oldest entry, and a
// reader takes the newest record that holds an address (gen orders them).
// A writer clears gen, writes the record, then stores gen last.

const (
	bookMagic   = 0x6b6f6f4268617264 // "hardBook"
	bookRanges  = 512
	bookLarge   = 2048
	bookSampled = 1024
	bookDepth   = 16
)

// Range kinds and states.
const (
	rangeClasses = 1 // an allocator's size-class reservation
	rangeZero    = 2 // an allocator's zero-size region (hardened builds)
	rangeSample  = 3 // an allocator's sampled-block pool

	stateOpen   = 1
	stateClosed = 2
)

// Block record kinds and states.
const (
	recLarge   = 1
	recSampled = 2

	recLive  = 1
	recFreed = 2
)

type bookSite struct {
	g, seq uint64
	n      uint64
	pcs    [bookDepth]uintptr
}

type bookRange struct {
	gen       uint64
	lo, hi    uintptr
	kind      uint32
	state     uint32
	allocator uint64 // the allocator's id (New's order in the process)
	// Class ranges: where a reader of this process's memory (the -asan
	// reporter) finds a slot's header and its site record: the classes'
	// region size (1<<shift), and in hardened builds the site records,
	// the address of their per-class offsets and of the stack depot's
	// slice of stacks.
	shift                  uint64
	meta, metaStart, depot uintptr
}

type bookRec struct {
	gen         uint64
	lo, hi      uintptr // the whole mapping or slot, guard pages included
	p           uintptr // payload start
	size        int64
	kind, state uint32
	allocator   uint64
	alloc, free bookSite
}

type bookHeader struct {
	magic  uint64
	anchor uintptr // the address of Monitor in the writing process: readers rebase PCs by it
	gen    atomic.Uint64
	ranges atomic.Uint64 // next range slot (mod bookRanges)
	large  atomic.Uint64 // next large record
	sample atomic.Uint64 // next sampled record
}

type bookLayout struct {
	hdr     bookHeader
	ranges  [bookRanges]bookRange
	large   [bookLarge]bookRec
	sampled [bookSampled]bookRec
}

const bookSize = (unsafe.Sizeof(bookLayout{}) + 4095) &^ 4095

var book struct {
	once sync.Once
	fd   int
	l    *bookLayout
	mu   sync.Mutex // serializes writers of the rings' slots
	ids  atomic.Uint64
}

// theBook returns the process's record book, creating it on first use;
// nil where memfd_create is not available (the monitor then reports
// faults without records).
func theBook() *bookLayout {
	book.once.Do(func() {
		fd, err := unix.MemfdCreate("hardalloc-book", unix.MFD_CLOEXEC)
		if err != nil {
			return
		}
		if unix.Ftruncate(fd, int64(bookSize)) != nil {
			unix.Close(fd)
			return
		}
		mem, err := unix.Mmap(fd, 0, int(bookSize), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
		if err != nil {
			unix.Close(fd)
			return
		}
		book.fd = fd
		book.l = (*bookLayout)(unsafe.Pointer(&mem[0]))
		book.l.hdr.magic = bookMagic
		book.l.hdr.anchor = reflect.ValueOf(Monitor).Pointer()
	})
	return book.l
}

// bookAddRange records an address range of allocator id and returns its
// slot, or -1 without a book.
func bookAddRange(id uint64, lo, hi uintptr, kind uint32) int {
	b := theBook()
	if b == nil {
		return -1
	}
	book.mu.Lock()
	defer book.mu.Unlock()
	// Reuse the oldest closed range first, so a process with many live
	// allocators (fuzz pools) keeps theirs.
	i := int(b.hdr.ranges.Add(1)-1) % bookRanges
	for k := range bookRanges {
		j := (i + k) % bookRanges
		if r := &b.ranges[j]; r.gen == 0 || r.state == stateClosed {
			i = j
			break
		}
	}
	r := &b.ranges[i]
	atomic.StoreUint64(&r.gen, 0)
	r.lo, r.hi, r.kind, r.state, r.allocator = lo, hi, kind, stateOpen, id
	atomic.StoreUint64(&r.gen, b.hdr.gen.Add(1))
	return i
}

// bookSetClasses records where a class range's slots and site records
// are (bookRange).
func bookSetClasses(i int, shift uint, meta, metaStart, depot uintptr) {
	if i < 0 || book.l == nil {
		return
	}
	r := &book.l.ranges[i]
	r.shift, r.meta, r.metaStart, r.depot = uint64(shift), meta, metaStart, depot
}

// bookCloseRange marks range slot i closed (its memory unmapped).
func bookCloseRange(i int) {
	if i < 0 || book.l == nil {
		return
	}
	atomic.StoreUint32(&book.l.ranges[i].state, stateClosed)
}

// bookRecord claims the next record of a ring (large or sampled) for a
// block of allocator id; nil without a book.
func bookRecord(kind uint32, id uint64, lo, hi, p uintptr, size int) *bookRec {
	b := theBook()
	if b == nil {
		return nil
	}
	var r *bookRec
	if kind == recLarge {
		r = &b.large[(b.hdr.large.Add(1)-1)%bookLarge]
	} else {
		r = &b.sampled[(b.hdr.sample.Add(1)-1)%bookSampled]
	}
	atomic.StoreUint64(&r.gen, 0)
	r.lo, r.hi, r.p, r.size, r.kind, r.state, r.allocator = lo, hi, p, int64(size), kind, recLive, id
	r.free = bookSite{}
	r.alloc = bookSite{}
	atomic.StoreUint64(&r.gen, b.hdr.gen.Add(1))
	return r
}

// owns reports whether r still describes the block at p (its ring may
// have moved on to another block).
func (r *bookRec) owns(p uintptr) bool { return r != nil && atomic.LoadUint64(&r.gen) != 0 && r.p == p }

func (s *bookSite) set(g, seq uint64, pcs []uintptr) {
	s.g, s.seq = g, seq
	s.n = uint64(copy(s.pcs[:], pcs))
}

func (s *bookSite) site(depth int, wrappers []string, delta uintptr) Site {
	if s.seq == 0 {
		return Site{}
	}
	st := make([]uintptr, s.n)
	for i := range st {
		st[i] = s.pcs[i] + delta
	}
	return Site{Goroutine: s.g, Seq: s.seq, Stack: st, depth: depth, wrappers: wrappers}
}

// setSite copies a Site into the book.
func (s *bookSite) setSite(x Site) { s.set(x.Goroutine, x.Seq, x.Stack) }

// newAllocatorID numbers allocators in the book.
func newAllocatorID() uint64 { return book.ids.Add(1) }
