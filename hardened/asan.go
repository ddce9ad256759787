//go:build asan

package hardened

// Access-time detection under -asan (see shadow.go for what is poisoned
// when). This file and asan0.go are the only two that know the build tag.
// Cgo is used only through package asanrt (a cgo package cannot hold this
// package's Go assembly), once, at init, to learn where AddressSanitizer
// keeps its shadow memory and to install the error-report callback.
// Shadow bytes are then written from Go, without a cgo call per block.
//
// The report. ASan prints the bad access (kind, READ or WRITE, the
// accessing pc) and then aborts; it knows nothing of hardalloc's blocks.
// Its error-report callback runs in C on the faulting thread, where Go code
// cannot run, so the callback hands the address, pc and sp through a pipe
// to a watcher goroutine and waits (watchTimeout) for its answer. The
// watcher asks every live allocator to Explain the address and delivers
// that report like any other (deliver): the block, the offset, the
// allocation and free sites, and the accessing goroutine's stack, unwound
// from the sp ASan reports along the frame-pointer chain. The watcher
// needs a P other than the faulting goroutine's; when it gets none in
// time (GOMAXPROCS=1, or a stop-the-world waiting for the faulting P),
// the reporter process below explains the address from outside, and
// prints the same report without OnReport.

import (
	"encoding/binary"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"reflect"
	"runtime"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/hardalloc/hardalloc/internal/asanrt"
)

const asanEnabled = true

var shadowScale, shadowOffset uintptr

func init() {
	shadowScale, shadowOffset = asanrt.ShadowMapping()
	if shadowScale != 3 {
		panic("hardalloc: AddressSanitizer shadow scale is not 8 bytes per shadow byte")
	}
}

func shadowOf(p uintptr) uintptr { return p>>shadowScale + shadowOffset }

// shadowLine is the shadow of p, for prefetchSlot. A slot leaving the
// quarantine has a cold shadow too, which the Alloc that takes it
// writes; a store that misses waits in the store buffer, and the
// compare-and-swap of the Free after it waits for that store.
func shadowLine(p uintptr) uintptr { return shadowOf(p) }

// shadowSet marks [p, p+n) with shadow value v; p and n are multiples
// of 8. Shadow memory is written with plain, uninstrumented stores (the
// shadow of the shadow is ASan's protected gap: an instrumented access
// would fault).
//
//go:norace
//go:noinline
//go:nocheckptr
func shadowSet(p, n uintptr, v byte) {
	if n == 0 {
		return
	}
	s := unsafe.Slice((*byte)(addrPtr(shadowOf(p))), n>>3)
	if v == 0 {
		clear(s) // memclr is not instrumented
		return
	}
	// 32 bytes a step, without bounds checks: a 64 KiB block's 8 KiB of
	// shadow is written at its Alloc and its Free.
	w := uint64(v) * 0x0101010101010101
	q, m, i := unsafe.Pointer(unsafe.SliceData(s)), uintptr(len(s)), uintptr(0)
	for ; i+32 <= m; i += 32 {
		*(*[4]uint64)(unsafe.Add(q, i)) = [4]uint64{w, w, w, w}
	}
	for ; i+8 <= m; i += 8 {
		*(*uint64)(unsafe.Add(q, i)) = w
	}
	for ; i < m; i++ {
		*(*byte)(unsafe.Add(q, i)) = v
	}
}

// shadowLive makes exactly [p, p+n) addressable; p is a multiple of 8.
// The granule holding the last byte says how many of its bytes are (ASan's
// partial granule), so an access one byte past the end is reported.
//
//go:norace
//go:noinline
//go:nocheckptr
func shadowLive(p, n uintptr) {
	shadowSet(p, n&^7, 0)
	if r := n & 7; r != 0 {
		*(*byte)(addrPtr(shadowOf(p + n&^7))) = byte(r)
	}
}

// shadowSmall is the most shadow bytes of a slot (two words: slots of up
// to 128 bytes with the header) that shadowSlot and shadowDead write word
// by word, in one pass; a larger slot's are written by shadowSet's loops,
// one region at a time (at 256 B, composing five words cost 3-7% more
// than the loops; at 16 and 64 B the composed words take 7-11% off the
// -asan pair).
const shadowSmall = 16

