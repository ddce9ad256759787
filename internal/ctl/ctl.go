// Package ctl is the seam between package hardened and the module's
// harnesses: the allocator's controls that only harnesses use (recycling
// an allocator, auditing its slots, a block's layout, per-operation cache
// choice, junk fill, holds, always-quarantined sizes) and that are
// therefore not part of hardened's API. Package hardened fills in the
// hooks at init; package harness gives them their types. Nothing outside
// this module can import either.
package ctl

// Layout says where a live block's bytes lie, for tools that must aim at
// its header or redzones (the fuzz layer's misuse programs) instead of
// re-deriving the allocator's layout rules.
type Layout struct {
	Large bool // a large block: its own mapping between guard pages, no in-band header
	Zero  bool // a hardened 0-byte block in the PROT_NONE zero-size region
	// Sampled is a block of Options.SampleRate's guarded pool: its own
	// page against a guard page, no in-band header, no redzones.
	Sampled bool
	// Offset is how far the payload starts after its slot's start: the
	// header, the front redzone and any alignment slack. Zero for large,
	// sampled and zero-region blocks.
	Offset int
	// Front and Rear are the allocator's configured redzones (0 in
	// release builds): the bytes before the payload that are canary, and
	// the least after it.
	Front, Rear int
	// Class is the size class whose Stats count the block: its slot's
	// class (which a spilled block shares with larger requests), 0 for a
	// zero-region block, -1 for a large or sampled one.
	Class int
}

// Extra is the configuration only harnesses give an allocator.
type Extra struct {
	// Cache, when set, chooses the per-P cache of every operation (its
	// result modulo the number of caches), locked, instead of the current
	// P's, the way race builds pick one at random: a harness that derives
	// the choice from its input makes a block allocated through one cache
	// be freed through another, and caches fill, flush and refill apart
	// from the scheduler, replayably. It costs a lock per operation.
	Cache func() int
	// ClassSpace is the address space reserved for each size class, a
	// power of two from 16 MiB to 1 GiB (0 means 1 GiB, or less under
	// `ulimit -v`). Harnesses that keep hundreds of allocators alive use a
	// small one: 89 GiB each would exhaust 47 bits of address space.
	ClassSpace int64
	// JunkFill, when non-zero, fills the payload of a block handed out
	// from a slot never used since its pages were committed with this
	// byte (its first 512 and last 64 bytes), just before Alloc zeroes
	// it: pages fresh from the OS are zero, which hides an Alloc that
	// forgets to zero.
	JunkFill byte
}

// The hooks, set by package hardened's init. The allocator is passed as
// any (a *hardened.Allocator), its Options as any (a hardened.Options),
// Stats as any (a *hardened.Stats): this package cannot import hardened,
// which imports it.
var (
	New              func(opts any, x Extra) (any, error)
	Reset            func(a any, seed uint64) error
	ResetWith        func(a any, opts any, x Extra) error
	Audit            func(a any) error
	LayoutOf         func(a any, b []byte) (Layout, bool)
	Quarantined      func(a any, b []byte) bool
	Released         func(a any, b []byte) bool
	SlotLive         func(a any, b []byte) bool
	SiteRecord       func(a any, b []byte) []byte
	ReadStats        func(a any, s any)
	Hold             func(a any) (release func())
	AlwaysQuarantine func(a any, n int)
	Settle           func(a any)
)

// HeaderSize is the size of a small slot's in-band header.
const HeaderSize = 16

// QuarantineBatch is the most freed small blocks a P batches before
// pushing them into the shared quarantine (hardened builds).
const QuarantineBatch = 32
