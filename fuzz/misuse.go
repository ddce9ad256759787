package fuzz

import (
	"fmt"
	"os"
	"unsafe"

	"github.com/hardalloc/hardalloc/hardened"
	"github.com/hardalloc/hardalloc/internal/harness"
	"github.com/hardalloc/hardalloc/quarantine"
)

// Misuse variants FuzzMisuse injects, one per program. Each must produce
// exactly one report of its kind. The last three need the hardening layer;
// release builds map them onto the first six.
const (
	MisuseDoubleFree = iota
	MisuseInteriorFree
	MisuseForeignFree
	MisuseReallocFreed
	MisuseHeaderDamage
	// MisuseForgedHeader copies the header of another live block of the
	// same class over the block's own: a valid header in the wrong slot
	// must fail its checksum (it is keyed by the slot's address).
	MisuseForgedHeader
	MisuseOverflow
	MisuseUnderflow
	MisuseWriteAfterFree
	numMisuse
)

var misuseKinds = [numMisuse]hardened.Kind{
	hardened.DoubleFree, hardened.InvalidFree, hardened.InvalidFree, hardened.UseAfterFree,
	hardened.HeaderCorruption, hardened.HeaderCorruption, hardened.Overflow, hardened.Underflow, hardened.WriteAfterFree,
}

type misuse struct {
	kind   hardened.Kind
	block  *block
	lo, hi uintptr // addresses a report about this misuse may name
}

func (m *misuse) covers(rep *hardened.Report) bool {
	in := func(x uintptr) bool { return x >= m.lo && x < m.hi }
	return in(rep.Addr) || in(rep.Block)
}

func at(b []byte, off int) *byte {
	return (*byte)(unsafe.Add(unsafe.Pointer(unsafe.SliceData(b)), off))
}

// flip is the misuse's bad write: bits of a byte the program must not
// touch. It is //go:norace (and noinline, so no caller's instrumentation
// reaches it) so that under -asan the write gets through to the
// allocator's own detection, which FuzzMisuse checks; AddressSanitizer
// would stop the program at the access (the -asan catalog tests that).
//
//go:norace
//go:noinline
func flip(b []byte, off int, mask byte) { *at(b, off) ^= mask }

// forge copies the header word at src over the one at dst (norace and
// noinline for -asan, as flip).
//
//go:norace
//go:noinline
func forge(dst, src *byte) {
	*(*uint64)(unsafe.Pointer(dst)) = *(*uint64)(unsafe.Pointer(src))
}

