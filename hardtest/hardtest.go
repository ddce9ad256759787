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
package hardtest

import (
	"fmt"
	"io"
	"os"
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

var def struct {
	mu sync.Mutex
	a  *hardened.Allocator
}

// Default is the allocator Main made for the test binary. It panics
// outside Main: a test that uses it must run under hardtest.Main.
func Default() *hardened.Allocator {
	def.mu.Lock()
	defer def.mu.Unlock()
	if def.a == nil {
		panic("hardtest: Default called outside hardtest.Main (add func TestMain(m *testing.M) { os.Exit(hardtest.Main(m)) })")
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
	cfg := config{out: os.Stderr}
	for _, o := range options {
		o(&cfg)
	}
	hardened.Monitor()
	col := &collector{out: cfg.out}
	opts := cfg.opts
	opts.OnReport = col.add
	opts.ReportOutput = io.Discard
	a, err := hardened.New(opts)
	if err != nil {
		fmt.Fprintf(cfg.out, "hardtest: %v\n", err)
		return 2
	}
	def.mu.Lock()
	def.a = a
	def.mu.Unlock()

	code := m.Run()

	settle()
	a.Check()
	a.Close()
	col.mu.Lock()
	col.closed = true
	col.mu.Unlock()
	if failed := summarize(cfg.out, col.take(), cfg.allowed); failed && code == 0 {
		code = 1
	}
	return code
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
