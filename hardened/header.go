package hardened

import (
	"sync/atomic"
	"unsafe"
)

// Every small slot starts with a 16-byte header; the first 8 bytes are one
// atomic word, packed as below and sealed by a checksum keyed with the
// allocator's secret and the slot's address (Scudo's chunk header; see
// checksum). A stray write of up to two adjacent bytes always fails it; a
// header copied from another slot or forged passes with probability
// 2^-16. State changes are compare-and-swap, so of two goroutines freeing
// one block exactly one wins. The second 8 bytes mirror the first while
// the block is live (mirrorOf).
//
//	bits  0..17  size: the requested size in bytes (<= maxSmall)
//	bits 18..32  offset of the payload after the header, in 16-byte units
//	bits 33..39  size class
//	bits 40..42  state
//	bit  43      set in every header the allocator writes (0 = never used)
//	bits 48..63  checksum
const (
	headerSize = 16

	hdrSizeBits  = 18
	hdrOffShift  = 18
	hdrOffBits   = 15
	hdrClsShift  = 33
	hdrStShift   = 40
	hdrUsedBit   = 1 << 43
	hdrSumShift  = 48
	hdrSumMask   = 0xffff << hdrSumShift
	maxHdrOffset = (1<<hdrOffBits - 1) * 16
)

type slotState uint8

const (
	stateFree      slotState = 0
	stateAllocated slotState = 1
	// stateQuarantined: freed and poisoned, in the quarantine or, once
	// evicted, on a free list until an Alloc claims it (hardened).
	stateQuarantined slotState = 2
	stateWithdrawn   slotState = 3 // reported; never reused (hardened)
	stateBusy        slotState = 4 // being poisoned or verified (hardened)
	stateDamaged     slotState = 5 // live, its redzone damage reported by Check (hardened)
	// stateFreePoisoned: free, and still holding the poison it was
	// filled with at Free (drained from the quarantine, or claimed by
	// the Alloc verifying it); verified when the slot is handed out
	// again, or at Close (hardened).
	stateFreePoisoned slotState = 6
)

type header struct {
	size  int
	off   uintptr // payload offset after the 16-byte header
	class int
	state slotState
}

// checksum seals the header word v of the slot at slot. It is a CRC-16
// (CCITT polynomial x^16+x^12+x^5+1) of the 48 low bits, XORed with a
// 16-bit key derived from the allocator's secret and the slot address.
// The CRC part makes detection certain for the damage that happens in
// practice: for a given slot the valid words form an affine CRC code, so
// every change of 1 to 3 bits and every burst of up to 16 bits (any one or
// two adjacent bytes overwritten) is caught, wherever it falls in the
// 8-byte word, checksum included. The key part makes a header copied from
// another slot, or forged without the secret, pass with probability 2^-16
// only (Scudo's guarantee). A plain keyed hash, as before, missed one
// single-bit flip in 65536; FuzzMisuse found one.
//
//go:norace
func (a *Allocator) checksum(slot unsafe.Pointer, v uint64) uint64 {
	crc := crcT[0][byte(v)] ^ crcT[1][byte(v>>8)] ^ crcT[2][byte(v>>16)] ^
		crcT[3][byte(v>>24)] ^ crcT[4][byte(v>>32)] ^ crcT[5][byte(v>>40)]
	addr := uint64(uintptr(slot))
	if injecting {
		if bug(bugChecksumPage) {
			addr >>= 12 // seeded bug
		}
	}
	k := (addr ^ a.secret) * 0x9e3779b97f4a7c15
	return uint64(crc) ^ k>>48
}

// crcT[k][b] is the checksum contribution of byte k of the header word
// having value b. The word is read as a polynomial with bit i the
// coefficient of x^(63-i), so adjacent bits are adjacent terms and the
// checksum (bits 48..63) is the remainder: bit 48+j holds the coefficient
// of x^(15-j) of x^16*D(x) mod g(x).
var crcT = func() (t [6][256]uint16) {
	const g = 0x11021
	var bit [48]uint16
	for i := range bit {
		// x^(63-i) mod g, then bit-reversed into the field's order.
		r := uint32(1)
		for range 63 - i {
			r <<= 1
			if r&0x10000 != 0 {
				r ^= g
			}
		}
		var rev uint16
		for j := range 16 {
			if r>>j&1 != 0 {
				rev |= 1 << (15 - j)
			}
		}
		bit[i] = rev
	}
	for k := range t {
		for b := range 256 {
			for m := range 8 {
				if b>>m&1 != 0 {
					t[k][b] ^= bit[8*k+m]
				}
			}
		}
	}
	return t
}()

