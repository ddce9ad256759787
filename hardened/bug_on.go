//go:build faultinject

package hardened

import (
	"sync/atomic"
	"unsafe"
)

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
	// BugFlushLoses: a full per-P cache's flush to the central list
	// hands back one slot less than it took out: a slot lost for good.
	BugFlushLoses
	// BugRefillDup: a refill from the central list also stocks the slot
	// it hands out (an off-by-one): one slot, two owners.
	BugRefillDup
	// BugPlainFree: a free changes the header's state by load, compare
	// and store instead of compare-and-swap: two racing Frees both win.
	BugPlainFree
	// BugEvictTwice: an item evicted from the quarantine is queued again
	// and evicted a second time.
	BugEvictTwice
	// BugCanarySkip: size class 5's canaries are never verified.
	BugCanarySkip
	// BugSpillNoZero: a slot borrowed from a larger class is handed out
	// without zeroing.
	BugSpillNoZero
	// BugPurgeSkip: returning a slot reads its slab's free count before
	// incrementing it, so a slab never counts as emptied: it is never
	// purged, and freed memory never goes back to the OS.
	BugPurgeSkip
	// BugChecksumPage: the header checksum is keyed by the slot's page,
	// not the slot ("a page is enough to tell slabs apart"), so a header
	// copied from another slot of the same page passes.
	BugChecksumPage
	// BugTrimPurged: Trim purges every wholly free slab, those already
	// purged too, and takes their bytes off the mapped count again.
	BugTrimPurged
	// BugQuarantineLast: the freed block that fills a P's batch of frees
	// is recycled at once instead of quarantined with the batch.
	BugQuarantineLast
	// BugAsanGranule: a large block's last 8-byte granule is made wholly
	// addressable to AddressSanitizer, so up to 7 bytes past its end can
	// be read and written unseen (-asan builds).
	BugAsanGranule
	// BugEvictedUnverified: an Alloc that takes a slot evicted from the
	// quarantine (its header still says quarantined) claims it as free
	// rather than free and poisoned ("it has left the quarantine"), so
	// its poison is not verified: a write after free into it goes
	// unseen.
	BugEvictedUnverified
	// BugReuseClearsPayload: a poisoned slot handed out again has the
	// poison around the new payload verified, but the payload only
	// zeroed ("it is zeroed anyway"), so a write after free into the
	// bytes the new block's payload covers goes unseen.
	BugReuseClearsPayload
	// BugReuseSkipsRedzones: a poisoned slot handed out again has its new
	// payload's poison verified, but not the bytes around it ("the
	// redzones are armed over them next"), so a write after free that
	// falls in the new block's redzones goes unseen.
	BugReuseSkipsRedzones
	// BugSampleKeepsPage: a freed sampled block's page stays readable
	// and writable ("its slot is sampled again within 16 samples"), so
	// an access after free is not stopped.
	BugSampleKeepsPage
	// BugSampleGuardOpen: a sampled block's page is made accessible
	// together with the guard page after it (a length of two pages
	// where one was meant), so an overflow out of it is not stopped.
	BugSampleGuardOpen
	// BugLargeKeptOpen: a freed large block whose pages the quarantine
	// keeps for the cache is left accessible ("the cache makes it
	// accessible again anyway"), so a use after free of it is not
	// stopped.
	BugLargeKeptOpen
	// BugMetaLeftOpen: the metadata guard's close reads a page's open
	// count before decrementing it, so the last closer never makes the
	// page read-only again: site records stay writable.
	BugMetaLeftOpen
	// BugPurgeUnverified: the verification before a purge looks only
	// for slots in the free, poisoned state; a slot evicted from the
	// quarantine still says quarantined until its next Alloc, so a
	// write after free into it goes with the slab's pages.
	BugPurgeUnverified

	bugReallocShort      = BugReallocShort
	bugDoublePush        = BugDoublePush
	bugNoZero            = BugNoZero
	bugFlushLoses        = BugFlushLoses
	bugRefillDup         = BugRefillDup
	bugPlainFree         = BugPlainFree
	bugEvictTwice        = BugEvictTwice
	bugCanarySkip        = BugCanarySkip
	bugSpillNoZero       = BugSpillNoZero
	bugPurgeSkip         = BugPurgeSkip
	bugChecksumPage      = BugChecksumPage
	bugTrimPurged        = BugTrimPurged
	bugQuarantineLast    = BugQuarantineLast
	bugAsanGranule       = BugAsanGranule
	bugEvictedUnverified = BugEvictedUnverified
	bugReuseClear        = BugReuseClearsPayload
	bugReuseRedzones     = BugReuseSkipsRedzones
	bugSampleKeeps       = BugSampleKeepsPage
	bugSampleGuard       = BugSampleGuardOpen
	bugLargeKept         = BugLargeKeptOpen
	bugMetaLeftOpen      = BugMetaLeftOpen
	bugPurgeUnverified   = BugPurgeUnverified
)

// injecting says the fault-injection layer is compiled in.
const injecting = true

var seeded atomic.Int32

// SetBug selects the seeded bug (0: none).
func SetBug(b int) { seeded.Store(int32(b)) }

func bug(b int) bool { return int(seeded.Load()) == b }

// Test hooks, the fault-injection layer's other half: tests set them to
// make another goroutine act inside a window that is otherwise too narrow
// to hit.
var (
	// freeHook runs in every Free and Realloc of a small block between
	// loading its header and changing its state (releaseSlot).
	freeHook func(slot unsafe.Pointer)
	// checkHook runs in Check between reading a slot's header and
	// verifying the slot, where another goroutine may free or reuse it.
	checkHook func(slot unsafe.Pointer)
)

func hookRelease(slot unsafe.Pointer) {
	if freeHook != nil {
		freeHook(slot)
	}
}

//lint:ignore U1000 used by the hardening layer (harden*.go, -tags hardened)
func hookCheck(slot unsafe.Pointer) {
	if checkHook != nil {
		checkHook(slot)
	}
}
