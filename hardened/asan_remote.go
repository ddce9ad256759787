//go:build asan

package hardened

import (
	"encoding/binary"
	"fmt"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"
)

// This file is Explain from outside the process: what the -asan reporter
// (asan.go), a second process, says of an address in the process it
// serves, which is stopped in ASan's report callback and cannot run Go.
// Large and sampled blocks, 0-byte blocks and closed allocators are
// explained from the record book (explainBook); a small block from its
// slot header and, in hardened builds, its site record and the stacks in
// the depot, read out of the stopped process's memory with
// process_vm_readv, at the addresses the record book publishes.

// remoteMem reads another process's memory.
type remoteMem int // its pid

func (m remoteMem) read(addr uintptr, b []byte) bool {
	if len(b) == 0 {
		return true
	}
	n, err := unix.ProcessVMReadv(int(m), []unix.Iovec{{Base: &b[0], Len: uint64(len(b))}},
		[]unix.RemoteIovec{{Base: addr, Len: len(b)}}, 0)
	return err == nil && n == len(b)
}

func (m remoteMem) word(addr uintptr) (uint64, bool) {
	var b [8]byte
	ok := m.read(addr, b[:])
	return binary.NativeEndian.Uint64(b[:]), ok
}

// explainRemote explains addr, in the process whose memory m reads, from
// the record book b; delta rebases that process's return addresses.
func explainRemote(b *bookLayout, m remoteMem, addr, delta uintptr) *Report {
	var rng *bookRange
	for i := range b.ranges {
		r := &b.ranges[i]
		if g := atomic.LoadUint64(&r.gen); g != 0 && addr >= r.lo && addr < r.hi && (rng == nil || g > rng.gen) {
			rng = r
		}
	}
	var large *bookRec
	for i := range b.large {
		r := &b.large[i]
		if g := atomic.LoadUint64(&r.gen); g != 0 && addr >= r.lo && addr < r.hi && (large == nil || g > large.gen) {
			large = r
		}
	}
	if rng == nil || rng.kind != rangeClasses || rng.state != stateOpen || large != nil && large.gen > rng.gen {
		return explainBook(b, addr, delta)
	}
	return remoteSmall(rng, m, addr, delta)
}

// remoteSmall is explainSmall, for a class range of the stopped process.
func remoteSmall(rng *bookRange, m remoteMem, addr, delta uintptr) *Report {
	off := addr - rng.lo
	c := int(off>>rng.shift) % numClasses
	coff := off & (1<<rng.shift - 1)
	stride := uintptr(classSize[c] + headerSize)
	in := coff & (1<<classSlabShift[c] - 1)
	idx := in / stride
	if idx >= uintptr(classSlots[c]) {
		return &Report{Kind: Overflow, Op: "fault", Addr: addr, Size: -1, Class: c,
			Detail: "an access to the unused tail of a slab: past the end of its last block"}
	}
	slabBase := rng.lo + off - coff + coff - in
	slot := slabBase + idx*stride
	v, ok := m.word(slot)
	if !ok {
		return &Report{Kind: InvalidAccess, Op: "fault", Addr: addr, Size: -1, Class: c,
			Detail: "an access to allocator address space that holds no committed slab"}
	}
	h := fields(v)
	live := v != 0 && (h.state == stateAllocated || h.state == stateDamaged)
	if addr < slot+headerSize && !live && idx > 0 {
		// In a free slot's header, right after the slot before it: that
		// block's overflow, if it is live.
		if pv, ok := m.word(slot - stride); ok && pv != 0 {
			if ph := fields(pv); ph.state == stateAllocated || ph.state == stateDamaged {
				return remoteReport(rng, m, Overflow, addr, slot-stride, c, idx-1, in-stride, ph, delta, "an access past the end of a block")
			}
		}
	}
	switch {
	case v == 0:
		// The book does not say which slabs are purged (sealed
		// read-only in hardened builds, so a write faults there).
		return &Report{Kind: InvalidAccess, Op: "fault", Addr: addr, Size: -1, Class: c,
			Detail: "an access to a slot that holds no block: never allocated, forgotten by Reset, or freed and its slab's pages given back to the OS"}
	case !live:
		return remoteReport(rng, m, UseAfterFree, addr, slot, c, idx, in, h, delta, "an access to a freed block")
	case addr < slot+headerSize+h.off:
		return remoteReport(rng, m, Underflow, addr, slot, c, idx, in, h, delta, "an access before the start of a block")
	default:
		return remoteReport(rng, m, Overflow, addr, slot, c, idx, in, h, delta, "an access past the end of a block")
	}
}

// remoteReport is newReport for a slot of the stopped process, with the
// sites its site record holds (hardened builds).
func remoteReport(rng *bookRange, m remoteMem, k Kind, addr, slot uintptr, c int, idx, in uintptr, h header, delta uintptr, detail string) *Report {
	blk := slot + headerSize + h.off
	r := &Report{Kind: k, Op: "fault", Addr: addr, Block: blk, Size: h.size, Class: c, Offset: int(addr - blk),
		Detail: detail}
	if rng.meta == 0 {
		return r
	}
	start, ok := m.word(rng.metaStart + uintptr(c)*8)
	if !ok {
		return r
	}
	slab := (slot - rng.lo) & (1<<rng.shift - 1) >> classSlabShift[c]
	var rec siteRecRaw
	if !m.read(rng.meta+uintptr(start)+(slab*uintptr(classSlots[c])+idx)*siteRecRawSize, rec.b[:]) {
		return r
	}
	w := func(i int) uint64 { return binary.NativeEndian.Uint64(rec.b[8*i:]) }
	allocStack, freeStack := uint32(w(4)), uint32(w(4)>>32)
	if w(0) != 0 {
		r.Alloc = Site{Goroutine: w(1), Seq: w(0), Stack: remoteStack(rng, m, allocStack, delta)}
	}
	if w(2) != 0 {
		r.Free = Site{Goroutine: w(3), Seq: w(2), Stack: remoteStack(rng, m, freeStack, delta)}
	}
	return r
}

// remoteStack reads stack id from the depot's slice of stacks.
func remoteStack(rng *bookRange, m remoteMem, id uint32, delta uintptr) []uintptr {
	if id == 0 {
		return nil
	}
	ptr, ok1 := m.word(rng.depot)
	n, ok2 := m.word(rng.depot + 8)
	if !ok1 || !ok2 || uint64(id) > n {
		return nil
	}
	elem := uintptr(ptr) + uintptr(id-1)*unsafe.Sizeof([]uintptr(nil))
	p, ok1 := m.word(elem)
	k, ok2 := m.word(elem + 8)
	if !ok1 || !ok2 || k > 256 {
		return nil
	}
	raw := make([]byte, 8*k)
	if !m.read(uintptr(p), raw) {
		return nil
	}
	st := make([]uintptr, k)
	for i := range st {
		st[i] = uintptr(binary.NativeEndian.Uint64(raw[8*i:])) + delta
	}
	return st
}

// remoteSummary is the line the reporter prints before its report.
func remoteSummary(m remoteMem) string {
	return fmt.Sprintf("==hardalloc== the address above is in hardalloc memory (process %d could not run Go in ASan's callback; its -asan reporter explains the address):\n", int(m))
}

// siteRecRaw is a site record's bytes: allocSeq, allocG, freeSeq, freeG
// (uint64), allocStack, freeStack (uint32), as harden_sites.go lays
// siteRec out (and checks): what the -asan reporter reads.
type siteRecRaw struct{ b [40]byte }

const siteRecRawSize = 64 // siteRec's size, a power of two