func (r *runner) misuse(i int, op Op) error {
	if r.misused != nil {
		return nil
	}
	b := r.slots[op.Slot]
	if b == nil {
		nb, err := r.a.Alloc(op.Size)
		if err != nil && r.oom(err) {
			return nil // over the Limit: no block to misuse
		}
		if nb2, ferr := r.checkNew(i, nb, op.Size, 0, err); ferr != nil {
			return ferr
		} else {
			b = nb2
		}
		r.setSlot(op.Slot, b)
	}
	// Where the block's header and redzones are, from the allocator.
	lay, ok := harness.LayoutOf(r.a, b.b)
	if !ok {
		return r.fail(i, "LayoutOf a live %d-byte block failed", len(b.b))
	}
	v := op.Aux % numMisuse
	// A sampled block's page sits between guard pages, and faults once
	// freed, in every build but -asan's (whose shadow says as much): a
	// write into the guard page after it or before it, or after its
	// Free, is a fault CatchFault turns into a report (Overflow,
	// Underflow, UseAfterFree), release builds' sampled mode included.
	sampledFault := lay.Sampled && len(b.b) > 0 && !asanBuild &&
		(v == MisuseOverflow || v == MisuseUnderflow || v == MisuseWriteAfterFree)
	if sampledFault {
		return r.misuseSampled(i, op, b, v)
	}
	if !hardened.Enabled {
		v %= MisuseOverflow
	}
	// Poison is checked while a block sits in quarantine (Check), and
	// when its slot is handed out again. With no quarantine there is
	// nothing to detect the write with. Under a small budget, half the
	// writes (by Aux) wait until the block has left the quarantine and
	// are found when its slot is handed out again (evict, reuse); the
	// others are found by Check, and the program then churns the
	// quarantine until the block Check withdrew is evicted, in a batch
	// whose other blocks must still be recycled, and the withdrawn one
	// never (the Audit at the end checks both).
	if v == MisuseWriteAfterFree && r.opts.QuarantineBytes < 0 && !lay.Zero {
		v = MisuseDoubleFree
	}
	churn := r.opts.QuarantineBytes > 0 && !lay.Zero // large and sampled blocks: a double free, below
	if asanBuild && !lay.Zero && (v == MisuseOverflow || v == MisuseUnderflow || v == MisuseWriteAfterFree) {
		v = MisuseDoubleFree // only patterns catch these writes, and -asan builds write none
	}
	if lay.Front == 0 && (v == MisuseOverflow || v == MisuseUnderflow) {
		v = MisuseDoubleFree // no redzones configured: nothing to detect it with
	}
	// Large and sampled blocks have no in-band header, and their freed
	// pages and guard pages fault; a sampled block has no redzones either.
	large := lay.Large || lay.Sampled
	if lay.Sampled && v == MisuseOverflow {
		v = MisuseDoubleFree // past its end is slack or the guard page: a fault, not a report
	}
	if (v == MisuseHeaderDamage || v == MisuseForgedHeader) && large {
		v = MisuseDoubleFree // no in-band header to damage
	}
	if large && v == MisuseUnderflow {
		v = MisuseDoubleFree // large blocks fault instead (covered by the catalog)
	}
	// A report about this misuse names an address near the block, or its
	// header (far before an aligned block's payload).
	m := &misuse{kind: misuseKinds[v], block: b, lo: b.start() - uintptr(lay.Offset) - 4096, hi: b.end() + 4096}
	a, p := r.a, b.b
	zero := lay.Zero // lives in PROT_NONE memory: writes fault
	if zero && (v == MisuseHeaderDamage || v == MisuseForgedHeader) {
		v = MisuseOverflow // a 0-byte block has no in-band header
	}
	switch {
	case zero && (v == MisuseOverflow || v == MisuseUnderflow):
		m.kind = hardened.Overflow // the fault is explained as an access through a 0-byte block
	case zero && v == MisuseWriteAfterFree:
		m.kind = hardened.UseAfterFree
	}
	poke := func(off int) {
		// Writes that fault (hardened builds) become reports through
		// CatchFault, as the fuzz targets promise.
		if zero {
			a.CatchFault(func() { flip(p, off, 0x5a) })
		} else {
			flip(p, off, 0x5a)
		}
	}
	r.setSlot(op.Slot, nil)
	switch v {
	case MisuseDoubleFree:
		a.Free(p)
		a.Free(p)
	case MisuseInteriorFree:
		a.Free(unsafe.Slice(at(p, 1+op.Aux%max(len(p), 1)), 1))
		r.setSlot(op.Slot, b) // nothing was freed: the block must still be intact
		m.block = nil
	case MisuseForeignFree:
		a.Free(make([]byte, op.Size+1))
		r.setSlot(op.Slot, b)
		m.block = nil
	case MisuseReallocFreed:
		a.Free(p)
		if _, err := a.Realloc(p, op.Size+1); err == nil {
			return r.fail(i, "Realloc of a freed block succeeded")
		}
	case MisuseHeaderDamage:
		if rec := harness.SiteRecord(a, p); rec != nil && (op.Aux/numMisuse)%2 == 1 {
			// Under Options.ProtectMetadata the block's site record is
			// read-only: a write to it faults, and CatchFault makes it a
			// report. The block itself is intact: its Free reports
			// nothing.
			m.kind, m.lo, m.hi = hardened.MetadataWrite, addrOf(rec), addrOf(rec)+uintptr(len(rec))
			a.CatchFault(func() { flip(rec, op.Aux%len(rec), 1<<(op.Aux%8)) })
			a.Free(p)
			break
		}
		flip(p, -lay.Offset+op.Aux%6, 1<<(op.Aux%8))
		a.Free(p)
	case MisuseForgedHeader:
		// The donor: a new block of the same size, most often the next
		// slot of the same page. Its header is valid, just not here.
		q, err := a.Alloc(len(p))
		ql, ok := harness.LayoutOf(a, q)
		donor := err == nil && ok && ql.Class == lay.Class && ql.Offset == lay.Offset && !ql.Large && !ql.Sampled
		if donor {
			forge(at(p, -lay.Offset), at(q, -ql.Offset))
		} else {
			flip(p, -lay.Offset+op.Aux%6, 1<<(op.Aux%8)) // no donor: damage the header instead
		}
		a.Free(p)
		a.Free(q) // the donor is intact (or nil): freed without a report
	case MisuseOverflow:
		poke(len(p) + op.Aux%8)
		a.Free(p)
	case MisuseUnderflow:
		if zero {
			poke(0) // below a 0-byte block is another 0-byte block's slot
		} else {
			poke(-1 - op.Aux%8)
		}
		a.Free(p)
	case MisuseWriteAfterFree:
		a.Free(p)
		held := !zero && harness.Quarantined(a, p)
		if lay.Large && held {
			// A large block waits in its quarantine PROT_NONE: the
			// write faults, and CatchFault makes it a report. (Nothing
			// runs between the Free and the write: the range cannot
			// have been unmapped and mapped again.)
			m.kind = hardened.UseAfterFree
			a.CatchFault(func() { flip(p, op.Aux%max(len(p), 1), 0x5a) })
			break
		}
		if !zero && !held {
			// A small budget evicted the block in its own Free: it is
			// on a free list, where its poison is verified when the slot
			// is handed out again, at a time the program does not
			// control. Free it again instead.
			m.kind = hardened.DoubleFree
			a.Free(p)
			break
		}
		if churn && (op.Aux/numMisuse)%2 == 1 && r.churn(len(p), 2, func() bool { return !harness.Quarantined(a, p) && !harness.Released(a, p) }) {
			// The block has left the quarantine (evicted to a free list,
			// or taken by one of the pairs and freed and evicted again:
			// either way free and poisoned), and its slab is still the
			// allocator's (below). A write to it now is
			// found when its slot is handed out again, in the pass
			// that zeroes it (redzone.VerifyClear) or, for payloads
			// under 512 bytes, before the zeroing. The new blocks are
			// most often a few bytes shorter, in the same class, and
			// the write then often at the old block's last byte: in
			// the new block's rear redzone, which is verified apart.
			x := op.Aux / (2 * numMisuse)
			off, n := op.Aux%max(len(p), 1), len(p)
			if x&8 != 0 {
				off = len(p) - 1
			}
			if short := len(p) - 1 - x%8; x%4 != 0 && short > 0 {
				n = short
			}
			poke(off)
			switch r.reuse(p, n, lay.Class) {
			case reuseSilent:
				return r.fail(i, "misuse %d (%v) on a %d-byte block: Alloc handed its damaged slot out again, unreported", v, m.kind, len(p))
			case reuseNotYet:
				// Its slot is on a free list the Allocs did not reach
				// (another P's cache, or the central list): it is found
				// when handed out later, or at Close. Its slab is never
				// purged meanwhile (the purge finds the damage first).
				r.misused, r.misusedAt = m, i
				r.owed = true
				return nil
			}
			break
		}
		if harness.Released(a, p) {
			// Out of the quarantine, and its slab went back to the OS
			// while the pairs ran (a class keeps one wholly free slab,
			// and the big pairs let the others empty): the slab is
			// read-only until reused, so the write faults, and
			// CatchFault makes it a report.
			m.kind = hardened.UseAfterFree
			a.CatchFault(func() { flip(p, op.Aux%max(len(p), 1), 0x5a) })
			break
		}
		poke(op.Aux % max(len(p), 1))
		a.Check() // the poison is verified now, and the block withdrawn
		if churn {
			// The withdrawn block passes through an eviction batch, whose
			// other blocks must still be recycled.
			r.churn(len(p), 1, nil)
		}
	}
	reps := r.takeReports()
	if len(reps) == 0 {
		return r.fail(i, "misuse %d (%v) on a %d-byte block went unreported", v, m.kind, len(p))
	}
	if reps[0].Kind != m.kind {
		return &Failure{Op: i, What: "misuse reported as the wrong kind, want " + m.kind.String(), Report: reps[0], Program: r.p}
	}
	for _, rep := range reps[1:] {
		if rep.Kind != m.kind || !m.covers(rep) {
			return &Failure{Op: i, What: "misuse produced a second, unrelated report", Report: rep, Program: r.p}
		}
	}
	r.misused, r.misusedAt = m, i
	return nil
}

