// Package hardtest runs a package's tests on hardalloc: one process-wide
// allocator for code that takes its memory from a shared allocator (an
// adapter, an overlay of a dependency's seam), checked and closed when
// the tests end, and per-test allocators checked at t.Cleanup.
//
//	func TestMain(m *testing.M) { os.Exit(hardtest.Main(m)) }
//
// Main installs hardened.Monitor, so a fault on hardalloc memory prints
// the block's report; it then runs the tests, gives finalizers their
// chance (memory pools that free from finalizers, as pebble's cache
// does), checks and closes Default, and fails the test binary if any
// report was made or any block leaked, with every report printed in full
// and the leaks grouped by allocation site. The build chooses what is
// checked: release builds find double and invalid frees and header
// damage and name leaks by size (and by site for large and sampled
// blocks); -tags hardened adds redzones, poison, the quarantine and every
// block's sites; -asan stops bad accesses at the access.
//
// The monitor (and, under -asan, ASan's report watcher and reporter) keeps
// goroutines for the life of the process, started and running before the
// first test, so a goroutine-leak checker's per-test baseline holds them.
// A checker that looks once after every test (goleak's VerifyTestMain)
// sees them; they all run under one function, which it can be told to
// ignore: goleak.IgnoreAnyFunction("github.com/hardalloc/hardalloc/hardened.goStarted.func1").
//
// Default is made on first use, so code that allocates before Main (in
// an init, say) shares it; cmd/hardalloc's overlays route other modules'
// manual memory (ristretto's z, arrow's Go allocator, pebble's
// internal/manual) through it.
package hardtest

import (
	"fmt"
	"io"
	"os"
	"reflect"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hardalloc/hardalloc/hardened"
)

// An Option changes what Main does.
type Option func(*config)

type config struct {
	opts    hardened.Options
	allowed []string
	out     io.Writer
}

// WithOptions configures Default (OnReport and ReportOutput are Main's).
func WithOptions(o hardened.Options) Option { return func(c *config) { c.opts = o } }

// AllowLeaks names the functions (prefixes of runtime.Frame.Function)
// whose blocks a suite knowingly leaves live at exit: a leak whose
// allocation stack holds one of them is listed, not failed. Release
// builds record sites only for large and sampled blocks; their other
// leaks have no stack to match.
func AllowLeaks(funcs ...string) Option {
	return func(c *config) { c.allowed = append(c.allowed, funcs...) }
}

// Output sends Main's summary and reports to w instead of os.Stderr.
func Output(w io.Writer) Option { return func(c *config) { c.out = w } }

// seamWrappers are the functions of the seams cmd/hardalloc's overlays
// route through Default: their frames are dropped from the top of every
// site (hardened.Options.Wrappers), so reports name the seam's caller.
var seamWrappers = []string{
	"github.com/dgraph-io/ristretto/v2/z.Calloc",
	"github.com/dgraph-io/ristretto/v2/z.Free",
	"github.com/apache/arrow-go/v18/arrow/memory.(*GoAllocator).",
	"github.com/apache/arrow-go/v18/arrow/memory.(*CheckedAllocator).",
	"github.com/apache/arrow-go/v18/arrow/memory.(*Buffer).",
	"github.com/hardalloc/hardalloc/arrowalloc.",
	"github.com/cockroachdb/pebble/v2/internal/manual.",
	"github.com/cockroachdb/pebble/internal/manual.",
}

var def struct {
	mu  sync.Mutex
	a   *hardened.Allocator
	col *collector
	cfg config
}

// Default is the test binary's process-wide allocator: the one Main
// checks and closes when the tests end. It is made on first use, with
// Main's options if Main came first (WithOptions); code that allocates
// before Main runs gets the default options.
func Default() *hardened.Allocator {
	def.mu.Lock()
	defer def.mu.Unlock()
	if def.a == nil {
		if def.cfg.out == nil {
			def.cfg.out = os.Stderr
		}
		def.col = &collector{out: def.cfg.out}
		opts := def.cfg.opts
		opts.OnReport = def.col.add
		opts.ReportOutput = io.Discard
		opts.Wrappers = append(opts.Wrappers[:len(opts.Wrappers):len(opts.Wrappers)], seamWrappers...)
		a, err := hardened.New(opts)
		if err != nil {
			panic(fmt.Sprintf("hardtest: %v", err))
		}
		def.a = a
	}
	return def.a
}

// collector keeps the reports an allocator makes, printing each when it
// happens so that it shows beside the test that caused it.
type collector struct {
	mu      sync.Mutex
	reports []*hardened.Report
	closed  bool
	out     io.Writer
}

func (c *collector) add(r *hardened.Report) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed && r.Kind == hardened.UseAfterClose {
		// A free from a finalizer that ran after the tests and Close:
		// the memory went with Close, nothing is lost.
		return
	}
	if r.Kind != hardened.Leak && c.out != nil {
		fmt.Fprintf(c.out, "%s", r)
	}
	c.reports = append(c.reports, r)
}

func (c *collector) take() []*hardened.Report {
	c.mu.Lock()
	defer c.mu.Unlock()
	r := c.reports
	c.reports = nil
	return r
}

// Main runs the tests with Default set up, then checks it: see the
// package doc. Use it as os.Exit(hardtest.Main(m)).
func Main(m *testing.M, options ...Option) int {
	return MainFunc(m, func(m *testing.M) { Exit(m.Run()) }, options...)
}

