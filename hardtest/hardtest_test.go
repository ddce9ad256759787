package hardtest_test

import (
	"errors"
	"os"
	"os/exec"
	"regexp"
	"runtime"
	"strings"
	"testing"

	"github.com/hardalloc/hardalloc/hardened"
	"github.com/hardalloc/hardalloc/hardtest"
)

// The tests run this binary again as a suite under hardtest.Main (the
// child's TestMain), with one of the suite* tests below, and read what
// Main made of it.

const caseEnv = "HARDTEST_CASE"

func TestMain(m *testing.M) {
	allow := hardtest.AllowLeaks("github.com/hardalloc/hardalloc/hardtest_test.knownLeak")
	switch os.Getenv(caseEnv) {
	case "":
		os.Exit(m.Run())
	case "func-exit": // a package's own TestMain, its os.Exit rewritten
		os.Exit(hardtest.MainFunc(m, func(m *testing.M) { hardtest.Exit(m.Run()) }, allow))
	case "func-return": // a TestMain that returns after m.Run
		os.Exit(hardtest.MainFunc(m, func(m *testing.M) { m.Run() }, allow))
	default:
		os.Exit(hardtest.Main(m, allow))
	}
}

func TestSuiteFails(t *testing.T) {
	if os.Getenv(caseEnv) == "" {
		t.Skip("a child's suite")
	}
	t.Error("a test of the suite fails")
}

var keep [][]byte

//go:noinline
func leak(n int) { keep = append(keep, must(hardtest.Default().Alloc(n))) }

//go:noinline
func knownLeak(n int) { keep = append(keep, must(hardtest.Default().Alloc(n))) }

func must(b []byte, err error) []byte {
	if err != nil {
		panic(err)
	}
	return b
}

func TestSuiteClean(t *testing.T) {
	if os.Getenv(caseEnv) == "" {
		t.Skip("a child's suite")
	}
	a := hardtest.Default()
	for range 1000 {
		b := must(a.Alloc(100))
		a.Free(b)
	}
}

func TestSuiteLeak(t *testing.T) {
	if os.Getenv(caseEnv) == "" {
		t.Skip("a child's suite")
	}
	leak(100)
	leak(100)
	leak(300 << 10) // large: its site is recorded in every build
	knownLeak(64)
}

func TestSuiteDoubleFree(t *testing.T) {
	if os.Getenv(caseEnv) == "" {
		t.Skip("a child's suite")
	}
	a := hardtest.Default()
	b := must(a.Alloc(48))
	a.Free(b)
	a.Free(b)
}

// A pool that frees from a finalizer: the block is freed when the GC
// finds its owner unreachable, which Main waits for.
func TestSuiteFinalizer(t *testing.T) {
	if os.Getenv(caseEnv) == "" {
		t.Skip("a child's suite")
	}
	type owner struct{ b []byte }
	o := &owner{b: must(hardtest.Default().Alloc(256))}
	runtime.SetFinalizer(o, func(o *owner) { hardtest.Default().Free(o.b) })
}

func TestSuiteNewLeak(t *testing.T) {
	if os.Getenv(caseEnv) == "" {
		t.Skip("a child's suite")
	}
	a := hardtest.New(t, hardened.Options{})
	keep = append(keep, must(a.Alloc(77)))
}

// Goroutine-leak checkers snapshot the goroutines when a test starts and
// fail it for any that appear after; crlib's leaktest (pebble's) leaves
// out of its snapshot a goroutine whose stack shows runtime.goexit, as one
// not yet started does. The goroutines hardalloc starts under Main (the
// crash monitor's, and under -asan the reporter's and the watcher) must
// therefore be running when the first test starts, or that test is failed
// for leaking them.
func TestSuiteGoroutineBaseline(t *testing.T) {
	if os.Getenv(caseEnv) == "" {
		t.Skip("a child's suite")
	}
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	n := 0
	for _, g := range strings.Split(string(buf), "\n\n") {
		if !strings.Contains(g, "created by github.com/hardalloc/hardalloc/") {
			continue
		}
		n++
		if strings.Contains(g, "runtime.goexit") {
			t.Errorf("a goroutine hardalloc started is not running yet when the first test starts:\n%s", g)
		}
	}
	if n == 0 {
		t.Errorf("no goroutine started by hardalloc (the crash monitor's, at least):\n%s", buf)
	}
}

func TestMainVerdicts(t *testing.T) {
	for _, mode := range []string{"main", "func-exit", "func-return"} {
		t.Run(mode, func(t *testing.T) { testVerdicts(t, mode) })
	}
}

func testVerdicts(t *testing.T, mode string) {
	for _, c := range []struct {
		test string
		fail bool
		want []string
	}{
		{"TestSuiteFails", true, []string{`a test of the suite fails`, `hardtest: Default made \d+ small-block allocations`}},
		{"TestSuiteClean", false, nil},
		{"TestSuiteGoroutineBaseline", false, nil},
		{"TestSuiteFinalizer", false, nil},
		{"TestSuiteLeak", true, []string{
			`hardtest: LEAK: \d+ block\(s\), \d+ bytes, allocated at github.com/hardalloc/hardalloc/hardtest_test.leak \(\S+hardtest_test.go:\d+\)`,
			`memory-leak on address`,
		}},
		{"TestSuiteDoubleFree", true, []string{`ERROR: double-free`, `hardtest: 1 report\(s\) during the run`}},
		{"TestSuiteNewLeak", true, []string{`--- FAIL: TestSuiteNewLeak`, `hardtest: LEAK: 1 block\(s\), 77 bytes`}},
	} {
		t.Run(c.test, func(t *testing.T) {
			cmd := exec.Command(os.Args[0], "-test.run=^"+c.test+"$", "-test.count=1")
			cmd.Env = append(os.Environ(), caseEnv+"="+mode)
			out, err := cmd.CombinedOutput()
			var ee *exec.ExitError
			switch {
			case c.fail && !errors.As(err, &ee):
				t.Fatalf("the suite passed (%v):\n%s", err, out)
			case !c.fail && err != nil:
				t.Fatalf("the suite failed (%v):\n%s", err, out)
			}
			for _, w := range c.want {
				if !regexp.MustCompile(w).Match(out) {
					t.Errorf("output lacks %q:\n%s", w, out)
				}
			}
			// Hardened builds name every leak's site, so the known leak is
			// allowed; release builds have no stack for a small block.
			if hardened.Enabled && c.test == "TestSuiteLeak" {
				for _, w := range []string{`LEAK: 3 block\(s\), 307400 bytes, allocated at github.com/hardalloc/hardalloc/hardtest_test.leak`,
					`hardtest: allowed leak: 1 block\(s\), 64 bytes, allocated at github.com/hardalloc/hardalloc/hardtest_test.knownLeak`} {
					if !regexp.MustCompile(w).Match(out) {
						t.Errorf("output lacks %q:\n%s", w, out)
					}
				}
			}
		})
	}
}
