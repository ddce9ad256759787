//go:build !faultinject

package hardened

import "unsafe"

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
	bugAsanGranule
	bugEvictedUnverified
	bugReuseClear
	bugReuseRedzones
	bugSampleKeeps
	bugSampleGuard
	bugLargeKept
	bugMetaLeftOpen
	bugPurgeUnverified
)

// injecting is false in every normal build: code under `if injecting`
// compiles away and costs nothing against the inlining budget.
const injecting = false

// bug is false in every normal build: the seeded bugs compile away.
func bug(int) bool { return false }

// The test hooks (bug_on.go) are empty in every normal build.
func hookRelease(unsafe.Pointer) {}

//lint:ignore U1000 used by the hardening layer (harden*.go, -tags hardened)
func hookCheck(unsafe.Pointer) {}