// shadowSlot gives the slot at s, whose m shadow bytes (an even number)
// it covers, a live payload of n bytes from its shadow byte lo on: the
// payload addressable (its last granule partial, as shadowLive makes
// it), everything else in the slot heap redzone. A small slot's shadow
// is written a word at a time, each word composed from the two bounds
// (three calls of shadowSet and shadowLive, each a loop, cost the -asan
// pair more than the stores); no store goes past the slot's shadow.
//
//go:norace
//go:nocheckptr
func shadowSlot(s, m, lo, n uintptr) {
	if m > shadowSmall {
		pay := s + lo<<3
		shadowSet(s, pay-s, shadowRedzone)
		shadowLive(pay, n)
		tail := alignUp(pay+n, 8)
		shadowSet(tail, s+m<<3-tail, shadowRedzone)
		return
	}
	const rz = shadowRedzone * 0x0101010101010101
	hi := lo + n>>3 // the first shadow byte not wholly addressable
	part := uint64(n & 7)
	sh := shadowOf(s)
	for i := uintptr(0); i < m; i += 8 {
		w := uint64(rz) &^ (lowBytes(hi-i) &^ lowBytes(lo-i))
		if part != 0 && hi-i < 8 {
			w = w&^(0xff<<(8*(hi-i))) | part<<(8*(hi-i))
		}
		storeShadow(sh+i, m-i, w)
	}
}

// shadowDead marks the body of a freed slot, its m shadow bytes from
// p's on, freed (kAsanHeapFreeMagic).
//
//go:norace
//go:nocheckptr
func shadowDead(p, m uintptr) {
	if m > shadowSmall {
		shadowSet(p, m<<3, shadowFreed)
		return
	}
	sh := shadowOf(p)
	for i := uintptr(0); i < m; i += 8 {
		storeShadow(sh+i, m-i, shadowFreed*0x0101010101010101)
	}
}

// lowBytes is a mask of the low k bytes of a word: none for k <= 0 (k
// wrapped below zero), all for k >= 8.
func lowBytes(k uintptr) uint64 {
	if int(k) <= 0 {
		return 0
	}
	if k >= 8 {
		return ^uint64(0)
	}
	return 1<<(8*k) - 1
}

// storeShadow stores the low min(k, 8) bytes of w at shadow address sh;
// k is even.
//
//go:norace
//go:nocheckptr
func storeShadow(sh, k uintptr, w uint64) {
	p := addrPtr(sh)
	switch {
	case k >= 8:
		*(*uint64)(p) = w
	case k >= 4:
		*(*uint32)(p) = uint32(w)
		if k == 6 {
			*(*uint16)(unsafe.Add(p, 4)) = uint16(w >> 32)
		}
	default:
		*(*uint16)(p) = uint16(w)
	}
}

// storeHeader writes a header word the program may not touch (it is heap
// redzone): sync/atomic operations are not instrumented.
func storeHeader(slot unsafe.Pointer, v uint64) { atomic.StoreUint64(hdrWord(slot), v) }

var asanState struct {
	once   sync.Once
	mu     sync.Mutex
	allocs map[*Allocator]struct{}
}

// asanRegister makes a's blocks known to the watcher.
func asanRegister(a *Allocator) {
	asanState.once.Do(startWatcher)
	asanState.mu.Lock()
	asanState.allocs[a] = struct{}{}
	asanState.mu.Unlock()
}

func asanUnregister(a *Allocator) {
	asanState.mu.Lock()
	delete(asanState.allocs, a)
	asanState.mu.Unlock()
}

// watchTimeout is how long ASan's callback waits for the watcher before
// it asks the reporter process instead.
const watchTimeout = 500 * time.Millisecond

func startWatcher() {
	asanState.allocs = make(map[*Allocator]struct{})
	req, rep := [2]int{-1, -1}, [2]int{-1, -1}
	if asanNoWatcher || unix.Pipe2(req[:], unix.O_CLOEXEC) != nil || unix.Pipe2(rep[:], unix.O_CLOEXEC) != nil {
		req, rep = [2]int{-1, -1}, [2]int{-1, -1}
	}
	fbReq, fbAck := startReporter()
	asanrt.InstallReportCallback(req[1], rep[0], watchTimeout, fbReq, fbAck)
	if req[0] >= 0 {
		goStarted(func() { watch(req[0], rep[1]) })
	}
}

