//go:build asan && faultinject

package thread_test

import (
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/hardalloc/hardalloc/hardened"
	"github.com/hardalloc/hardalloc/thread"
)

// The seed's bug under -asan: the worker's late unlock, a 4-byte atomic
// store into the capsule it has just freed, is stopped at the store, and
// hardalloc names the capsule, the store's stack and both sites.
func TestAsanCatchesLateUnlockAtTheWrite(t *testing.T) {
	if os.Getenv("HARDALLOC_ASAN_LATE_UNLOCK") != "" {
		thread.SetFault(thread.FaultLateUnlock)
		a, err := hardened.New(hardened.Options{Seed: 1})
		if err != nil {
			t.Fatal(err)
		}
		release, exited := make(chan struct{}), make(chan struct{})
		th, err := thread.Start(a, func() error { <-release; return nil }, thread.OnExit(func() { close(exited) }))
		if err != nil {
			t.Fatal(err)
		}
		th.Detach()
		close(release)
		<-exited
		t.Fatal("the late unlock went on")
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestAsanCatchesLateUnlockAtTheWrite$")
	cmd.Env = append(os.Environ(), "HARDALLOC_ASAN_LATE_UNLOCK=1", "GOMAXPROCS=2")
	out, err := cmd.CombinedOutput()
	text := string(out)
	if err == nil {
		t.Fatalf("the child exited 0:\n%s", text)
	}
	want := []string{
		"ERROR: AddressSanitizer: heap-use-after-free", "WRITE of size 4",
		"==hardalloc== the address above is in hardalloc memory",
		"0 bytes inside a 48-byte block",
		"thread.(*capsule).release", "thread.worker",
		"freed by goroutine", "thread.dropRef", "allocated by goroutine", "thread.allocCapsule",
	}
	for _, w := range want {
		if !strings.Contains(text, w) {
			t.Errorf("output lacks %q", w)
		}
	}
	if t.Failed() {
		t.Logf("child output:\n%s", text)
	}
}