// encode packs h into a header word sealed for slot.
//
//go:norace
func (a *Allocator) encode(slot unsafe.Pointer, h header) uint64 {
	v := uint64(h.size) | uint64(h.off/16)<<hdrOffShift | uint64(h.class)<<hdrClsShift |
		uint64(h.state)<<hdrStShift | hdrUsedBit
	return v | a.checksum(slot, v)<<hdrSumShift
}

// restate returns the header word old, valid for its slot, with its state
// replaced by st. The checksum's CRC part is linear and the key part
// depends on the slot alone, so only the state byte's share of the
// checksum changes: one table lookup instead of a full checksum.
//
//go:norace
func restate(old uint64, st slotState) uint64 {
	nw := old&^(7<<hdrStShift) | uint64(st)<<hdrStShift
	return nw ^ uint64(crcT[5][byte((nw^old)>>40)])<<hdrSumShift
}

// decode unpacks v; ok is false when the checksum does not match.
//
//go:norace
func (a *Allocator) decode(slot unsafe.Pointer, v uint64) (h header, ok bool) {
	return fields(v), v&hdrUsedBit != 0 && v>>hdrSumShift == a.checksum(slot, v)
}

// fields unpacks a header word already known to be valid.
func fields(v uint64) header {
	return header{
		size:  int(v & (1<<hdrSizeBits - 1)),
		off:   uintptr(v>>hdrOffShift&(1<<hdrOffBits-1)) * 16,
		class: int(v >> hdrClsShift & 0x7f),
		state: slotState(v >> hdrStShift & 7),
	}
}

func slice(p unsafe.Pointer, n uintptr) []byte { return unsafe.Slice((*byte)(p), n) }

func hdrWord(slot unsafe.Pointer) *uint64 { return (*uint64)(slot) }

// The header's second word is the first's mirror while the block is
// live: the word as published, XORed with a key of the allocator's and
// the slot's address. Free's fast path compares the two words instead of
// recomputing the checksum, whose table loads sit in series with the
// compare-and-swap that follows (they were 8-10% of the release pair at
// 16-64 B; the mirror's one load is on the header's line already). A
// word that matches its mirror is the word published for this slot,
// intact: a change to it matches only with the key known (2^-64 for a
// stray write), and a header copied from another slot, both words, is
// keyed with that slot's address. Whatever fails the comparison takes the
// general path, which verifies the checksum as before, and reports an
// intact allocated word whose mirror is not (free): the second word was
// overwritten, in release builds just below the payload (an underflow).
// A word is published with its mirror only in the allocated state; every
// other word fails the comparison, as it must. Freeing a block leaves
// the mirror as it was, so a free word restated to allocated matches it
// again: the Alloc that takes the slot back verifies the free word that
// way (armSmall; the checksum only when they disagree, to say which word
// was written), and release builds hand it on restated without storing
// the mirror again.
func mirrorWord(slot unsafe.Pointer) *uint64 { return (*uint64)(unsafe.Add(slot, 8)) }

// mirrorOf is the mirror of header word v of the slot at slot.
//
//go:norace
func (a *Allocator) mirrorOf(slot unsafe.Pointer, v uint64) uint64 {
	return v ^ a.mkey ^ uint64(uintptr(slot))
}

// mirrored says whether the slot's second word mirrors v.
//
//go:norace
func (a *Allocator) mirrored(slot unsafe.Pointer, v uint64) bool {
	return atomic.LoadUint64(mirrorWord(slot)) == a.mirrorOf(slot, v)
}

// freeWordOK says whether old, the header word of a free slot about to be
// handed out, is intact: never used (zero), or, restated, the block's
// last live word, which the mirror still holds (mirrorOf).
//
//go:norace
func (a *Allocator) freeWordOK(slot unsafe.Pointer, old uint64) bool {
	return old == 0 || a.mirrored(slot, old^freeToLive)
}

// freeToLive is restate from free to allocated as one XOR: the state
// field's change and its checksum share are the same for every word
// (restate). A constant, not a table load that waits for the word, on the
// release Alloc's path.
var freeToLive = restate(0, stateAllocated)

// publishLive stores v, a live block's header word, with its mirror
// first, so that whoever sees v sees the mirror too.
//
//go:norace
func (a *Allocator) publishLive(slot unsafe.Pointer, v uint64) {
	publishPair(slot, v, v^a.mkey^uint64(uintptr(slot))) // mirrorOf, spelled out to stay within the inlining budget
}

// withdraw marks a reported slot so it is never reused nor reported again;
// false if its header is no longer old (the slot moved on).
func (a *Allocator) withdraw(slot unsafe.Pointer, old uint64) bool {
	return atomic.CompareAndSwapUint64(hdrWord(slot), old, restate(old, stateWithdrawn))
}

func loadHeader(slot unsafe.Pointer) uint64 { return atomic.LoadUint64(hdrWord(slot)) }