// asanNoWatcher, set by tests before the first allocator, leaves every
// report to the reporter process.
var asanNoWatcher bool

// The reporter. ASan's callback runs on the thread that made the bad
// access, in C, holding that goroutine's P: if a stop-the-world begins
// (a GC cycle, say), it waits for that P forever, and the watcher, which
// needs a P of its own, never runs. So the callback falls back on a second
// process, this executable run again (reporterEnv), started with the
// first allocator: the callback hands it the access and the goroutine's
// return addresses, walked in C, and it explains the address from the
// record book and from the stopped process's memory (remote.go), prints
// hardalloc's report, and answers. OnReport cannot run then: a harness
// gets the report on stderr alone.
const reporterEnv = "HARDALLOC_ASAN_REPORTER"

func init() {
	if os.Getenv(reporterEnv) != "" {
		os.Exit(runReporter(os.Stdin, os.NewFile(3, "book"), os.NewFile(4, "ack"), os.Stderr))
	}
}

// startReporter starts the reporter and returns the pipe ends the
// callback writes to and reads from, or -1s.
func startReporter() (req, ack int) {
	if theBook() == nil {
		return -1, -1
	}
	exe, err := os.Executable()
	if err != nil {
		return -1, -1
	}
	in, inW, err := os.Pipe()
	if err != nil {
		return -1, -1
	}
	ackR, ackW, err := os.Pipe()
	if err != nil {
		in.Close()
		inW.Close()
		return -1, -1
	}
	cmd := exec.Command(exe)
	cmd.Args = []string{os.Args[0]}
	cmd.Env = append(os.Environ(), reporterEnv+"=1")
	cmd.Stdin = in
	cmd.Stderr = os.Stderr
	cmd.ExtraFiles = []*os.File{os.NewFile(uintptr(book.fd), "hardalloc-book"), ackW}
	err = cmd.Start()
	in.Close()
	ackW.Close()
	if err != nil {
		inW.Close()
		ackR.Close()
		return -1, -1
	}
	// Where Yama restricts ptrace to ancestors, let the reporter read
	// this process's memory.
	unix.Prctl(unix.PR_SET_PTRACER, uintptr(cmd.Process.Pid), 0, 0, 0)
	goStarted(func() { cmd.Wait() })
	reporterFiles = [2]*os.File{inW, ackR} // kept open for the process's life
	return int(inW.Fd()), int(ackR.Fd())
}

// reporterFiles holds the pipes' files so no finalizer closes them.
//
//lint:ignore U1000 only written: being reachable is its purpose
var reporterFiles [2]*os.File

// runReporter is the reporter process: for each access the callback
// sends (asanrt.Fallback), it prints hardalloc's report to out and
// answers on ack. It returns at EOF: the served process has exited.
func runReporter(in io.Reader, bookFile, ack *os.File, out io.Writer) int {
	signal.Ignore(syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGQUIT, syscall.SIGPIPE)
	mem, err := unix.Mmap(int(bookFile.Fd()), 0, int(bookSize), unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		return 0
	}
	b := (*bookLayout)(unsafe.Pointer(&mem[0]))
	if b.hdr.magic != bookMagic {
		return 0
	}
	delta := reflect.ValueOf(Monitor).Pointer() - b.hdr.anchor
	m := remoteMem(os.Getppid())
	for {
		var msg asanrt.Fallback
		if binary.Read(in, binary.NativeEndian, &msg) != nil {
			return 0
		}
		if r := explainRemote(b, m, uintptr(msg.Addr), delta); r != nil {
			r.Op = "read"
			if msg.Write != 0 {
				r.Op = "write"
			}
			r.AccessSize = int(msg.Size)
			st := make([]uintptr, min(msg.N, asanrt.FallbackDepth))
			for i := range st {
				st[i] = uintptr(msg.PCs[i]) + delta
			}
			r.Access = Site{Stack: st}
			io.WriteString(out, remoteSummary(m)+r.String())
		}
		ack.Write([]byte{1})
	}
}

