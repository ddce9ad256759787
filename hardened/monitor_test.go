package hardened_test

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"unsafe"

	"github.com/hardalloc/hardalloc/hardened"
	"github.com/hardalloc/hardalloc/internal/harness"
)

// The crash monitor's tests run each fault in a child process (this test
// binary again, running TestMonitorChild with the case in the
// environment), which installs Monitor and faults; the parent reads what
// the child and its monitor printed.

const childEnv = "HARDALLOC_MONITOR_CASE"

// monitorCase is one program run in the child: it may fault.
type monitorCase struct {
	name string
	// hardenedOnly cases need the hardening layer (a PROT_NONE 0-byte
	// region); releaseOnly ones need release behaviour.
	hardenedOnly bool
	run          func(a *hardened.Allocator)
	opts         hardened.Options
	// want are regular expressions the child's output must match; none
	// means the child must exit 0 and print nothing.
	want []string
}

// read1 reads the byte at p through a pointer the compiler cannot see
// through, as a stale pointer would.
//
//go:noinline
func read1(p unsafe.Pointer) byte { return *(*byte)(p) }

//go:noinline
func write1(p unsafe.Pointer) { *(*byte)(p) = 1 }

var monitorCases = []monitorCase{
	{
		name: "freed-large-read",
		opts: hardened.Options{LargeCacheBytes: -1}, // release: unmapped at Free, so the read faults
		run: func(a *hardened.Allocator) {
			b, _ := a.Alloc(1 << 20)
			a.Free(b)
			read1(unsafe.Pointer(&b[4096]))
		},
		want: []string{`ERROR: heap-use-after-free on address 0x[0-9a-f]+ \(fault\)`, `4096 bytes inside a 1048576-byte block`,
			`(?s)ACCESS at .*hardened_test\.read1.*monitor_test\.go`,
			`(?s)freed by goroutine \d+ \(seq \d+\) at:\n\s+#0 github.com/hardalloc/hardalloc/hardened_test.init.func\d+\n\s+\S+monitor_test.go:\d+`,
			`(?s)allocated by goroutine \d+ \(seq \d+\) at:\n\s+#0 github.com/hardalloc/hardalloc/hardened_test.init.func\d+`},
	},
	{
		name: "guard-page",
		run: func(a *hardened.Allocator) {
			b, _ := a.Alloc(2 << 20)
			end := len(b)
			if hardened.Enabled {
				end += os.Getpagesize() // the page slack's redzone, checked at Free
			}
			write1(unsafe.Add(unsafe.Pointer(&b[0]), end))
		},
		want: []string{`ERROR: heap-buffer-overflow on address 0x[0-9a-f]+ \(fault\)`, `\d+ bytes after the end of a 2097152-byte block`,
			`(?s)ACCESS at .*hardened_test\.write1`, `allocated by goroutine`},
	},
	{
		name:         "zero-write",
		hardenedOnly: true,
		run: func(a *hardened.Allocator) {
			b, _ := a.Alloc(0)
			write1(unsafe.Pointer(unsafe.SliceData(b)))
		},
		want: []string{`ERROR: invalid-access on address 0x[0-9a-f]+ \(fault\)`, `0-byte block \(Alloc\(0\)\)`, `hardened_test\.write1`},
	},
	{
		// A slab whose slots are all free goes back to the OS read-only:
		// a write through a stale pointer into it faults.
		name:         "purged-slab-write",
		hardenedOnly: true,
		opts:         hardened.Options{QuarantineBytes: -1, Limit: 64 << 20},
		run: func(a *hardened.Allocator) {
			x := make([][]byte, 300)
			for i := range x {
				x[i], _ = a.Alloc(4000)
			}
			for i := len(x) - 1; i >= 0; i-- {
				a.Free(x[i])
			}
			write1(unsafe.Pointer(&x[0][7]))
		},
		want: []string{`ERROR: invalid-access on address 0x[0-9a-f]+ \(fault\)`, `a block freed before its slab went back to the OS`, `hardened_test\.write1`},
	},
	{
		name: "after-close",
		run: func(a *hardened.Allocator) {
			b, _ := a.Alloc(100)
			a.Free(b)
			a.Close()
			read1(unsafe.Pointer(&b[0]))
		},
		want: []string{`ERROR: use-after-close on address 0x[0-9a-f]+ \(fault\)`, `which was closed`, `hardened_test\.read1`},
	},
	{
		name: "sampled-read-after-free",
		opts: hardened.Options{SampleRate: 1},
		run: func(a *hardened.Allocator) {
			b := sampled(a, 100)
			a.Free(b)
			read1(unsafe.Pointer(&b[7]))
		},
		want: []string{`ERROR: heap-use-after-free on address 0x[0-9a-f]+ \(fault\)`, `7 bytes inside a 100-byte block at 0x[0-9a-f]+ \(sampled block\)`,
			`(?s)freed by goroutine \d+ \(seq 2\) at:\n\s+#0 github.com/hardalloc/hardalloc/hardened_test.init.func\d+`,
			`(?s)allocated by goroutine \d+ \(seq 1\) at:\n\s+#0 github.com/hardalloc/hardalloc/hardened_test.sampled\n`},
	},
	{
		name: "sampled-one-past-end",
		opts: hardened.Options{SampleRate: 1},
		run: func(a *hardened.Allocator) {
			// The second sampled block sits at the end of its page.
			sampled(a, 64)
			b := sampled(a, 64)
			write1(unsafe.Add(unsafe.Pointer(&b[0]), 64))
		},
		want: []string{`ERROR: heap-buffer-overflow on address 0x[0-9a-f]+ \(fault\)`, `0 bytes after the end of a 64-byte block .*\(sampled block\)`,
			`guard page past the end of a sampled block`, `(?s)allocated by goroutine \d+ \(seq 2\)`},
	},
	{
		name: "sampled-one-before-start",
		opts: hardened.Options{SampleRate: 1},
		run: func(a *hardened.Allocator) {
			b := sampled(a, 64) // the first sampled block: at the start of its page
			write1(unsafe.Add(unsafe.Pointer(&b[0]), -1))
		},
		want: []string{`ERROR: heap-buffer-underflow on address 0x[0-9a-f]+ \(fault\)`, `1 byte before the start of a 64-byte block .*\(sampled block\)`},
	},
	{
		// A loop that reads every block after freeing it: at SampleRate
		// 1000, one of the first 2*1000-1 blocks is sampled (the countdown's
		// longest interval), and its read faults.
		name: "sampled-loop-1000",
		opts: hardened.Options{SampleRate: 1000, Seed: 7},
		run: func(a *hardened.Allocator) {
			for range 2 * 1000 {
				b, _ := a.Alloc(48)
				a.Free(b)
				read1(unsafe.Pointer(&b[0]))
			}
			fmt.Println("no fault in 1999 iterations")
		},
		want: []string{`ERROR: heap-use-after-free on address 0x[0-9a-f]+ \(fault\)`, `\(sampled block\)`},
	},
	{
		name: "not-ours",
		run: func(a *hardened.Allocator) {
			var p *[64]byte
			read1(unsafe.Pointer(&p[8]))
		},
		want: []string{`nil pointer dereference`},
	},
	{
		name: "heavy-correct-use",
		opts: hardened.Options{SampleRate: 50},
		run: func(a *hardened.Allocator) {
			var live [][]byte
			for i := range 20000 {
				n := 2 + (i*7919)%5000
				if i%97 == 0 {
					n = 300 << 10
				}
				b, err := a.Alloc(n)
				if err != nil {
					panic(err)
				}
				b[0], b[n-1] = 1, 2
				live = append(live, b)
				if len(live) > 40 {
					k := (i * 31) % len(live)
					if live[k][0] != 1 {
						panic("lost a byte")
					}
					if live[k], err = a.Realloc(live[k], len(live[k])+100); err != nil {
						panic(err)
					}
					a.Free(live[k])
					live[k] = live[len(live)-1]
					live = live[:len(live)-1]
				}
			}
			for _, b := range live {
				a.Free(b)
			}
			if s := a.Stats(); s.LiveBlocks != 0 || s.Sampled != 0 {
				panic(fmt.Sprintf("stats after freeing everything: %+v", s))
			}
			if err := a.Close(); err != nil {
				panic(err)
			}
		},
	},
}

