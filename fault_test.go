//go:build faultinject

package hardalloc_test

import (
	"os"
	"strconv"

	"github.com/hardalloc/hardalloc/hardened"
	"github.com/hardalloc/hardalloc/thread"
)

// HARDALLOC_FAULT selects a reintroduced launch-capsule bug for the fuzz
// targets (scripts/seeded.sh): 1 worker frees, 2 double free, 3 late
// unlock. HARDALLOC_BUG selects a seeded allocator bug: 1 Realloc copies
// one byte short, 2 a slot pushed twice, 3 no zeroing on reuse.
func init() {
	if n, err := strconv.Atoi(os.Getenv("HARDALLOC_FAULT")); err == nil {
		thread.SetFault(thread.Fault(n))
	}
	if n, err := strconv.Atoi(os.Getenv("HARDALLOC_BUG")); err == nil {
		hardened.SetBug(n)
	}
}
