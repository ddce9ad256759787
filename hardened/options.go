package hardened

import "io"

// This file is the allocator's configuration: Options.

// Options configures an Allocator. The zero value is a good default.
type Options struct {
	// Limit caps the bytes the allocator maps readable (slabs and large
	// blocks). Zero or negative means no limit.
	Limit int64
	// Seed, when non-zero, derives every random choice (the header secret,
	// canary and poison keys, quarantine picks), so a run replays exactly.
	// Zero seeds from crypto/rand.
	Seed uint64
	// OnReport receives every detected bug. Nil means: print the whole
	// report (Report.String) to ReportOutput, then panic with *Error, the
	// way AddressSanitizer prints before it aborts. The allocator is usable
	// again after OnReport returns; the block concerned is never reused.
	OnReport func(*Report)
	// ReportOutput is where the default OnReport prints reports and where
	// Close prints the leaks it finds when OnReport is nil. Nil means
	// os.Stderr; io.Discard keeps both quiet (Close still returns the
	// leaks).
	ReportOutput io.Writer
	// Redzone is the minimum number of bytes between the header and the
	// payload, and after the payload, in hardened builds (rounded up to 16;
	// 0 means 16; negative means none beyond the size-class slack).
	Redzone int
	// QuarantineBytes is the hardened builds' budget of freed bytes held
	// back from reuse. 0 means 4 MiB; negative means no quarantine except
	// for the class that holds thread launch capsules (and the
	// AlwaysQuarantine sizes): other frees then skip poisoning, since
	// their slots are reused before any check could read it. The budget
	// is the window in which a write after free still lands in poison;
	// its cost is mostly memory traffic, since each Free recycles a slot
	// freed a budget's worth of frees earlier (BenchmarkQuarantineSize:
	// the 64-byte pair takes about 95 ns with no quarantine and 150 to
	// 180 ns with one of 64 KiB to 4 MiB). hardened_malloc's default
	// holds 256 KiB per size class.
	QuarantineBytes int64
	// StackDepth is how many frames hardened builds record for each
	// allocation and free. 0 means 16; negative means no stacks
	// (goroutine and sequence number are still recorded).
	StackDepth int
	// ProtectMetadata keeps the hardened builds' out-of-band metadata
	// (allocation/free sites) read-only outside allocator calls, so a stray
	// write into it faults instead of corrupting it. Costs two mprotect
	// calls per operation.
	ProtectMetadata bool
	// AlwaysQuarantine lists extra request sizes whose size classes are
	// always quarantined (hardened builds), whatever the budget.
	AlwaysQuarantine []int
	// ProfileName, when set in hardened builds, exports live blocks as the
	// runtime/pprof custom profile of that name (pprof.Lookup(name)), each
	// with its allocation stack: `go tool pprof` then shows who holds
	// memory. It costs a profile lock and a stack per Alloc and Free. No
	// two open allocators may share the name, nor may a profile hardalloc
	// did not make; runtime/pprof cannot unregister a profile, so after
	// Close it stays, empty, and the next allocator of that name takes it
	// over. Its stacks start at the allocator's caller. Release builds
	// record no stacks: New fails.
	ProfileName string
	// MinAlign, when set, is the alignment of every block: a power of two
	// no larger than MaxAlign (0 means 16). Alloc and Realloc then return
	// blocks aligned to it on their fast paths, and AllocAligned with an
	// alignment up to it is Alloc; for clients whose every buffer is
	// aligned (Apache Arrow's are 64-byte aligned), at the cost of up to
	// MinAlign-16 bytes of slack per small block.
	MinAlign int
	// Wrappers lists the functions that wrap this allocator for a client
	// (an adapter's Allocate and Free, say), as prefixes of the names
	// runtime.Frame.Function gives them ("example.com/adapter.(*Alloc)."):
	// their frames are dropped from the top of every site like the
	// allocator's own, so reports and their summaries start at the code
	// that called the wrapper, the way testing.T.Helper marks test helpers.
	Wrappers []string
	// LargeCacheBytes is how many bytes of freed large blocks (above
	// MaxSmall) stay mapped for reuse, so that a large Alloc after a Free
	// costs a clear instead of mmap, munmap and a page fault per page.
	// Hardened builds cache a block only once it has left the large-block
	// quarantine. 0 means 32 MiB; negative means none. Cached bytes count
	// as mapped (and against Limit, which trims the cache first).
	LargeCacheBytes int64
	// SampleRate, when positive, serves about one allocation in SampleRate
	// (of at most a page) from a pool of 16 guarded pages, GWP-ASan style:
	// the block sits against a guard page (at the start of its page or at
	// its end, alternately), records its allocation and free sites in
	// every build, and its page is PROT_NONE once it is freed until the
	// pool needs the slot again. A bad access to a sampled block faults;
	// with Monitor installed the fault is printed as a full report. It is
	// meant for production release builds: the pool is 33 pages of
	// address space and at most 16 pages of memory, and the fast path
	// pays one countdown per allocation. 0 means off.
	SampleRate int
}
