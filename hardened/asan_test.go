//go:build asan

package hardened_test

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"reflect"
	"runtime"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
	"unsafe"

	"github.com/hardalloc/hardalloc/hardened"
	"github.com/hardalloc/hardalloc/hardened/internal/cstore"
	"github.com/hardalloc/hardalloc/internal/harness"
)

// The access-time catalog: each row makes one bad access to hardalloc
// memory with an ordinary, instrumented Go (or C) load or store. Under
// -asan it must be stopped at the access: AddressSanitizer's report (kind,
// READ or WRITE) and hardalloc's (the block, the offset, the accessing
// stack, the allocation and free sites). ASan aborts, so every row runs in
// a child process of this test binary.

type accessRow struct {
	name  string
	run   func(a *hardened.Allocator)
	asan  string   // ASan's bug type
	op    string   // READ or WRITE
	where string   // hardalloc's description of the address
	frame string   // the function that made the access, on the access stack
	freed bool     // a free site is expected
	wild  bool     // no block there any more: no sites
	extra []string // more lines the output must hold
	// stack is the exact access stack (function names, without
	// runtime.goexit), read from the report OnReport prints as JSON.
	stack []string
	// watcher: the row checks what OnReport receives, which only the
	// watcher goroutine can give it.
	watcher bool
	// zero: a 0-byte block, whose sites (hardened builds) the reporter
	// process cannot read (they are in a Go map): it names the block.
	zero bool
}

var sinkByte byte

//go:noinline
func readAfterFreeSmall(a *hardened.Allocator) {
	b := rowAlloc(a, 40)
	a.Free(b)
	sinkByte = b[7]
}

//go:noinline
func readAfterFreeLarge(a *hardened.Allocator) {
	b := rowAlloc(a, 300<<10)
	a.Free(b)
	sinkByte = b[200<<10]
}

//go:noinline
func writeAfterFreeElsewhere(a *hardened.Allocator) {
	b := rowAlloc(a, 48)
	a.Free(b)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		lateWrite(b)
	}()
	wg.Wait()
}

//go:noinline
func lateWrite(b []byte) { b[4] = 1 }

//go:noinline
func readPastEnd(a *hardened.Allocator) {
	b := rowAlloc(a, 40) // 40 bytes in a 48-byte class: byte 40 is class slack
	p := unsafe.Slice(unsafe.SliceData(b), 41)
	sinkByte = p[40]
}

//go:noinline
func readPastEndExact(a *hardened.Allocator) {
	b := rowAlloc(a, 4096)
	p := unsafe.Slice(unsafe.SliceData(b), 4097)
	sinkByte = p[4096]
}

//go:noinline
func writeBeforeStart(a *hardened.Allocator) {
	b := rowAlloc(a, 64)
	*(*byte)(unsafe.Add(unsafe.Pointer(unsafe.SliceData(b)), -1)) = 7
}

//go:noinline
func readQuarantinedLater(a *hardened.Allocator) {
	b := rowAlloc(a, 100)
	a.Free(b)
	for range 5000 {
		c := rowAlloc(a, 100)
		a.Free(c)
	}
	sinkByte = b[50]
}

//go:noinline
func touchZeroBlock(a *hardened.Allocator) {
	b := rowAlloc(a, 0)
	p := unsafe.Slice(unsafe.SliceData(b), 1) // indexed, not dereferenced: a Go nil check would touch the page first
	sinkByte = p[0]
}

//go:noinline
func writeZeroBlock(a *hardened.Allocator) {
	b := rowAlloc(a, 0)
	p := unsafe.Slice(unsafe.SliceData(b), 16)
	p[9] = 1
}

//go:noinline
func readAfterClose(a *hardened.Allocator) {
	b := rowAlloc(a, 64)
	c := rowAlloc(a, 300<<10)
	a.Free(b)
	a.Free(c)
	if err := a.Close(); err != nil {
		panic(err)
	}
	sinkByte = b[10]
}

//go:noinline
func readLargeAfterClose(a *hardened.Allocator) {
	b := rowAlloc(a, 64)
	c := rowAlloc(a, 300<<10)
	a.Free(b)
	a.Free(c)
	if err := a.Close(); err != nil {
		panic(err)
	}
	sinkByte = c[1000]
}

//go:noinline
func readShrunkTail(a *hardened.Allocator) {
	b := rowAlloc(a, 100)
	old := b
	if _, err := a.Realloc(b, 90); err != nil {
		panic(err)
	}
	sinkByte = old[95] // released builds shrink in place, hardened ones move: gone either way
}

// sampledRowAlloc is an allocator that samples every allocation: release
// builds then record sites too.
func sampledRowAlloc() *hardened.Allocator {
	a, err := hardened.New(hardened.Options{Seed: 1, SampleRate: 1})
	if err != nil {
		panic(err)
	}
	return a
}