// MainFunc is Main for a package that has a TestMain of its own: run
// calls m.Run (and whatever the package does around it) in place of
// Main's plain m.Run, its os.Exit calls replaced by Exit (cmd/hardalloc's
// overlays rewrite a package's TestMain this way).
func MainFunc(m *testing.M, run func(*testing.M), options ...Option) int {
	def.mu.Lock()
	def.cfg = config{out: os.Stderr}
	for _, o := range options {
		o(&def.cfg)
	}
	out := def.cfg.out
	def.mu.Unlock()
	hardened.Monitor()
	a := Default()

	code := runExit(m, run)

	settle()
	st := a.Stats()
	a.Check()
	a.Close()
	def.col.mu.Lock()
	def.col.closed = true
	def.col.mu.Unlock()
	var allocs int64
	for _, c := range st.Classes {
		allocs += c.Allocs
	}
	fmt.Fprintf(out, "hardtest: Default made %d small-block allocations; %d blocks (%d bytes) were live at the end\n",
		allocs, st.LiveBlocks, st.Requested)
	if failed := summarize(out, def.col.take(), def.cfg.allowed); failed && code == 0 {
		code = 1
	}
	return code
}

// exitCode is Exit's panic: the code a TestMain passed to os.Exit.
type exitCode int

// Exit stands for os.Exit in a TestMain that MainFunc runs: it ends run
// with code, and MainFunc checks Default before the process exits.
func Exit(code int) { panic(exitCode(code)) }

// runExit calls run(m) and returns the code it exited with (Exit), or
// the result of m.Run when it returned (the code the test binary's main
// exits with after a TestMain that returns, read the same way).
func runExit(m *testing.M, run func(*testing.M)) (code int) {
	defer func() {
		if v := recover(); v != nil {
			c, ok := v.(exitCode)
			if !ok {
				panic(v)
			}
			code = int(c)
		}
	}()
	run(m)
	return int(reflect.ValueOf(m).Elem().FieldByName("exitCode").Int())
}

// settle gives finalizers that free memory their chance before the leak
// check: a GC queues them, and they run on their own goroutine.
func settle() {
	for range 3 {
		runtime.GC()
		time.Sleep(10 * time.Millisecond)
	}
}

// New returns an allocator for one test, made with opts; at t.Cleanup it
// is checked and closed, and each report and leak (grouped by site) fails
// the test, printed in full. opts.OnReport and ReportOutput are New's.
func New(t testing.TB, opts hardened.Options) *hardened.Allocator {
	t.Helper()
	col := &collector{}
	opts.OnReport = col.add
	opts.ReportOutput = io.Discard
	a, err := hardened.New(opts)
	if err != nil {
		t.Fatalf("hardtest.New: %v", err)
	}
	t.Cleanup(func() {
		a.Check()
		a.Close()
		var b strings.Builder
		if summarize(&b, col.take(), nil) {
			t.Errorf("hardtest: %s", b.String())
		}
	})
	return a
}

// leakGroup is the leaks of one allocation site.
type leakGroup struct {
	site    string
	blocks  int
	bytes   int64
	example *hardened.Report
	allowed bool
}

// summarize prints the reports in full and the leaks grouped by site to
// w, and reports whether any of them fails the run.
func summarize(w io.Writer, reports []*hardened.Report, allowed []string) bool {
	failed := false
	groups := map[string]*leakGroup{}
	var bugs int
	for _, r := range reports {
		if r.Kind != hardened.Leak {
			bugs++
			failed = true
			continue
		}
		site := leakSite(r)
		g := groups[site]
		if g == nil {
			g = &leakGroup{site: site, example: r, allowed: allows(r, allowed)}
			groups[site] = g
		}
		g.blocks++
		g.bytes += int64(max(r.Size, 0))
	}
	if bugs > 0 {
		fmt.Fprintf(w, "hardtest: %d report(s) during the run (printed above as they happened)\n", bugs)
	}
	list := make([]*leakGroup, 0, len(groups))
	for _, g := range groups {
		list = append(list, g)
	}
	slices.SortFunc(list, func(x, y *leakGroup) int {
		if x.bytes != y.bytes {
			return int(y.bytes - x.bytes)
		}
		return strings.Compare(x.site, y.site)
	})
	for _, g := range list {
		verb := "LEAK"
		if g.allowed {
			verb = "allowed leak"
		} else {
			failed = true
		}
		fmt.Fprintf(w, "hardtest: %s: %d block(s), %d bytes, allocated at %s\n", verb, g.blocks, g.bytes, g.site)
		if !g.allowed {
			fmt.Fprintf(w, "%s", g.example)
		}
	}
	return failed
}

// leakSite names a leak's allocation site: its innermost frame outside
// hardalloc with file and line, or its size where no stack was recorded.
func leakSite(r *hardened.Report) string {
	for _, f := range r.Alloc.Frames() {
		if !strings.HasPrefix(f.Function, "github.com/hardalloc/hardalloc/hardtest.") {
			return fmt.Sprintf("%s (%s:%d)", f.Function, f.File, f.Line)
		}
	}
	return fmt.Sprintf("an unknown site (%d-byte blocks; -tags hardened records every site)", r.Size)
}

func allows(r *hardened.Report, allowed []string) bool {
	for _, f := range r.Alloc.Frames() {
		for _, a := range allowed {
			if strings.HasPrefix(f.Function, a) {
				return true
			}
		}
	}
	return false
}