// misuseSampled is misuse v (an overflow, underflow or write after free)
// of sampled block b: a write to the first byte of the guard page after
// its page, to the last byte of the one before, or to the block after
// its Free (nothing runs between the Free and the write, so the slot
// cannot have been sampled again), each of which must fault and be
// reported as such.
func (r *runner) misuseSampled(i int, op Op, b *block, v int) error {
	a, p := r.a, b.b
	page := uintptr(os.Getpagesize())
	start := b.start()
	lo, hi := start&^(page-1), (b.end()+page-1)&^(page-1) // the block's page
	off, kind := 0, hardened.Overflow
	switch v {
	case MisuseOverflow:
		off = int(hi - start)
	case MisuseUnderflow:
		off, kind = int(lo)-1-int(start), hardened.Underflow
	default:
		off, kind = op.Aux%len(p), hardened.UseAfterFree
	}
	m := &misuse{kind: kind, block: b, lo: lo - page, hi: hi + page}
	r.setSlot(op.Slot, nil)
	if v == MisuseWriteAfterFree {
		a.Free(p)
	}
	a.CatchFault(func() { flip(p, off, 0x5a) })
	if v != MisuseWriteAfterFree {
		a.Free(p)
	}
	reps := r.takeReports()
	if len(reps) != 1 || reps[0].Kind != kind || !m.covers(reps[0]) {
		if len(reps) == 0 {
			return r.fail(i, "misuse %d (%v) of a sampled %d-byte block, a write at offset %d, went unreported", v, kind, len(p), off)
		}
		return &Failure{Op: i, What: fmt.Sprintf("misuse %d of a sampled block: want one %v at offset %d, got %d reports", v, kind, off, len(reps)), Report: reps[0], Program: r.p}
	}
	r.misused, r.misusedAt = m, i
	return nil
}

