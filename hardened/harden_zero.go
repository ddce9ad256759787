//go:build hardened && !asan

package hardened

import (
	"sync"
	"unsafe"

	"golang.org/x/sys/unix"
)

// This file is the hardening layer's zero-size blocks: every Alloc(0)
// gets a distinct address in a PROT_NONE region, so any access through
// one faults, with the misuse reports and leak accounting of its own.

// zeroRegion gives every hardened Alloc(0) a distinct address in a
// PROT_NONE reservation, so any access through it faults (as in
// hardened_malloc). Freed addresses are recycled oldest first once the
// region is used up.
type zeroRegion struct {
	mu    sync.Mutex
	mem   []byte
	next  uintptr
	live  map[uintptr]*zeroBlock
	freed []uintptr
	// rangeIdx is the region's range in the record book.
	rangeIdx int
}

type zeroBlock struct {
	freed       bool
	alloc, free Site
}

const zeroRegionSize = 64 << 20

func (z *zeroRegion) init() error {
	mem, err := unix.Mmap(-1, 0, zeroRegionSize, unix.PROT_NONE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS|unix.MAP_NORESERVE)
	if err != nil {
		return err
	}
	z.mem, z.live = mem, make(map[uintptr]*zeroBlock)
	return nil
}

func (z *zeroRegion) contains(p uintptr) bool {
	base := uintptr(unsafe.Pointer(&z.mem[0]))
	return p-base < zeroRegionSize
}

func (a *Allocator) allocZero(align uintptr) []byte {
	z := &a.h.zero
	g, seq, st := a.site(0)
	z.mu.Lock()
	defer z.mu.Unlock()
	var off uintptr
	if next := alignUp(z.next, align); next < zeroRegionSize {
		for gap := z.next; gap < next; gap += 16 {
			asanZero(unsafe.Pointer(&z.mem[gap]), false) // skipped for alignment: redzone too
		}
		off = next
		z.next = next + 16
	} else {
		// The region is used up (millions of Alloc(0)): recycle the
		// oldest freed address that has the alignment.
		i := 0
		for i < len(z.freed) && z.freed[i]&(align-1) != 0 {
			i++
		}
		if i == len(z.freed) {
			return nil // millions live: the caller gives it a slot instead
		}
		off = z.freed[i]
		z.freed = append(z.freed[:i], z.freed[i+1:]...)
	}
	z.live[off] = &zeroBlock{alloc: a.siteOf(g, seq, st)}
	asanZero(unsafe.Pointer(&z.mem[off]), false)
	a.profileAdd(uintptr(unsafe.Pointer(&z.mem[off])))
	pc := a.pin()
	pc.noteAlloc(0, 0)
	a.unpin(pc)
	return unsafe.Slice((*byte)(unsafe.Pointer(&z.mem[off])), 0)
}

func (a *Allocator) freeZero(op string, p unsafe.Pointer) bool {
	z := &a.h.zero
	off := uintptr(p) - uintptr(unsafe.Pointer(&z.mem[0]))
	g, st := a.who(nil)
	z.mu.Lock()
	zb := z.live[off]
	r := zeroMisuse(op, p, zb, DoubleFree, "the 0-byte block is already free")
	if r == nil {
		zb.freed = true
		asanZero(p, true)
		zb.free = a.siteOf(g, a.nextSeq(zb.alloc.Seq), st)
		z.freed = append(z.freed, off)
		a.profileRemove(uintptr(p))
	}
	z.mu.Unlock()
	if r != nil {
		a.report(r)
		return false
	}
	pc := a.pin()
	pc.noteFree(0, 0)
	a.unpin(pc)
	return true
}

// zeroMisuse says what is wrong with releasing the 0-byte block zb at p
// (nil: nothing); freed names the kind and detail for an already freed one.
func zeroMisuse(op string, p unsafe.Pointer, zb *zeroBlock, freed Kind, detail string) *Report {
	switch {
	case zb == nil:
		return &Report{Kind: InvalidFree, Op: op, Addr: uintptr(p), Size: -1, Class: -1,
			Detail: "the pointer is in the zero-size region but was never returned"}
	case zb.freed:
		return &Report{Kind: freed, Op: op, Addr: uintptr(p), Block: uintptr(p), Class: -1,
			Alloc: zb.alloc, Free: zb.free, Detail: detail}
	}
	return nil
}

// zeroSize validates a 0-byte block for Realloc.
func (a *Allocator) zeroSize(op string, p unsafe.Pointer) (int, error) {
	z := &a.h.zero
	off := uintptr(p) - uintptr(unsafe.Pointer(&z.mem[0]))
	z.mu.Lock()
	r := zeroMisuse(op, p, z.live[off], UseAfterFree, "Realloc of a 0-byte block that is already free")
	z.mu.Unlock()
	if r != nil {
		a.report(r)
		return 0, &Error{Report: r}
	}
	return 0, nil
}

// zeroLeaks reports every 0-byte block still live.
func (a *Allocator) zeroLeaks(op string) []*Report {
	z := &a.h.zero
	z.mu.Lock()
	defer z.mu.Unlock()
	base := uintptr(unsafe.Pointer(&z.mem[0]))
	var out []*Report
	for off, zb := range z.live {
		if !zb.freed {
			out = append(out, &Report{Kind: Leak, Op: op, Addr: base + off, Block: base + off, Class: -1,
				Alloc: zb.alloc, Detail: "a 0-byte block still allocated at " + op})
		}
	}
	return out
}

func (a *Allocator) explainZero(addr uintptr) *Report {
	z := &a.h.zero
	base := uintptr(unsafe.Pointer(&z.mem[0]))
	off := (addr - base) &^ 15
	z.mu.Lock()
	zb := z.live[off]
	z.mu.Unlock()
	r := &Report{Kind: Overflow, Op: "fault", Addr: addr, Block: base + off, Size: 0, Class: -1,
		Offset: int(addr - base - off), Detail: "an access through a 0-byte block (Alloc(0) returns inaccessible memory)"}
	if zb != nil {
		r.Alloc, r.Free = zb.alloc, zb.free
		if zb.freed {
			r.Kind = UseAfterFree
		}
	}
	return r
}

func (a *Allocator) zeroContains(p uintptr) bool { return a.h.zero.contains(p) }