// readAfterFreeOnReport reads a freed block of an allocator with
// OnReport set: ASan's report goes to it too (here, as JSON on stderr).
//
//go:noinline
func readAfterFreeOnReport(*hardened.Allocator) {
	a, err := hardened.New(hardened.Options{Seed: 1, OnReport: func(r *hardened.Report) {
		j, _ := json.Marshal(r)
		os.Stderr.WriteString("ONREPORT " + string(j) + "\n")
	}})
	if err != nil {
		panic(err)
	}
	b := rowAlloc(a, 40)
	a.Free(b)
	sinkByte = b[3]
}

//go:noinline
func readAfterFreeSampled(*hardened.Allocator) {
	a := sampledRowAlloc()
	b := rowAlloc(a, 200)
	a.Free(b)
	sinkByte = b[150]
}

//go:noinline
func writePastEndSampled(*hardened.Allocator) {
	a := sampledRowAlloc()
	rowAlloc(a, 64) // at the start of its page
	b := rowAlloc(a, 64)
	*(*byte)(unsafe.Add(unsafe.Pointer(&b[0]), 64)) = 1
}

//go:noinline
func readAfterReset(a *hardened.Allocator) {
	b := rowAlloc(a, 32)
	harness.Reset(a, 9)
	sinkByte = b[0]
}

//go:noinline
func cWriteStale(a *hardened.Allocator) {
	b := rowAlloc(a, 48)
	a.Free(b)
	cstore.Write(unsafe.Pointer(unsafe.SliceData(b)), 8, 1)
}

// readAfterFreeBigFrame reads a freed block from a frame with much in it
// (a switch, appends, fmt, a deferred closure) and locals that look like
// a frame record (a pointer further up the stack, then a Go return
// address, as a saved pc next to a stack pointer does in a defer record):
// the access stack must still be exactly this function, its caller and
// theirs, never notOnTheStack. (nocheckptr: checkptr's instrumentation of
// &fake[2] would move fake to the heap.)
//
//go:noinline
//go:nocheckptr
func readAfterFreeBigFrame(*hardened.Allocator) {
	a, err := hardened.New(hardened.Options{Seed: 1, OnReport: func(r *hardened.Report) {
		j, _ := json.Marshal(r)
		os.Stderr.WriteString("ONREPORT " + string(j) + "\n")
	}})
	if err != nil {
		panic(err)
	}
	var words []string
	var sum int
	defer func() {
		if sum < 0 {
			fmt.Println(words)
		}
	}()
	for i := range 40 {
		switch i % 3 {
		case 0:
			words = append(words, fmt.Sprintf("w%d", i))
		case 1:
			sum += len(strings.Repeat("x", i))
		default:
			ch := make(chan int, 1)
			ch <- i
			close(ch)
			sum += <-ch
		}
	}
	var fake [3]uintptr
	fake[0] = uintptr(unsafe.Pointer(&fake[2]))
	fake[1] = reflect.ValueOf(notOnTheStack).Pointer() + 1
	sinkByte = byte(sumWords(&fake))
	b := rowAlloc(a, 40)
	a.Free(b)
	sinkByte += b[5] + byte(sum) + byte(len(words))
	sinkByte += byte(sumWords(&fake))
}

// sumWords makes its caller keep w in memory, on its stack.
//
//go:noinline
func sumWords(w *[3]uintptr) uintptr { return w[0] + w[1] + w[2] }

// notOnTheStack is never called.
func notOnTheStack() { panic("unreachable") }

// readAfterFreeGCPressure reads a freed block while four goroutines
// allocate garbage as fast as they can, with GOGC at 1.
//
//go:noinline
func readAfterFreeGCPressure(a *hardened.Allocator) {
	debug.SetGCPercent(1)
	for range 4 {
		go func() {
			var keep [][]byte
			for i := 0; ; i++ {
				keep = append(keep, make([]byte, 1<<10))
				if len(keep) > 64 {
					keep = keep[:0]
				}
			}
		}()
	}
	time.Sleep(20 * time.Millisecond)
	b := rowAlloc(a, 72)
	a.Free(b)
	sinkByte = b[9]
}

func rowAlloc(a *hardened.Allocator, n int) []byte {
	b, err := a.Alloc(n)
	if err != nil {
		panic(err)
	}
	return b
}

