// Package hardened is hardalloc's allocator: off-heap memory (mmap)
// handed out as []byte with explicit Alloc, Realloc and Free, cheap
// always-on integrity checks in release builds, and a debug layer
// (-tags hardened) built to find memory-lifetime bugs rather than survive
// them. Under -asan every block is as precise to AddressSanitizer as its
// own heap, and every -asan build has the debug layer's sites and
// quarantine.
//
//	a, err := hardened.New(hardened.Options{})
//	...
//	defer a.Close()          // prints (and returns) every leak
//	b, err := a.Alloc(4096)  // zeroed, len == cap == 4096
//	a.Free(b)
//	a.Free(b)                // double free: the report is printed, then a panic with *Error
//
// hardalloc supports 64-bit Linux (amd64, arm64): it relies on mmap,
// mprotect and madvise semantics and on a large address-space
// reservation.
//
// # Use
//
// New takes Options, whose zero value is a good default: Limit caps the
// memory mapped, OnReport collects reports instead of the default print
// and panic (the allocator stays usable after every report), Seed makes
// a run replay. Bad arguments are errors (*OpError, matching
// ErrInvalidSize, ErrAlignment, ErrOutOfMemory, ErrClosed with
// errors.Is); bugs are reports (*Report, with Kind, the block, the
// offset, and the allocation, free and catching sites), delivered as
// *Error by the default handler, and Close returns the leaks.
//
// What is caught depends on the build: release builds catch double,
// invalid and interior frees, header corruption and leaks;
// -tags hardened adds byte-precise overflow and underflow (redzones),
// write after free (poison and a quarantine), faults on large blocks and
// 0-byte blocks, and every block's sites; -asan stops any bad access at
// the access and, like ASan's own allocator, always records the sites
// (an -asan build is a hardened build). In production,
// Options.SampleRate puts one allocation in N on a guarded page
// (GWP-ASan style), and Monitor turns a fault on hardalloc memory into a
// report; CatchFault does the same for one function. Explain says what
// hardalloc knows about an address.
//
// # Design
//
// The rest of this comment is for readers of the code.
//
// # Layers
//
// The allocator is a hierarchy, like Go's runtime (mcache → mcentral →
// mheap → OS):
//
//  1. Per-P caches (cache.go). Each P has, per size class,
//     an array of free slot offsets. Alloc and Free pin the goroutine to
//     its P (runtime.procPin) and push or pop without a lock or atomic.
//     The free list is out of band: a write after free cannot redirect it.
//     Race builds use the same code with a lock per cache.
//
//  2. Per-class central lists (central). When a cache is empty it takes
//     half a cache of offsets from its class's central list, under that
//     class's lock, from slabs that P's cache has taken from before or
//     nobody has (so two Ps' blocks do not share cache lines), else from
//     any; when full, it gives half back. With Options.Limit set
//     there are no per-P caches, so the limit is exact. A class whose
//     central list is empty borrows one free slot from the next larger
//     classes (up to six classes, at most 1.75 times its size) before it
//     commits a new slab: segregated classes otherwise each hold memory
//     up to their own high-water mark (on BenchmarkMixed, free slots came
//     to 43% of the live bytes; with spilling, about 20%). The block's
//     header names the class it lives in, so Free returns it there.
//     Always-quarantined classes (thread capsules) never spill.
//
//  3. Class regions and slabs. New reserves 1 GiB of address space per
//     size class (89 classes, 16 B to 144 KiB, PROT_NONE, nothing
//     committed); under an address-space limit (ulimit -v) less, down to
//     16 MiB a class, taking at most half of what the limit leaves so the
//     Go heap keeps the rest (a full class region then serves its sizes
//     as large blocks). A class grows by committing its next slab (mprotect; a
//     power of two from 16 KiB to 1 MiB). Only the slab's slots, rounded up to a page, are
//     committed: the tail stays PROT_NONE and costs no memory (1.34 ->
//     1.30 mapped/live on the mixed workload, mean of six runs). So
//     mkclasses.go picks the smallest slab with at least four slots and
//     under 1/16 of page rounding, which for the largest classes is four
//     to seven slots instead of fifteen to nineteen: a slab goes back to
//     the OS only once every slot in it is free, and random frees empty
//     small slabs far sooner (1.28 -> 1.21 mapped/live). A pointer's
//     class, slab and slot follow from its address alone, so Free
//     validates any pointer without reading memory it does not own.
//
//  4. Large blocks (large.go). Requests above MaxSmall (144 KiB, with
//     the redzones in hardened builds: a 128 KiB buffer is small), and
//     alignments a slot cannot give, get their own mapping with a
//     PROT_NONE guard page on each side (MADV_GUARD_INSTALL where the
//     kernel has it), tracked out of band. A freed mapping goes to a
//     bounded cache (Scudo's secondary cache; Options.LargeCacheBytes,
//     default 32 MiB, 64 entries) and is reused best-fit within twice its
//     size: a cached Alloc costs a clear, where a fresh one costs mmap,
//     two guard installs and a page fault per page (about 10 us each on a
//     VM). What the cache cannot hold is unmapped.
//
// # The Alloc path
//
// Alloc(n) maps n to a class (lookup tables, as in Go's sizeclasses.go),
// pops a slot offset from the P's cache, writes the slot's 16-byte header
// and zeroes the n-byte payload. len == cap == n, so reslicing can never
// reach the slot's slack. Alloc(0) is a distinct, freeable empty slice.
//
// # The Free path and the always-on checks
//
// Free(b) takes b's address and (1) checks it lies in the class regions
// or the large-block table, else InvalidFree (a Go-heap slice, a foreign
// mapping - never read); (2) finds its slot by arithmetic and checks the
// slot is committed, else InvalidFree; (3) loads the header word and
// compares it with the header's second word, its mirror while the block
// is live (the word XORed with a per-allocator key and the slot
// address): a match means the word is the one published for this slot,
// intact and allocated; anything else takes the general path, which
// verifies the word's checksum, a CRC-16 of the header XORed with a term
// keyed by a per-allocator secret and the slot address (Scudo's chunk
// header, with certain detection of any 1-3 flipped bits or any burst of
// up to 16), else HeaderCorruption; (4) checks the state is allocated,
// else DoubleFree, and the mirror, else Underflow (the second word was
// overwritten: in release builds it ends where the payload starts); (5)
// checks b starts exactly at the payload, else InvalidFree (an interior
// pointer); (6) compare-and-swaps the header to free, so of two racing
// Frees exactly one wins; (7) the block dies (smallDies: the layers are
// told, and the offset goes to the P's cache). The Alloc that takes the
// slot again checks the free word against the mirror of its last live
// word (WriteAfterFree if only the mirror was written, HeaderCorruption if
// the word was). A block whose Free was rejected is never reused. Reports go to Options.OnReport; the default prints the whole
// report (Report.String) to Options.ReportOutput (stderr) and panics with
// *Error. Close reports every block still live as a Leak, and with the
// default handler prints them, so `defer a.Close()` shows leaks.
//
// # Hardened builds (-tags hardened)
//
// The hardening layer is a set of methods with a hardened half
// (harden*.go) and a release half (harden0.go, empty where the layer only
// adds work), called at the four points of a block's life (lifecycle.go)
// and a few others, so a release build compiles it away, as
// internal/race's race.go and norace.go do. With the tag:
//
//   - redzones (package redzone) of Options.Redzone bytes pad the payload
//     away from the header and after it, and the rest of the slot is rear
//     redzone too, so overflow detection is byte-precise; canaries are
//     keyed by the secret and block address, checked on Free, Realloc,
//     Check and Close (Overflow, Underflow, with the first bad byte);
//   - freed slots are filled with keyed poison and wait in a size-class
//     quarantine (package quarantine) under a byte budget; the class of
//     thread's launch capsule is always quarantined; poison is verified
//     by Check while a slot waits, and when the slot is handed out again
//     (the payload's in the pass that zeroes it) or at Close, wherever it
//     waited (WriteAfterFree). Each P batches its frees (up to 32 blocks,
//     an eighth of the budget shared by the Ps) and pushes them under one
//     lock into its own shard of the quarantine; shards share the budget
//     by reservation (a push at a full budget writes nothing another P
//     reads), and a push evicts from its own shard while that holds its
//     share, so each P recycles the slots it freed (one shared queue made
//     slots migrate between CPUs, and their header lines bounce), into
//     its own cache, which holds a batch's evictions. An eviction does
//     not touch the slot: its header says quarantined until the Alloc
//     that takes it claims it with one compare-and-swap (which settles
//     any race with Check) and verifies its poison. The blocks a batch
//     evicts were freed a quarantine ago and are cold, so their headers,
//     first lines and site records are prefetched as they go back;
//   - with no quarantine budget (QuarantineBytes < 0), ordinary frees skip
//     poison and the quarantine: their slots are reused at once;
//   - each slot's last allocation and first free site (goroutine, sequence
//     number, stack in a deduplicating depot, looked up by a hash taken
//     during the frame-pointer walk) are kept out of band, in a
//     metadata region that Options.ProtectMetadata keeps read-only except
//     inside a scoped guard;
//   - large blocks are PROT_NONE on Free and held in a bounded quarantine
//     (with their pages kept, when the cache will take them afterwards),
//     Alloc(0) returns an address in a PROT_NONE region, and
//     Allocator.CatchFault with Explain turns the resulting faults into
//     reports (UseAfterFree, Overflow, Underflow, MetadataWrite).
//
// # Access-time detection (-asan)
//
// Built with -asan (go build -asan, go test -asan; cgo with gcc or
// clang), the allocator keeps AddressSanitizer's shadow memory true for
// everything it maps (shadow.go is the one place that does it): only the
// len bytes of live payloads are addressable, with ASan's own heap values
// for redzones and freed memory. A Go or C access outside a live block is
// then stopped at the access by ASan, and hardalloc adds the block, the
// offset, the accessing stack and the allocation and free sites (asan.go).
// Every -asan build compiles the hardening layer in, -tags hardened or not:
// a report that names no allocation or free site is not what a user of
// ASan expects. The shadow catches at the access what canaries and poison
// would find later, so the layer writes neither there (harden.go's
// patterns); its sites and quarantine stay, the quarantine without its
// random arrays (quarantine.NewShardsFIFO): ASan's shadow stops an access
// to a freed block for as long as the block waits, and in one FIFO queue
// every block waits the whole budget. The accessing stack is the
// frame-pointer chain from the return address of the instrumented access,
// never a scan of stack words. The watcher goroutine that prints the report
// needs the scheduler; when it cannot run (a stop-the-world waiting on the
// faulting thread's P), a reporter process started with the first
// allocator prints the same report from the record book and the stopped
// process's memory (asan_remote.go); a C atomic decides once who prints.
// A closed allocator's memory stays reserved and PROT_NONE for the last
// eight closed allocators, so a late access is a report, not a bare fault.
//
// ASan and checkptr instrument every load and store of a package built
// with -asan, hardalloc's own bookkeeping included; the files on the hot
// paths, and the walks over every slot (Check, Reset, Stats and the
// harness's audit), are therefore built under -asan from generated copies
// (zasan_*.go, by internal/asangen through go generate) whose functions
// are //go:norace, and //go:nocheckptr where they convert pointers, so
// only the user's accesses pay. The few small helpers the pair must
// inline carry no //go:nocheckptr (a function so marked cannot inline
// while checkptr is on); their callers carry it, and an inlined body is
// checked or not as its caller is (TestAsanPairUninstrumented).
// TestAsanCopiesUpToDate fails when a copy has drifted from its source.
// Go's ASan instrumentation does not see sync/atomic operations; package
// thread reports its capsule's atomic accesses to ASan explicitly.
//
// # Sampling and the crash monitor
//
// Options.SampleRate (sample.go) serves about one allocation in
// SampleRate, chosen by a countdown in the per-P cache (cache.pop), from a
// pool of 16 guarded pages, GWP-ASan style, in every build. Monitor
// (monitor.go) starts a child process that receives this one's crash
// output (runtime/debug.SetCrashOutput) and prints hardalloc's report for
// a fault on its memory, from the records kept in a shared memfd mapping
// (book.go): allocator ranges, large and sampled blocks with their sites.
//
// # Files
//
// The allocator: alloc.go (the Allocator, New, Alloc's paths, slab
// growth) · lifecycle.go (the four points of a block's life and the
// layers they notify) · options.go (Options) · cache.go (the per-P
// caches, refill, spill and flush) · pin_norace.go, pin_race.go, pin.s
// (pinning to a P; race builds lock instead) · free.go (Free's paths and
// the validator) · realloc.go (Realloc, ReallocAligned, UsableSize) ·
// central.go (per-class central lists and slabs) · header.go (the header
// word and its checksum) · sizeclasses.go, generated by mkclasses.go
// through gen.go (the size classes) · large.go (large blocks and their
// cache) · stats.go (Stats) · check.go (Check, Trim, Close) ·
// unsupported.go (the build stops off 64-bit Linux).
//
// Sites and reports: callers.go, callers_amd64.go, callers_other.go (the
// frame-pointer unwinder and the stack hash) · goid.go, goid_asm.go, goid_noasm.go,
// goid_amd64.s, goid_arm64.s (the goroutine id) · report.go (Report, its
// text and JSON forms, what the allocator prints) · errors.go (OpError,
// Error) · explain.go (Explain, CatchFault).
//
// The hardening layer (-tags hardened): harden.go (its state, set-up,
// reset and the live-block profile) with a file per subsystem
// (harden_small.go: canaries and poison; harden_quarantine.go: quarantine
// batching and eviction; harden_sites.go: sites and the stack depot;
// harden_profile.go: the live-block profiles by name, shared with -asan
// builds rather than copied;
// harden_large.go; harden_zero.go: 0-byte blocks; harden_meta.go: the
// metadata guard; harden_store_asm.go, harden_store_other.go,
// harden_store_*.s: header stores with release ordering), and
// harden0.go, its release half; enabled_on.go, enabled_off.go (Enabled,
// for code outside the package).
//
// AddressSanitizer: shadow.go (every shadow change), asan.go and asan0.go
// (the -asan build's report callback, the reporter process and what Close
// keeps, and their release half), harden_noasan.go (what the hardening
// layer asks of the shadow, without -asan), asan_remote.go (the reporter's reads of
// the stopped process), harden_sites_asan.go (the site record layout it
// reads), zasan_*.go (generated -asan copies; never edit them, run go
// generate). Sampling and faults: sample.go (the sampled pool), book.go
// (the record book), monitor.go (the crash monitor). Harnesses: ctl.go
// (the hooks of internal/ctl), reset.go, audit.go, layout.go; bug_on.go, bug_off.go
// (fault injection: the seeded bugs and test hooks of -tags
// faultinject).
package hardened

// The -asan copies of the hardening layer's files (internal/asangen).
//go:generate go run ../internal/cmd/asangen harden.go harden_small.go harden_quarantine.go harden_sites.go harden_meta.go central.go cache.go audit.go stats.go reset.go check.go harden_zero.go harden_large.go