// watch answers the callback: one access at a time (ASan serializes its
// reports).
func watch(req, rep int) {
	var buf [40]byte
	for {
		n, err := unix.Read(req, buf[:])
		if err == unix.EINTR {
			continue
		}
		if err != nil || n != len(buf) {
			return
		}
		w := func(i int) uintptr { return uintptr(binary.NativeEndian.Uint64(buf[8*i:])) }
		if a, r := explainAccess(w(0), w(1), w(2), int(w(3)), w(4) != 0); r != nil {
			deliver(a, r)
		}
		unix.Write(rep, []byte{1})
	}
}

// deliver hands hardalloc's part of an ASan report to the allocator's
// reporting, like every other report: printed to Options.ReportOutput
// (stderr by default), and given to Options.OnReport if one is set, on
// the watcher goroutine, before ASan aborts the process (so a harness
// that collects reports, as JSON say, gets this one too; a panic in
// OnReport is recovered: ASan's abort follows either way).
func deliver(a *Allocator, r *Report) {
	text := "==hardalloc== the address above is in hardalloc memory:\n" + r.String()
	w := a.output()
	fd := -1
	if w == os.Stderr {
		fd = 2 // written in C, right as it is claimed
	}
	if !asanrt.Claim(fd, text) {
		return // the reporter process has it
	}
	if fd < 0 {
		io.WriteString(w, text)
	}
	if a.opts.OnReport != nil {
		func() {
			defer func() { recover() }()
			a.opts.OnReport(r)
		}()
	}
}

// explainAccess is hardalloc's part of an ASan report: the block the
// address belongs to, with its sites and the accessing stack, and the
// allocator that owns it.
func explainAccess(addr, pc, sp uintptr, size int, write bool) (*Allocator, *Report) {
	asanState.mu.Lock()
	var r *Report
	var owner *Allocator
	for a := range asanState.allocs {
		if r = a.Explain(addr); r != nil {
			owner = a
			break
		}
	}
	asanState.mu.Unlock()
	if r == nil {
		owner, r = explainClosed(addr)
	}
	if r == nil {
		return nil, nil
	}
	r.Op = "read"
	if write {
		r.Op = "write"
	}
	r.AccessSize = size
	r.Access = Site{Stack: unwind(pc, sp)}
	return owner, r
}

// unwind returns the accessing goroutine's stack: pc, the access's return
// address in the function that called the runtime's asanread or asanwrite
// (or internal/asan's Read and Write), then the return addresses along the
// goroutine's frame-pointer chain, which starts exactly where those
// functions put it: sp is their caller's stack pointer at the call
// (GetCallerSP), so the call pushed the return address, pc, at sp-8, and
// their prologue saved the caller's frame pointer at sp-16. A chain whose
// first word does not check (pc not at sp-8), a pc outside Go code (a cgo
// access: ASan's own report shows the C frames) and other architectures
// give pc alone: a frame the stack does not hold is never named. The
// goroutine is stopped in ASan's callback while this runs; a fault ends
// the walk.
func unwind(pc, sp uintptr) (stack []uintptr) {
	stack = []uintptr{pc}
	if runtime.GOARCH != "amd64" || !goPC(pc) || sp < 16 {
		return stack
	}
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() { recover() }()
	if loadWord(sp-8) != pc {
		return stack
	}
	fp := loadWord(sp - 16)
	for prev := sp - 16; fp > prev && fp-prev < 1<<30 && fp&7 == 0 && len(stack) < 64; {
		ret := loadWord(fp + 8)
		if !goPC(ret) {
			break
		}
		stack = append(stack, ret)
		prev, fp = fp, loadWord(fp)
	}
	return stack
}

func goPC(pc uintptr) bool { return pc > 1 && runtime.FuncForPC(pc-1) != nil }

// loadWord reads a word of the stopped goroutine's stack, uninstrumented.
//
//go:norace
//go:noinline
//go:nocheckptr
func loadWord(p uintptr) uintptr { return *(*uintptr)(addrPtr(p)) }

// addrPtr turns an address outside the Go heap (shadow memory, a stopped
// goroutine's stack) into a pointer.
func addrPtr(p uintptr) unsafe.Pointer { return *(*unsafe.Pointer)(unsafe.Pointer(&p)) }