var accessRows = []accessRow{
	{name: "read-after-free-onreport", run: readAfterFreeOnReport, asan: "heap-use-after-free", op: "READ of size 1",
		where: "3 bytes inside a 40-byte block", frame: "readAfterFreeOnReport", freed: true,
		extra: []string{`ONREPORT {"kind":"heap-use-after-free","op":"read"`, `"access":{"frames":[{"function":"github.com/hardalloc/hardalloc/hardened_test.readAfterFreeOnReport"`}, watcher: true},
	{name: "read-after-free-big-frame", run: readAfterFreeBigFrame, asan: "heap-use-after-free", op: "READ of size 1",
		where: "5 bytes inside a 40-byte block", frame: "readAfterFreeBigFrame", freed: true,
		stack: []string{"hardened_test.readAfterFreeBigFrame", "hardened_test.TestAccessChild", "testing.tRunner"}, watcher: true},
	{name: "read-after-free-gc-pressure", run: readAfterFreeGCPressure, asan: "heap-use-after-free", op: "READ of size 1",
		where: "9 bytes inside a 72-byte block", frame: "readAfterFreeGCPressure", freed: true},
	{name: "read-after-free-sampled", run: readAfterFreeSampled, asan: "heap-use-after-free", op: "READ of size 1",
		where: "150 bytes inside a 200-byte block", frame: "readAfterFreeSampled", freed: true,
		extra: []string{"(sampled block)", "allocated by goroutine", "freed by goroutine"}},
	{name: "write-past-end-sampled", run: writePastEndSampled, asan: "heap-buffer-overflow", op: "WRITE of size 1",
		where: "0 bytes after the end of a 64-byte block", frame: "writePastEndSampled",
		extra: []string{"(sampled block)", "allocated by goroutine"}},
	{name: "read-after-free-small", run: readAfterFreeSmall, asan: "heap-use-after-free", op: "READ of size 1",
		where: "7 bytes inside a 40-byte block", frame: "readAfterFreeSmall", freed: true},
	{name: "read-after-free-large", run: readAfterFreeLarge, asan: "heap-use-after-free", op: "READ of size 1",
		where: "204800 bytes inside a 307200-byte block", frame: "readAfterFreeLarge", freed: true},
	{name: "write-after-free-other-goroutine", run: writeAfterFreeElsewhere, asan: "heap-use-after-free", op: "WRITE of size 1",
		where: "4 bytes inside a 48-byte block", frame: "lateWrite", freed: true,
		extra: []string{"writeAfterFreeElsewhere.func1"}},
	{name: "read-1-past-end-class-slack", run: readPastEnd, asan: "heap-buffer-overflow", op: "READ of size 1",
		where: "0 bytes after the end of a 40-byte block", frame: "readPastEnd"},
	{name: "read-1-past-end", run: readPastEndExact, asan: "heap-buffer-overflow", op: "READ of size 1",
		where: "0 bytes after the end of a 4096-byte block", frame: "readPastEndExact"},
	{name: "write-1-before-start", run: writeBeforeStart, asan: "heap-buffer-overflow", op: "WRITE of size 1",
		where: "1 byte before the start of a 64-byte block", frame: "writeBeforeStart"},
	{name: "read-quarantined-after-5000-allocs", run: readQuarantinedLater, asan: "heap-use-after-free", op: "READ of size 1",
		where: "50 bytes inside a 100-byte block", frame: "readQuarantinedLater", freed: true},
	{name: "touch-0-byte-block", run: touchZeroBlock, asan: "heap-buffer-overflow", op: "READ of size 1",
		where: "0-byte block", frame: "touchZeroBlock", zero: true},
	{name: "write-0-byte-block", run: writeZeroBlock, asan: "heap-buffer-overflow", op: "WRITE of size 1",
		where: "0-byte block", frame: "writeZeroBlock", zero: true},
	{name: "read-after-close", run: readAfterClose, asan: "heap-use-after-free", op: "READ of size 1",
		where: "which was closed", frame: "readAfterClose", wild: true},
	{name: "read-large-after-close", run: readLargeAfterClose, asan: "heap-use-after-free", op: "READ of size 1",
		where: "which was closed", frame: "readLargeAfterClose", wild: true},
	{name: "read-shrunk-tail", run: readShrunkTail, asan: "heap-", op: "READ of size 1",
		where: "95 bytes inside a 100-byte block", frame: "readShrunkTail"},
	{name: "read-after-reset", run: readAfterReset, asan: "heap-buffer-overflow", op: "READ of size 1",
		where: "invalid-access", frame: "readAfterReset", wild: true},
	{name: "c-write-through-stale-pointer", run: cWriteStale, asan: "heap-use-after-free", op: "WRITE of size 1",
		where: "8 bytes inside a 48-byte block", frame: "C code", freed: true,
		extra: []string{"C code: see AddressSanitizer's stack above"}},
}

const (
	rowEnv       = "HARDALLOC_ASAN_ROW"
	noWatcherEnv = "HARDALLOC_ASAN_TEST_NO_WATCHER"
)

