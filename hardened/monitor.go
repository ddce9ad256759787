package hardened

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"reflect"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// This file is the crash monitor: Monitor starts a second process (this
// executable again) and hands it, through runtime/debug.SetCrashOutput,
// the crash text this process prints when it dies, and through an
// inherited file descriptor, the record book (book.go). When the crash
// is a fault on memory hardalloc owns, the monitor prints hardalloc's
// report for it: the block, the accessing goroutine's stack as the crash
// text gives it, and the block's allocation and free sites, symbolized by
// the same binary. This is how Android's debuggerd and Chrome's crash
// handler print GWP-ASan reports; Go's own pattern is the monitor in
// runtime/debug's SetCrashOutput example.

// monitorEnv marks the monitor process; its value is the record book's
// file descriptor.
const monitorEnv = "HARDALLOC_MONITOR_BOOK_FD"

func init() {
	if fd := os.Getenv(monitorEnv); fd != "" {
		n, _ := strconv.Atoi(fd)
		os.Exit(runMonitor(os.Stdin, n, os.Stderr))
	}
}

var monitorOnce struct {
	sync.Once
	err error
}

// Monitor makes faults on hardalloc's memory print hardalloc's report,
// whether or not they happen inside CatchFault: a guard page, a freed
// large block, a sampled block (Options.SampleRate), a 0-byte block
// (hardened builds) or the memory of a closed allocator. Call it first in
// main or TestMain; later calls do nothing.
//
// It starts one child process, this executable run again, which waits on
// a pipe set as the crash output (runtime/debug.SetCrashOutput) and does
// nothing else; the blocks' records live in a shared mapping (a memfd)
// the child reads after the crash. The process still dies as before,
// with Go's crash text, and the child adds hardalloc's report after it;
// a crash that is not a fault on hardalloc's memory gets nothing more.
// Allocation and free are not slowed: only the paths that map, unmap or
// sample memory write records. The child exits when this process does.
// If the monitor cannot start, Monitor prints why to stderr and the
// program runs on without it.
func Monitor() {
	monitorOnce.Do(func() {
		monitorOnce.err = startMonitor()
		if monitorOnce.err != nil {
			fmt.Fprintf(os.Stderr, "hardalloc: Monitor: %v (faults will not be reported)\n", monitorOnce.err)
		}
	})
}

func startMonitor() error {
	if theBook() == nil {
		return fmt.Errorf("memfd_create is not available")
	}
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	r, w, err := os.Pipe()
	if err != nil {
		return err
	}
	defer w.Close()
	cmd := exec.Command(exe)
	cmd.Args = []string{os.Args[0]}
	cmd.Env = append(os.Environ(), monitorEnv+"=3")
	cmd.Stdin = r
	cmd.Stderr = os.Stderr
	cmd.ExtraFiles = []*os.File{os.NewFile(uintptr(book.fd), "hardalloc-book")}
	err = cmd.Start()
	r.Close()
	if err != nil {
		return err
	}
	goStarted(func() { cmd.Wait() }) // reaps the child should it die first
	return debug.SetCrashOutput(w, debug.CrashOptions{})
}

// goStarted runs fn on a new goroutine and returns once that goroutine is
// running. hardalloc's own goroutines live as long as the process, and
// goroutine-leak checkers take their baseline when a test starts: one
// not yet scheduled shows runtime.goexit beneath its entry, which
// crlib's leaktest (pebble's) leaves out of the baseline, and then fails
// the first test for "leaking" it.
func goStarted(fn func()) {
	running := make(chan struct{})
	go func() {
		close(running)
		fn()
	}()
	<-running
}

// runMonitor is the monitor process: it reads the crash text until the
// monitored process exits (EOF), and if that was a fault on hardalloc's
// memory, writes the report to out. It returns the exit status.
func runMonitor(in io.Reader, fd int, out io.Writer) int {
	// The terminal's signals go to the whole process group: the monitor
	// must outlive its parent long enough to read the crash.
	signal.Ignore(syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGQUIT, syscall.SIGPIPE)
	text, _ := io.ReadAll(in)
	if len(text) == 0 {
		return 0
	}
	addr, ok := faultAddr(text)
	if !ok {
		return 0
	}
	mem, err := unix.Mmap(fd, 0, int(bookSize), unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		return 0
	}
	b := (*bookLayout)(unsafe.Pointer(&mem[0]))
	if b.hdr.magic != bookMagic {
		return 0
	}
	delta := reflect.ValueOf(Monitor).Pointer() - b.hdr.anchor
	r := explainBook(b, addr, delta)
	if r == nil {
		return 0
	}
	r.accessText = accessFrames(text)
	fmt.Fprintf(out, "\n%s", r.String())
	return 0
}

// faultAddr finds the faulting address in Go's crash text: the signal
// line "[signal SIGSEGV: segmentation violation code=... addr=0x... pc=...]".
func faultAddr(text []byte) (uintptr, bool) {
	sc := bufio.NewScanner(bytes.NewReader(text))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, "[signal SIGSEGV") && !strings.HasPrefix(line, "[signal SIGBUS") {
			continue
		}
		i := strings.Index(line, " addr=")
		if i < 0 {
			return 0, false
		}
		f := strings.Fields(line[i+len(" addr="):])
		if len(f) == 0 {
			return 0, false
		}
		v, err := strconv.ParseUint(strings.TrimPrefix(f[0], "0x"), 16, 64)
		return uintptr(v), err == nil
	}
	return 0, false
}