// After Close. A closed allocator's memory stays reserved, PROT_NONE and
// poisoned as freed for as long as the last keepClosedCount closed
// allocators', so a late Go access is an ASan report (heap-use-after-free)
// with hardalloc's word on it (use after close) instead of a bare fault
// or, once the addresses are reused, nothing. Older ones are unmapped
// and their shadow cleared, bounding the address space (the class
// reservation, up to 89 GiB each, costs no memory) and the shadow kept.

const keepClosedCount = 8

// closedAlloc is what is kept of a closed allocator: its reservation
// with the extent of each class's carved slabs, and its large mappings.
type closedAlloc struct {
	a      *Allocator
	carved [numClasses]uintptr
	large  [][]byte
}

var asanClosed struct {
	sync.Mutex
	list []*closedAlloc
}

// keepClosed keeps a large mapping of an allocator being closed (Close
// sets closed before it drops its large blocks); false before Close.
func (a *Allocator) keepClosed(mem []byte) bool {
	if !a.closed.Load() || a.closing == nil {
		return false
	}
	unix.Mprotect(mem, unix.PROT_NONE)
	unix.Madvise(mem, unix.MADV_DONTNEED)
	shadowSet(uintptr(unsafe.Pointer(&mem[0])), uintptr(len(mem)), shadowFreed)
	a.closing.large = append(a.closing.large, mem)
	return true
}

// unmapReservation keeps the class reservation of a closed allocator:
// its carved slabs' pages go back to the OS and turn PROT_NONE, and
// their shadow says freed.
func (a *Allocator) unmapReservation() error {
	ca := a.closing
	for c := range numClasses {
		if n := ca.carved[c]; n > 0 {
			lo := a.classBase(c)
			mem := a.mem[lo : lo+alignUp(n, pageSize)]
			unix.Mprotect(mem, unix.PROT_NONE)
			unix.Madvise(mem, unix.MADV_DONTNEED)
			shadowSet(uintptr(unsafe.Pointer(&mem[0])), n, shadowFreed)
		}
	}
	asanClosed.Lock()
	asanClosed.list = append(asanClosed.list, ca)
	var old *closedAlloc
	if len(asanClosed.list) > keepClosedCount {
		old = asanClosed.list[0]
		asanClosed.list = asanClosed.list[1:]
	}
	asanClosed.Unlock()
	if old != nil {
		for _, m := range old.large {
			asanUnmap(m)
			unix.Munmap(m)
		}
		for c, n := range old.carved {
			if n > 0 {
				shadowSet(uintptr(old.a.slotAt(c, 0)), n, 0)
			}
		}
		return unix.Munmap(old.a.mem)
	}
	return nil
}

// startClosing records, as Close begins, how far each class's shadow was
// set (asanCarved), before the counts are cleared.
func (a *Allocator) startClosing() {
	ca := &closedAlloc{a: a}
	for c := range numClasses {
		if a.loc[c].committed.Load() > 0 {
			ca.carved[c] = a.asanCarved(c)
		}
	}
	a.closing = ca
}

// explainClosed says what an address in a closed allocator's kept memory
// was.
func explainClosed(addr uintptr) (*Allocator, *Report) {
	asanClosed.Lock()
	defer asanClosed.Unlock()
	for _, ca := range asanClosed.list {
		in := addr-uintptr(ca.a.base) < ca.a.regionSize()
		for _, m := range ca.large {
			in = in || addr-uintptr(unsafe.Pointer(&m[0])) < uintptr(len(m))
		}
		if in {
			return ca.a, &Report{Kind: UseAfterClose, Addr: addr, Size: -1, Class: -1,
				Detail: "an access to the memory of an allocator, which was closed (-asan builds keep it reserved and poisoned for a while, so that late accesses are reported)"}
		}
	}
	return nil, nil
}

// asanCarved is how far from its region's start class c's shadow has been
// set: its carved slabs and the one after them (asanSlab).
func (a *Allocator) asanCarved(c int) uintptr {
	return min(uintptr(a.loc[c].committed.Load())+uintptr(1)<<classSlabShift[c], a.classRegion())
}