// TestAccessCatalog runs every row twice: with the watcher goroutine,
// which explains the access in this process, and without it, as when a
// stop-the-world keeps it from running: the reporter process explains
// it then (what OnReport would receive is checked only with the watcher).
func TestAccessCatalog(t *testing.T) {
	for _, reporter := range []bool{false, true} {
		for _, row := range accessRows {
			name := row.name
			if reporter {
				name += "/reporter"
			}
			t.Run(name, func(t *testing.T) {
				if reporter && row.watcher {
					t.Skip("checks what OnReport receives, which needs the watcher")
				}
				if runtime.NumCPU() < 2 && !reporter {
					t.Skip("the watcher needs a second P")
				}
				t.Parallel()
				checkRow(t, row, runRow(t, row.name, reporter), reporter)
			})
		}
	}
}

// runRow runs a catalog row in a child process and returns its output.
func runRow(t *testing.T, name string, reporter bool) string {
	cmd := exec.Command(os.Args[0], "-test.run=^TestAccessChild$")
	cmd.Env = append(os.Environ(), rowEnv+"="+name, "GOMAXPROCS=2")
	if reporter {
		cmd.Env = append(cmd.Env, noWatcherEnv+"=1")
	}
	out, err := cmd.CombinedOutput()
	if err == nil {
		t.Fatalf("the child exited 0: the bad access was not stopped\n%s", out)
	}
	return string(out)
}

// checkRow checks a row's output: ASan's report, then hardalloc's.
func checkRow(t *testing.T, row accessRow, text string, reporter bool) {
	t.Helper()
	want := []string{
		"ERROR: AddressSanitizer: " + row.asan,
		row.op,
		"==hardalloc== the address above is in hardalloc memory",
		row.where,
		strings.ToUpper(row.op[:1]) + row.op[1:],
		row.frame,
	}
	if !row.wild && !(reporter && row.zero) {
		want = append(want, "allocated by goroutine")
		if row.freed {
			want = append(want, "freed by goroutine")
		}
	}
	want = append(want, row.extra...)
	for _, w := range want {
		if !strings.Contains(text, w) {
			t.Errorf("output lacks %q", w)
		}
	}
	if n := strings.Count(text, "==hardalloc== the address above"); n != 1 {
		t.Errorf("hardalloc's part printed %d times", n)
	}
	if row.stack != nil {
		if got := accessStack(t, text); !slices.Equal(got, row.stack) {
			t.Errorf("access stack %q, want exactly %q", got, row.stack)
		}
	}
	if t.Failed() {
		t.Logf("child output:\n%s", text)
	}
}

// TestAccessUnderGCPressure reads a freed block while other goroutines
// churn Go's heap, so a garbage collection is often under way when ASan
// stops the access: hardalloc's part is printed every time, twenty runs
// in a row (by the watcher, or by the reporter when a stop-the-world
// waits on the stopped thread's P).
func TestAccessUnderGCPressure(t *testing.T) {
	if runtime.NumCPU() < 2 {
		t.Skip("needs two CPUs to churn beside the access")
	}
	row := accessRowNamed("read-after-free-gc-pressure")
	byReporter := 0
	for i := range 20 {
		text := runRow(t, row.name, false)
		checkRow(t, row, text, false)
		if t.Failed() {
			t.Fatalf("run %d of 20", i+1)
		}
		if strings.Contains(text, "-asan reporter explains") {
			byReporter++
		}
	}
	t.Logf("20 of 20 reports complete; %d by the reporter process, %d by the watcher", byReporter, 20-byReporter)
}

func accessRowNamed(name string) accessRow {
	for _, r := range accessRows {
		if r.name == name {
			return r
		}
	}
	panic("no row " + name)
}

// accessStack returns the function names of the access stack of the
// report printed as "ONREPORT <json>", without the package path and
// runtime.goexit.
func accessStack(t *testing.T, text string) []string {
	t.Helper()
	_, j, ok := strings.Cut(text, "ONREPORT ")
	if !ok {
		t.Fatal("no ONREPORT line")
	}
	j, _, _ = strings.Cut(j, "\n")
	var r struct {
		Access struct {
			Frames []struct{ Function string }
		}
	}
	if err := json.Unmarshal([]byte(j), &r); err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, f := range r.Access.Frames {
		if f.Function == "runtime.goexit" {
			continue
		}
		out = append(out, strings.TrimPrefix(f.Function, "github.com/hardalloc/hardalloc/"))
	}
	return out
}

// TestAccessChild is a catalog row, run alone in a child process.
func TestAccessChild(t *testing.T) {
	name := os.Getenv(rowEnv)
	if name == "" {
		t.Skip("run by TestAccessCatalog")
	}
	if os.Getenv(noWatcherEnv) != "" {
		hardened.NoWatcher()
	}
	for _, row := range accessRows {
		if row.name == name {
			a, err := hardened.New(hardened.Options{Seed: 1})
			if err != nil {
				t.Fatal(err)
			}
			row.run(a)
			t.Fatalf("row %s: the bad access went on", name)
		}
	}
	t.Fatalf("no row %q", name)
}