// sampled allocates n bytes until a block is sampled (SampleRate 1; race
// builds pick a cache, and so a countdown, at random), keeping the others.
func sampled(a *hardened.Allocator, n int) []byte {
	for {
		b, err := a.Alloc(n)
		if err != nil {
			panic(err)
		}
		if l, ok := harness.LayoutOf(a, b); ok && l.Sampled {
			return b
		}
	}
}

// TestMonitorChild is the child's side: it does nothing unless run by
// TestMonitor.
func TestMonitorChild(t *testing.T) {
	name := os.Getenv(childEnv)
	if name == "" {
		t.Skip("run by TestMonitor")
	}
	hardened.Monitor()
	for _, c := range monitorCases {
		if c.name == name {
			a, err := hardened.New(c.opts)
			if err != nil {
				t.Fatal(err)
			}
			c.run(a)
			return
		}
	}
	t.Fatalf("no case %q", name)
}

func TestMonitor(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a child process per case")
	}
	if asanBuild {
		t.Skip("under -asan, AddressSanitizer stops these accesses first (asan_test.go's catalog)")
	}
	for _, c := range monitorCases {
		t.Run(c.name, func(t *testing.T) {
			if c.hardenedOnly && !hardened.Enabled {
				t.Skip("needs -tags hardened")
			}
			t.Parallel()
			cmd := exec.Command(os.Args[0], "-test.run=^TestMonitorChild$", "-test.count=1")
			cmd.Env = append(os.Environ(), childEnv+"="+c.name)
			out, err := cmd.CombinedOutput()
			text := string(out)
			if len(c.want) == 0 {
				if err != nil || strings.Contains(text, "hardalloc") || strings.Contains(text, "fatal") {
					t.Fatalf("correct use: %v\n%s", err, text)
				}
				return
			}
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.ExitCode() == 0 {
				t.Fatalf("the child did not die (%v):\n%s", err, text)
			}
			for _, w := range c.want {
				if !regexp.MustCompile(w).MatchString(text) {
					t.Errorf("output does not match %q:\n%s", w, text)
				}
			}
			if c.name == "not-ours" && strings.Contains(text, "==hardalloc==") {
				t.Errorf("a fault that is not hardalloc's got a report:\n%s", text)
			}
			// Every frame the report names is real: each "#n function"
			// line of hardalloc's part is followed by a file of this
			// module or Go's.
			if i := strings.Index(text, "==hardalloc== ERROR"); i >= 0 {
				for _, m := range regexp.MustCompile(`#\d+ (\S+)\n\s+(\S+):\d+`).FindAllStringSubmatch(text[i:], -1) {
					if !strings.HasSuffix(m[2], ".go") && m[1] != "runtime.goexit" {
						t.Errorf("frame %s at %s is not a Go source line", m[1], m[2])
					}
				}
			}
		})
	}
}