// accessFrames reads the faulting goroutine's stack from the crash text:
// the first goroutine after the signal line, without the runtime's own
// frames above the access (throw, sigpanic) and below the program
// (goexit).
func accessFrames(text []byte) []runtime.Frame {
	lines := strings.Split(string(text), "\n")
	i := 0
	for i < len(lines) && !strings.HasPrefix(lines[i], "[signal ") {
		i++
	}
	for i < len(lines) && !(strings.HasPrefix(lines[i], "goroutine ") && strings.HasSuffix(lines[i], "]:")) {
		i++
	}
	var out []runtime.Frame
	for i++; i+1 < len(lines) && lines[i] != "" && len(out) < 32; i += 2 {
		fn, loc := lines[i], strings.TrimSpace(lines[i+1])
		if strings.HasPrefix(fn, "created by ") || !strings.HasPrefix(lines[i+1], "\t") {
			break
		}
		if k := strings.LastIndexByte(fn, '('); k > 0 {
			fn = fn[:k]
		}
		if len(out) == 0 && strings.HasPrefix(fn, "runtime.") || fn == "runtime.goexit" {
			continue
		}
		if k := strings.Index(loc, " +0x"); k > 0 {
			loc = loc[:k]
		}
		f := runtime.Frame{Function: fn, File: loc}
		if k := strings.LastIndexByte(loc, ':'); k > 0 {
			f.File = loc[:k]
			f.Line, _ = strconv.Atoi(loc[k+1:])
		}
		out = append(out, f)
	}
	return out
}

// bookClosed reports whether allocator id's class range is closed.
func bookClosed(b *bookLayout, id uint64) bool {
	for i := range b.ranges {
		r := &b.ranges[i]
		if atomic.LoadUint64(&r.gen) != 0 && r.allocator == id && r.kind == rangeClasses {
			return atomic.LoadUint32(&r.state) == stateClosed
		}
	}
	return false
}

// explainBook is Explain from the record book, in the monitor process:
// the newest record or range that holds addr says what the fault was.
// delta rebases the recorded return addresses into this process.
func explainBook(b *bookLayout, addr, delta uintptr) *Report {
	var best *bookRec
	for i := range b.large {
		r := &b.large[i]
		if g := atomic.LoadUint64(&r.gen); g != 0 && addr >= r.lo && addr < r.hi && (best == nil || g > best.gen) {
			best = r
		}
	}
	var rng *bookRange
	for i := range b.ranges {
		r := &b.ranges[i]
		if g := atomic.LoadUint64(&r.gen); g != 0 && addr >= r.lo && addr < r.hi && (rng == nil || g > rng.gen) {
			rng = r
		}
	}
	if best != nil && (rng == nil || best.gen > rng.gen) {
		r := largeBookReport(best, addr, delta)
		if bookClosed(b, best.allocator) {
			r.Kind, r.Detail = UseAfterClose, fmt.Sprintf("an access to a large block of allocator #%d, which was closed", best.allocator)
		}
		return r
	}
	if rng == nil {
		return nil
	}
	if rng.state == stateClosed {
		return &Report{Kind: UseAfterClose, Op: "fault", Addr: addr, Size: -1, Class: -1,
			Detail: fmt.Sprintf("an access to the memory of allocator #%d, which was closed", rng.allocator)}
	}
	switch rng.kind {
	case rangeSample:
		return explainPool(addr, rng.lo, func(i int) *sampledBlock {
			var newest *bookRec
			lo := rng.lo + pageSize + uintptr(i)*2*pageSize
			for k := range b.sampled {
				r := &b.sampled[k]
				if g := atomic.LoadUint64(&r.gen); g != 0 && r.allocator == rng.allocator && r.lo == lo && (newest == nil || g > newest.gen) {
					newest = r
				}
			}
			if i < 0 || newest == nil {
				return nil
			}
			return &sampledBlock{p: newest.p, size: int(newest.size), live: newest.state == recLive, used: true,
				alloc: newest.alloc.site(bookDepth, nil, delta), free: newest.free.site(bookDepth, nil, delta)}
		})
	case rangeZero:
		return &Report{Kind: InvalidAccess, Op: "fault", Addr: addr, Size: 0, Class: -1,
			Detail: "an access through a 0-byte block (Alloc(0)): every such block's address is in a region where nothing may be read or written"}
	}
	// A committed slot's memory does not fault, except in a slab a
	// hardened build purged: read-only until reused (seal). The book does
	// not say which slabs are purged.
	return &Report{Kind: InvalidAccess, Op: "fault", Addr: addr, Size: -1, Class: -1,
		Detail: fmt.Sprintf("an access to the address space of allocator #%d where no block is: a stray pointer, an overflow past a slab's end, or a write through a pointer to a block freed before its slab went back to the OS (read-only until reused)", rng.allocator)}
}

func largeBookReport(r *bookRec, addr, delta uintptr) *Report {
	rep := &Report{Op: "fault", Addr: addr, Block: r.p, Size: int(r.size), Class: -1, Offset: int(addr - r.p),
		Alloc: r.alloc.site(bookDepth, nil, delta), Free: r.free.site(bookDepth, nil, delta)}
	switch {
	case r.state == recFreed:
		rep.Kind, rep.Detail = UseAfterFree, "an access to a freed large block"
	case addr < r.p:
		rep.Kind, rep.Detail = Underflow, "an access to the guard page before a large block"
	case addr >= r.p+uintptr(r.size):
		rep.Kind, rep.Detail = Overflow, "an access past the end of a large block"
	default:
		rep.Kind, rep.Detail = InvalidAccess, "a fault inside a live large block"
	}
	return rep
}
