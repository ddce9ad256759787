//go:build hardened && !asan

package hardened

import (
	"sync"
	"sync/atomic"
	"unsafe"
)

// This file is the hardening layer's allocation and free sites: the
// out-of-band site record of every slot (siteRec, rec), the per-P batches
// of sequence numbers that order a block's history, the capture of the
// current goroutine and stack (who), and the depot that interns stacks.

// siteRec is one slot's diagnostics, out of band. Its size is a power of
// two (one cache line), so no record straddles a page: the metadata guard
// opens exactly one page per write.
type siteRec struct {
	allocSeq, allocG uint64
	freeSeq, freeG   uint64
	allocStack       uint32
	freeStack        uint32
	_                [24]byte
}

// A record size that does not divide the page size would let records
// straddle pages.
var _ [0]struct{} = [unsafe.Sizeof(siteRec{}) & (unsafe.Sizeof(siteRec{}) - 1)]struct{}{}

const recSize = unsafe.Sizeof(siteRec{})

// allocSeq takes the sequence number of an allocation from slot off of
// class c, under pc's pin: after the slot's last free.
func (a *Allocator) allocSeq(pc *cache, c int, off uint32) uint64 {
	return a.takeSeq(pc, a.rec(c, off).freeSeq)
}

func (a *Allocator) rec(c int, soff uint32) *siteRec {
	slab := uintptr(soff) >> classSlabShift[c]
	in := uintptr(soff) & (uintptr(1)<<classSlabShift[c] - 1)
	idx := uintptr(uint32(uint64(in) * uint64(a.loc[c].divMul) >> 32))
	i := slab*uintptr(classSlots[c]) + idx
	return (*siteRec)(unsafe.Add(unsafe.Pointer(&a.h.meta[0]), a.h.metaStart[c]+i*recSize))
}

// site captures the current goroutine, a sequence number greater than
// after (the block's previous event, so a block's history reads in order)
// and the stack.
func (a *Allocator) site(after uint64) (g, seq uint64, stack uint32) {
	seq = a.nextSeq(after)
	g, stack = a.who(nil)
	return
}

// who captures the current goroutine and stack, the parts of a site that
// need no P (interning a stack may take a lock). The frame-pointer walk
// hashes the stack as it goes and stores nothing: a stack seen before is
// named by its hash alone, and only a new one is walked again into pcs
// (from the same frame record, so the walk finds the same frames). Storing
// every walk into a zeroed array and hashing it in a second pass was
// most of a site's cost. fp, when not nil, is the frame record of the API
// call (frame, in Alloc's and Free's fast paths): the walk starts there,
// at the user's frame, rather than climbing the allocator's own frames
// first to drop them later.
//
//go:noinline
func (a *Allocator) who(fp unsafe.Pointer) (g uint64, stack uint32) {
	h := a.h
	g = goid()
	if h.depth > 0 {
		// From the API call: no frames of the allocator's own;
		// Options.Wrappers' and a go statement's wrapper (at most one) are
		// dropped by Site.Frames.
		max := h.depth + h.slop - stackSlop + 1
		if fp == nil {
			// From here: the walk climbs the allocator's own frames too,
			// which Site.Frames drops.
			fp, max = frame(), h.depth+h.slop
		}
		sum, _ := hashAt(fp, max)
		if stack = h.depot.lookup(sum); stack == 0 {
			var pcs [maxWalk]uintptr
			n := callersAt(fp, pcs[:max])
			stack = h.depot.intern(pcs[:n])
		}
	}
	return
}

// seqBatch is how many sequence numbers a P takes from the shared counter
// at a time: one atomic add per seqBatch operations instead of per
// operation (on this project's VMs an uncontended atomic add costs about
// as much as a whole release Alloc, and contended it was a third of a
// hardened pair in parallel).
const seqBatch = 256

// nextSeq returns a sequence number greater than after, unique in this
// allocator. Each P hands out numbers from a batch it took from the shared
// counter, so numbers from different Ps interleave only to within a
// batch; but every number ever handed out was taken from the counter, so
// a fresh batch starts above any number seen before, and a block's free
// is numbered after its allocation even when another P allocated it.
func (a *Allocator) nextSeq(after uint64) uint64 {
	pc := a.pin()
	s := a.takeSeq(pc, after)
	a.unpin(pc)
	return s
}

// takeSeq is nextSeq for a caller that has pinned pc already.
func (a *Allocator) takeSeq(pc *cache, after uint64) uint64 {
	s := pc.seq
	if s >= pc.seqEnd || s <= after {
		end := a.h.seq.Add(seqBatch)
		s, pc.seqEnd = end-seqBatch+1, end+1
	}
	pc.seq = s + 1
	return s
}

