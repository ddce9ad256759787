//go:build !faultinject

package hardened

const (
	bugReallocShort = iota + 1
	bugDoublePush
	bugNoZero
	bugFlushLoses
	bugRefillDup
	bugPlainFree
	bugEvictTwice
	bugCanarySkip
	bugSpillNoZero
	bugPurgeSkip
	bugChecksumPage
	bugTrimPurged
	bugQuarantineLast
	bugAsanShrink
)

// bug is false in every normal build: the seeded bugs compile away.
func bug(int) bool { return false }
