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
// unlock. HARDALLOC_BUG selects a seeded allocator bug (hardened.Bug*): 1
// Realloc copies one byte short, 2 a slot pushed twice, 3 no zeroing on
// reuse, 4 a cache flush loses a slot, 5 a refill duplicates one, 6 a
// non-atomic free, 7 a quarantine item evicted twice, 8 one class's
// canaries unchecked, 9 no zeroing on the spill path.
func init() {
	if n, err := strconv.Atoi(os.Getenv("HARDALLOC_FAULT")); err == nil {
		thread.SetFault(thread.Fault(n))
	}
	if n, err := strconv.Atoi(os.Getenv("HARDALLOC_BUG")); err == nil {
		hardened.SetBug(n)
	}
}