func (a *Allocator) siteOf(g, seq uint64, stack uint32) Site {
	return Site{Goroutine: g, Seq: seq, Stack: a.h.depot.get(stack), depth: a.h.depth, wrappers: a.opts.Wrappers}
}

func (a *Allocator) fillSites(r *Report, c int, soff uint32) {
	rec := a.rec(c, soff)
	if rec.allocSeq != 0 {
		r.Alloc = a.siteOf(rec.allocG, rec.allocSeq, rec.allocStack)
	}
	if rec.freeSeq != 0 {
		r.Free = a.siteOf(rec.freeG, rec.freeSeq, rec.freeStack)
	}
}

// depot interns stacks: each distinct stack is stored once and named by a
// uint32 id, so per-slot records stay small and memory stays bounded by
// the number of distinct call sites.
type depot struct {
	// seen is a lock-free cache in front of the shards, read on every
	// Alloc and Free that records a stack: entries pack the stack hash's
	// top 40 bits with its id (seenEntry), linearly probed, filled once
	// and never changed. A stack not found there (a new one, or one of
	// more distinct stacks than it holds) takes the locked path. Two
	// RWMutex operations per site on a line all Ps share were a quarter
	// of a hardened pair with stacks.
	seen   [depotSeen]atomic.Uint64
	shards [64]depotShard
	mu     sync.Mutex
	stacks [][]uintptr // id-1 -> stack
}

const (
	depotSeen  = 1 << 12
	seenProbes = 8
	seenIDBits = 24
)

// seenEntry packs hash h's top bits with id, or returns 0 when id does
// not fit the entry.
func seenEntry(h uint64, id uint32) uint64 {
	if id >= 1<<seenIDBits {
		return 0
	}
	return h&^(1<<seenIDBits-1) | uint64(id)
}

type depotShard struct {
	mu  sync.RWMutex
	ids map[uint64]uint32 // stack hash -> id
	_   [32]byte
}

// lookup returns the id of the stack whose hash (stackHash) is h, or 0
// when no such stack is interned.
func (d *depot) lookup(h uint64) uint32 {
	top := h &^ (1<<seenIDBits - 1)
	for k := range uint64(seenProbes) {
		e := d.seen[(h+k)%depotSeen].Load()
		if e == 0 {
			break
		}
		if e&^(1<<seenIDBits-1) == top {
			return uint32(e & (1<<seenIDBits - 1))
		}
	}
	sh := &d.shards[h>>58]
	sh.mu.RLock()
	id := sh.ids[h]
	sh.mu.RUnlock()
	if id != 0 {
		d.remember(h, id)
	}
	return id
}

// intern returns the id of stack pcs, interning it if it is new.
func (d *depot) intern(pcs []uintptr) uint32 {
	h := stackHash(pcs)
	id := d.internLocked(pcs, h)
	d.remember(h, id)
	return id
}

// remember puts id, the stack with hash h, in the lock-free cache when
// there is room in its probe run.
func (d *depot) remember(h uint64, id uint32) {
	if e := seenEntry(h, id); e != 0 {
		for k := range uint64(seenProbes) {
			slot := &d.seen[(h+k)%depotSeen]
			if old := slot.Load(); old == e || old == 0 && slot.CompareAndSwap(0, e) {
				break
			}
		}
	}
}

// internLocked is intern's path through the shards' maps.
func (d *depot) internLocked(pcs []uintptr, h uint64) uint32 {
	sh := &d.shards[h>>58]
	sh.mu.RLock()
	id, ok := sh.ids[h]
	sh.mu.RUnlock()
	if ok {
		return id
	}
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if id, ok := sh.ids[h]; ok {
		return id
	}
	d.mu.Lock()
	d.stacks = append(d.stacks, append([]uintptr(nil), pcs...))
	id = uint32(len(d.stacks))
	d.mu.Unlock()
	if sh.ids == nil {
		sh.ids = make(map[uint64]uint32)
	}
	sh.ids[h] = id
	return id
}

// get returns stack id: physical return addresses from the frame-pointer
// walk, the allocator's own frames included (Site.Frames drops them after
// inline expansion, which needs the whole slice).
func (d *depot) get(id uint32) []uintptr {
	if id == 0 {
		return nil
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.stacks[id-1]
}

// siteRecords is where a reader of this process's memory finds small
// blocks' sites (the record book publishes it for the -asan reporter):
// the site records, the address of their per-class offsets, and the
// address of the depot's slice of stacks.
func (a *Allocator) siteRecords() (meta, metaStart, depot uintptr) {
	return uintptr(unsafe.Pointer(&a.h.meta[0])), uintptr(unsafe.Pointer(&a.h.metaStart)), uintptr(unsafe.Pointer(&a.h.depot.stacks))
}
