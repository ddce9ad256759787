//go:build !asan

package hardened

import (
	"encoding/binary"
	"errors"
	"slices"

	"github.com/hardalloc/hardalloc/internal/ctl"
)

// reset verifies the allocator as Close does (corruption reported, every
// live block reported as a Leak and returned, joined), then returns it to
// the state New(opts with Seed: seed) would give, except that slabs
// already committed stay mapped for reuse. Every block ever handed out
// becomes invalid: a later Free of one is reported. It exists for fuzz
// harnesses, which run thousands of programs a second and cannot pay for
// fresh pages each time (a first touch costs about 10 us on a VM). Reset
// must not race with any other call.
func (a *Allocator) reset(seed uint64) error {
	// Package thread's workers hold the allocator until they are done
	// with its memory; Reset waits for them as Close does.
	a.holds.Wait()
	if a.closed.Load() {
		return &OpError{Op: "Reset", Err: ErrClosed}
	}
	// Verify, and forget every slot: headers back to "never used", every
	// committed slab back to all-free and in reserve (purged slabs stay
	// purged).
	err := a.check("Reset", true, true)
	a.asanClasses()
	var handed [numClasses]uint8
	for _, hc := range a.handedList(&handed) { // the others are already all reserve
		c := int(hc)
		cl := &a.classes[c]
		// Every slab becomes reserve (see slabState.reserve): the class
		// starts over as if new, reviving its slabs in order as it grows.
		cl.empty, cl.lowest = 0, len(cl.slabs)
		for s := range cl.slabs {
			st := &cl.slabs[s]
			if st.used > 0 { // else nothing left its bitmap
				st.fillAll(classSlots[c])
				st.used = 0
			}
			st.touched, st.owner = 0, 0
			st.reserve, st.damaged = true, false // check above reported the damage
			a.setFresh(c, s, false)              // its bytes are the last program's, not the OS's zeros
			if a.opts.Limit > 0 && !st.purged {
				// Under a Limit, committed slabs would leave a Reset
				// allocator less room than a new one: give them back
				// (a revival charges the Limit again).
				a.purge(c, s)
			}
		}
	}
	var buf [numClasses]uint8
	counted := a.countedClasses(&buf)
	for i := range a.handed {
		a.handed[i].Store(0)
	}
	for _, pc := range a.allCaches() {
		pc.lockForRead()
		pc.n = [numClasses]uint8{}
		for _, c := range counted {
			pc.allocs[c], pc.frees[c] = 0, 0
			pc.allocsWide[c], pc.freesWide[c] = 0, 0
		}
		pc.requested = 0
		pc.resetHard() // the batched frees' headers were just cleared
		pc.unlockForRead()
	}

	a.dropLarge(true)
	a.dropSampled(false)

	a.opts.Seed = seed
	a.rng.Seed(seedBytes(seed)) // in place: NewChaCha8 allocates per Reset
	a.secret, a.mkey = a.rng.Uint64(), a.rng.Uint64()
	a.seedTicks()
	a.resetHardened()
	return err
}

// resetWith is reset with new options, for fuzz harnesses that pool
// allocators across configurations: the allocator is verified and
// emptied as by reset(opts.Seed), then takes opts and x as newWith
// would. Only the options that shape no mapping may differ from the
// allocator's: Seed, OnReport, ReportOutput, StackDepth, Wrappers,
// LargeCacheBytes, MinAlign, x.Cache, x.JunkFill, and SampleRate if
// sampling stays on (its pool is mapped at New when the rate is
// positive; the rate is only the per-P countdowns' mean). A change to
// any other is refused with an error, before anything is reset.
func (a *Allocator) resetWith(opts Options, x ctl.Extra) error {
	o := a.opts
	if opts.Limit != o.Limit || opts.Redzone != o.Redzone || opts.QuarantineBytes != o.QuarantineBytes ||
		opts.ProtectMetadata != o.ProtectMetadata || opts.ProfileName != o.ProfileName ||
		x.ClassSpace != a.x.ClassSpace || (opts.SampleRate > 0) != (o.SampleRate > 0) || !slices.Equal(opts.AlwaysQuarantine, o.AlwaysQuarantine) {
		return &OpError{Op: "resetWith", Err: errors.New("only Seed, OnReport, ReportOutput, StackDepth, Wrappers, LargeCacheBytes, MinAlign, Cache, JunkFill and a positive SampleRate may change")}
	}
	if opts.MinAlign != 0 && !validAlign(opts.MinAlign) {
		return &OpError{Op: "resetWith", Align: opts.MinAlign, Err: ErrAlignment}
	}
	if a.samp != nil {
		a.samp.rate = opts.SampleRate // reset seeds the countdowns with it, as New would
	}
	err := a.reset(opts.Seed)
	if a.closed.Load() {
		return err
	}
	a.opts, a.x = opts, x
	a.configure()
	a.reconfigureHardened()
	// A smaller large-block cache budget: what Reset parked beyond it goes.
	l := &a.large
	l.mu.Lock()
	for len(l.cache) > 0 && l.cacheBytes+l.kept > a.largeCacheBudget() {
		a.unmapOldestCached()
	}
	l.mu.Unlock()
	return err
}

// seedBytes expands a non-zero seed into a ChaCha8 key (splitmix64).
func seedBytes(s uint64) [32]byte {
	var seed [32]byte
	for i := 0; i < 4; i++ {
		s += 0x9e3779b97f4a7c15
		z := s
		z = (z ^ z>>30) * 0xbf58476d1ce4e5b9
		z = (z ^ z>>27) * 0x94d049bb133111eb
		binary.LittleEndian.PutUint64(seed[8*i:], z^z>>31)
	}
	return seed
}
