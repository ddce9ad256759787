package hardened_test

import (
	"errors"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/hardalloc/hardalloc/hardened"
)

// New under an address-space limit (ulimit -v): with 8 GB it shrinks the
// class regions until the reservation takes at most half of what the limit
// leaves, works, and leaves the Go heap room for 1 GiB more; with 1 GB nothing
// fits, and the error says what it tried to reserve and why. Each case runs
// in a child process under `ulimit -v`; not under -race or -asan, whose
// runtimes need terabytes of address space themselves.
func TestNewUnderAddressSpaceLimit(t *testing.T) {
	if raceOrAsan {
		t.Skip("the race and ASan runtimes need more address space than any such limit")
	}
	if os.Getenv("HARDALLOC_ULIMIT_CHILD") != "" {
		a, err := hardened.New(hardened.Options{Seed: 1, ReportOutput: os.Stderr})
		if err != nil {
			if !errors.Is(err, hardened.ErrOutOfMemory) {
				t.Fatalf("New: %v, want ErrOutOfMemory", err)
			}
			t.Fatalf("NEW FAILED: %v", err)
		}
		// The Go heap must still have room: a reservation that took the
		// whole limit left the runtime to die on its next arena.
		room := make([]byte, 1<<30)
		room[len(room)-1] = 1
		var blocks [][]byte
		for i := range 2000 {
			b, err := a.Alloc(i * 37 % 70000)
			if err != nil {
				t.Fatal(err)
			}
			blocks = append(blocks, b)
		}
		for _, b := range blocks {
			a.Free(b)
		}
		if err := a.Close(); err != nil {
			t.Fatal(err)
		}
		return
	}
	run := func(kb string) (string, error) {
		cmd := exec.Command("sh", "-c", "ulimit -v "+kb+" && exec \"$0\" -test.run='^TestNewUnderAddressSpaceLimit$' -test.v", os.Args[0])
		cmd.Env = append(os.Environ(), "HARDALLOC_ULIMIT_CHILD=1", "GOMAXPROCS=2")
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	if out, err := run("8000000"); err != nil || !strings.Contains(out, "PASS") {
		t.Fatalf("under ulimit -v 8000000: %v\n%s", err, out)
	}
	out, err := run("1000000")
	if err == nil || !strings.Contains(out, "NEW FAILED") || !strings.Contains(out, "ulimit -v") ||
		!strings.Contains(out, "MiB of address space") {
		t.Fatalf("under ulimit -v 1000000: want New to fail naming the reservation and ulimit -v; got %v\n%s", err, out)
	}
}
