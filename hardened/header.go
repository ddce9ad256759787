package hardened

import (
	"sync/atomic"
	"unsafe"
)

// Every small slot starts with a 16-byte header; the first 8 bytes are one
// atomic word, packed as below and sealed by a checksum keyed with the
// allocator's secret and the slot's address (Scudo's chunk header). A
// header copied from another slot, a stray write, or a forged header all
// fail the checksum. State changes are compare-and-swap, so of two
// goroutines freeing one block exactly one wins.
//
//	bits  0..16  size: the requested size in bytes (<= maxSmall)
//	bits 17..32  offset of the payload after the header, in 16-byte units
//	bits 33..39  size class
//	bits 40..42  state
//	bit  43      set in every header the allocator writes (0 = never used)
//	bits 48..63  checksum
const (
	headerSize = 16

	hdrSizeBits  = 17
	hdrOffShift  = 17
	hdrOffBits   = 16
	hdrClsShift  = 33
	hdrStShift   = 40
	hdrUsedBit   = 1 << 43
	hdrSumShift  = 48
	hdrSumMask   = 0xffff << hdrSumShift
	maxHdrOffset = (1<<hdrOffBits - 1) * 16
)

type slotState uint8

const (
	stateFree        slotState = 0
	stateAllocated   slotState = 1
	stateQuarantined slotState = 2
	stateWithdrawn   slotState = 3 // reported; never reused (hardened)
	stateBusy        slotState = 4 // being poisoned or verified (hardened)
	stateDamaged     slotState = 5 // live, its redzone damage reported by Check (hardened)
)

type header struct {
	size  int
	off   uintptr // payload offset after the 16-byte header
	class int
	state slotState
}

func (a *Allocator) checksum(slot unsafe.Pointer, v uint64) uint64 {
	// Two keyed multiply-fold rounds: every input bit reaches the top 16.
	x := ((v &^ hdrSumMask) ^ a.secret) * 0x9e3779b97f4a7c15
	x = (x ^ x>>29 ^ uint64(uintptr(slot))) * 0xbf58476d1ce4e5b9
	return x >> 48
}

func (a *Allocator) encode(slot unsafe.Pointer, h header) uint64 {
	v := uint64(h.size) | uint64(h.off/16)<<hdrOffShift | uint64(h.class)<<hdrClsShift |
		uint64(h.state)<<hdrStShift | hdrUsedBit
	return v | a.checksum(slot, v)<<hdrSumShift
}

// decode unpacks v; ok is false when the checksum does not match.
func (a *Allocator) decode(slot unsafe.Pointer, v uint64) (h header, ok bool) {
	h = header{
		size:  int(v & (1<<hdrSizeBits - 1)),
		off:   uintptr(v>>hdrOffShift&(1<<hdrOffBits-1)) * 16,
		class: int(v >> hdrClsShift & 0x7f),
		state: slotState(v >> hdrStShift & 7),
	}
	return h, v&hdrUsedBit != 0 && v>>hdrSumShift == a.checksum(slot, v)
}

func hdrWord(slot unsafe.Pointer) *uint64 { return (*uint64)(slot) }

func loadHeader(slot unsafe.Pointer) uint64 { return atomic.LoadUint64(hdrWord(slot)) }
