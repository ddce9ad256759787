//go:build faultinject

package hardalloc_test

import (
	"os"
	"strconv"

	"github.com/hardalloc/hardalloc/hardened"
	"github.com/hardalloc/hardalloc/thread"
)

// HARDALLOC_FAULT selects a reintroduced launch-capsule bug for the fuzz
// targets (thread.Fault*), HARDALLOC_BUG a seeded allocator bug
// (hardened.Bug*, -tags faultinject); scripts/seeded.sh lists each with
// the target that must find it.
func init() {
	if n, err := strconv.Atoi(os.Getenv("HARDALLOC_FAULT")); err == nil {
		thread.SetFault(thread.Fault(n))
	}
	if n, err := strconv.Atoi(os.Getenv("HARDALLOC_BUG")); err == nil {
		hardened.SetBug(n)
	}
}
