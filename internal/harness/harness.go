// Package harness is the allocator's controls for this module's harnesses
// (package fuzz, package thread, the tests), kept out of package
// hardened's API: recycling an allocator (Reset, ResetWith), checking its
// slots and memory bound (Audit), where a block's header and redzones lie
// (LayoutOf), Stats filled in place (ReadStats), a chosen per-P cache,
// junk fill and a small class space (Extra), holds that Close waits for
// (Hold) and sizes always quarantined on one allocator (AlwaysQuarantine).
package harness

import (
	"github.com/hardalloc/hardalloc/hardened"
	"github.com/hardalloc/hardalloc/internal/ctl"
)

// Extra is the configuration only harnesses give an allocator: a chosen
// per-P cache, the address space per size class, junk fill (ctl.Extra).
type Extra = ctl.Extra

// Layout is where a live block's header, redzones and payload lie.
type Layout = ctl.Layout

// HeaderSize is the size of a small slot's in-band header.
const HeaderSize = ctl.HeaderSize

// QuarantineBatch is the most freed small blocks a P batches before
// pushing them into the shared quarantine (hardened builds).
const QuarantineBatch = ctl.QuarantineBatch

// New is hardened.New with the harness's configuration x.
func New(opts hardened.Options, x Extra) (*hardened.Allocator, error) {
	a, err := ctl.New(opts, x)
	if err != nil {
		return nil, err
	}
	return a.(*hardened.Allocator), nil
}

// Reset verifies a as Close does (corruption reported, every live block
// reported as a Leak and returned, joined), then returns it to the state
// New with Seed seed would give, except that slabs already committed stay
// mapped for reuse. Every block ever handed out becomes invalid. Fuzz
// harnesses run thousands of programs a second and cannot pay for fresh
// pages each time. It must not race with any other call.
func Reset(a *hardened.Allocator, seed uint64) error { return ctl.Reset(a, seed) }

// ResetWith is Reset with new options, for harnesses that pool allocators
// across configurations. Only the options that shape no mapping may
// differ: Seed, OnReport, ReportOutput, StackDepth, Wrappers,
// LargeCacheBytes, MinAlign, x.Cache, x.JunkFill, and SampleRate if
// sampling stays on; a change to any other is refused with an error,
// before anything is reset.
func ResetWith(a *hardened.Allocator, opts hardened.Options, x Extra) error {
	return ctl.ResetWith(a, opts, x)
}

// Audit checks slot conservation (every slot handed out is in exactly one
// place: live, quarantined, or one free list), the memory bound (at most
// one wholly free slab kept mapped per class; the large-block cache
// within its budget) and that Stats.Mapped adds up to what is mapped. It
// must not run concurrently with any other call.
func Audit(a *hardened.Allocator) error { return ctl.Audit(a) }

// LayoutOf returns the layout of the live block b; false if b is not the
// start of a live block of a.
func LayoutOf(a *hardened.Allocator, b []byte) (Layout, bool) { return ctl.LayoutOf(a, b) }

// Quarantined reports whether b, a block just freed, waits in the
// quarantine (hardened builds): a write to a small one now is caught by
// Check, and a large one is PROT_NONE (a write faults). A small block its
// own Free evicted (a small budget) is already back on a free list, where
// its poison is verified when the slot is handed out again; a large one
// is in the large-block cache or unmapped.
func Quarantined(a *hardened.Allocator, b []byte) bool { return ctl.Quarantined(a, b) }

// Released reports whether b, a freed small block, lies in a slab the
// allocator gave back to the OS (purged: two wholly free slabs of a class
// are not kept): its pages read as zeros again, and a write after free
// there lands in memory no check of the allocator's can see. (A write
// made before the purge is not lost: the purge verifies the slab's free
// slots and keeps a damaged slab mapped.)
func Released(a *hardened.Allocator, b []byte) bool { return ctl.Released(a, b) }

// SlotLive reports whether the small slot that held b, a block freed
// earlier, is allocated again (to anyone, at any payload offset): in a
// program whose other goroutines allocate, a slot freed without a
// quarantine may be handed out before the freeing goroutine looks at it.
func SlotLive(a *hardened.Allocator, b []byte) bool { return ctl.SlotLive(a, b) }

// SiteRecord returns the bytes of live small block b's site record when
// Options.ProtectMetadata keeps the records read-only (hardened builds),
// else nil: a write to them must fault.
func SiteRecord(a *hardened.Allocator, b []byte) []byte { return ctl.SiteRecord(a, b) }

// ReadStats fills s as a.Stats returns it, reusing s.Classes: harnesses
// compare the accounting with their model after every batch of
// operations.
func ReadStats(a *hardened.Allocator, s *hardened.Stats) { ctl.ReadStats(a, s) }

// Hold registers a user of a's memory that runs on its own (package
// thread's workers, which touch their launch capsule after the owner has
// let go): Close waits until every hold is released. release may be
// called more than once; only the first call counts.
func Hold(a *hardened.Allocator) (release func()) { return ctl.Hold(a) }

// AlwaysQuarantine makes the size class of n-byte requests always
// quarantined on a (hardened builds), whatever its budget, and keeps it
// from lending its slots to smaller requests: package thread registers
// its launch capsule on each allocator it starts threads from.
func AlwaysQuarantine(a *hardened.Allocator, n int) { ctl.AlwaysQuarantine(a, n) }

// Settle releases every block waiting in a's quarantine (poisoned, as
// its evictions leave them) and moves every free slot parked in its per-P
// caches to its class's central list, where Trim can purge its slab. a
// must be quiet: no other goroutine may use it meanwhile.
func Settle(a *hardened.Allocator) { ctl.Settle(a) }