// Outcomes of reuse.
const (
	reuseReported = iota // an Alloc reported: the damaged slot was found
	reuseSilent          // an Alloc returned the damaged slot, unreported
	reuseNotYet          // neither, within reuseTries Allocs
)

// reuseTries bounds reuse: the evicted slot is most often in this P's
// cache, under at most a quarantine batch of others.
const reuseTries = 1024

// reuse allocates n-byte blocks, keeping them, until one Alloc reports
// or returns the slot of freed (and damaged) block p of class c itself
// (its poison was not verified: a bug), then frees them again. n is p's
// size or a little less; if that lands in another class, p's size.
func (r *runner) reuse(p []byte, n, c int) int {
	var held [][]byte
	defer func() {
		for _, b := range held {
			r.a.Free(b)
		}
	}()
	for range reuseTries {
		b, err := r.a.Alloc(n)
		if err == nil {
			held = append(held, b)
		}
		switch {
		case r.nreports.Load() > 0:
			return reuseReported
		case err != nil:
			return reuseNotYet // over a Limit
		case addrOf(b) == addrOf(p):
			return reuseSilent
		}
		if lay, ok := harness.LayoutOf(r.a, b); n != len(p) && (!ok || lay.Class != c) {
			n = len(p)
		}
	}
	return reuseNotYet
}

// churn moves the blocks freed before it out of the quarantine, rounds
// times over, or, if done is not nil, until done reports true, which
// churn then reports. A freed block leaves its class's random array
// when later pushes of its class displace it (each push displaces one of
// the 16 at random), then the FIFO shared by all classes when the
// budget's worth of displaced blocks of any class has followed it. So
// churn frees churnSame blocks of n bytes (the block then still waits
// in its array less than one time in a hundred), then big blocks until
// the budget and a quarter, their own array and the Ps' batches have
// passed through: a few dozen pairs where same-size pairs alone took
// thousands (a 64 KiB budget of 16-byte blocks: 61% of the time of the
// shortest FuzzMisuse programs). Blocks of a class quarantined outside
// the budget (Always) wait for 256 pushes of their class: churn falls
// back to same-size pairs for them, and when a Limit refuses the big
// blocks.
func (r *runner) churn(n int, rounds int64, done func() bool) bool {
	pair := func(m int) bool {
		b, err := r.a.Alloc(m)
		if err != nil {
			return false // over a Limit: Check finds the damage instead
		}
		r.a.Free(b)
		return true
	}
	big := max(n, churnBig)
	bigSlot := int64(big) + harness.HeaderSize
	fast := true
	for range rounds {
		for k := 1; k <= churnSame && fast; k++ {
			if fast = pair(n); k%8 == 0 && done != nil && done() {
				return true // a small budget evicts from the arrays too
			}
		}
		for moved := int64(0); fast && moved < r.opts.QuarantineBytes*5/4+(quarantine.RandomSlots+harness.QuarantineBatch)*bigSlot; moved += bigSlot {
			fast = pair(big)
			if done != nil && done() {
				return true
			}
		}
	}
	if done == nil || fast && done() {
		return fast
	}
	slot := int64(n) + harness.HeaderSize
	for moved := int64(0); !done(); moved += slot {
		if moved >= rounds*(r.opts.QuarantineBytes*5/4+32*slot) || !pair(n) {
			return false
		}
	}
	return true
}

// churnSame is how many blocks of its size churn frees to displace a
// block from its class's random array (16 places): it stays with
// probability (15/16)^(churnSame-16) when the array was empty before it.
const churnSame = 96

// churnBig is the size of the blocks churn moves the shared FIFO with.
const churnBig = 4 << 10
