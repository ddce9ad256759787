//go:build faultinject

package hardened

import "sync/atomic"

// Seeded allocator bugs (faultinject builds only), to prove the fuzzers
// find real bugs: each must be caught by the shadow model from an empty
// corpus (scripts/seeded.sh).
const (
	// BugReallocShort: Realloc copies one byte less than it must.
	BugReallocShort = iota + 1
	// BugDoublePush: every 16th freed slot is pushed twice onto a free
	// list, so two live blocks end up overlapping.
	BugDoublePush
	// BugNoZero: Alloc reuses memory without zeroing it.
	BugNoZero

	bugReallocShort = BugReallocShort
	bugDoublePush   = BugDoublePush
	bugNoZero       = BugNoZero
)

var seeded atomic.Int32

// SetBug selects the seeded bug (0: none).
func SetBug(b int) { seeded.Store(int32(b)) }

func bug(b int) bool { return int(seeded.Load()) == b }
