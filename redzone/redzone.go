// Package redzone holds the layout math and the keyed byte patterns of
// hardalloc's hardening layer: canaries for the redzones around a payload
// and poison for freed memory.
//
// A pattern is an 8-byte word derived from a secret key and a block's
// address; byte i of a region holds byte (addr+i)%8 of the word, so the
// pattern is position-dependent (a copy of one block's redzone over
// another's is detected) and unpredictable without the key. Canary words
// have no zero byte, so writing a NUL terminator one byte too far is
// caught; Stopper gives the variant with a zero byte at every 8-aligned
// address, used from the ninth redzone byte on, which stops string-style
// overreads. Fill and Verify work a word at a time, and on long regions
// (bulkMin) through a string store of words on amd64 (elsewhere, copies
// of the region's start doubling) and a shifted self-comparison.
//
// The package is a leaf: it knows nothing of the allocator.
//
// Fill, Verify and their rear variants touch only bytes no correct
// program reads or writes (redzones, freed memory), which an -asan build
// of the allocator marks unaddressable; they are //go:norace, which keeps
// the compiler's sanitizer instrumentation out of them, and copy through
// the runtime's memmove and compare with its memequal directly (the copy
// builtin and string conversions check their operands under -asan).
package redzone

import (
	"encoding/binary"
	"unsafe" // also for go:linkname
)

// Round returns the redzone size for a requested size: 16 for 0, none for a
// negative request, otherwise rounded up to 16 bytes (payload alignment)
// and capped at Max.
func Round(req int) int {
	switch {
	case req < 0:
		return 0
	case req == 0:
		return 16
	}
	return min((req+15)&^15, Max)
}

// Max is the largest redzone.
const Max = 4096

// scramble derives a pattern word from a key and an address: one
// multiply by an odd constant (a bijection, so distinct slots get distinct
// words) and a fold of the high half into the low. Patterns catch
// accidental damage; a keyed hash that cost three multiplies per call was
// 8% of a hardened Alloc+Free pair (four patterns are derived per pair).
func scramble(key uint64, addr uintptr, m uint64) uint64 {
	x := (key ^ uint64(addr)>>4) * m
	return x ^ x>>32
}

// Canary returns the canary word for the block at addr: keyed, with no
// zero byte (a zeroing bug must not look like a canary).
func Canary(key uint64, addr uintptr) uint64 {
	return fillZeroBytes(scramble(key, addr, 0x9e3779b97f4a7c15), 0x5a)
}

// fillZeroBytes sets every zero byte of w to b, without branches: a byte
// is zero exactly when neither its high bit nor the carry out of its low
// seven bits plus 0x7f is set.
func fillZeroBytes(w uint64, b byte) uint64 {
	const lo7, hi = 0x7f7f7f7f7f7f7f7f, 0x8080808080808080
	zero := ^((w&lo7 + lo7) | w) & hi // 0x80 in each zero byte
	return w | (zero>>7)*uint64(b)
}

// Stopper returns canary w with its byte at every 8-aligned address zero.
func Stopper(w uint64) uint64 { return w &^ 0xff }

// StopAfter is how many rear-redzone bytes use the plain canary before the
// stopper pattern begins.
const StopAfter = 8

// FillRear fills a rear redzone: StopAfter bytes of w, then Stopper(w).
//
//go:norace
//go:noinline
func FillRear(b []byte, base uintptr, w uint64) {
	if base&7 == 0 && len(b) >= 8 { // the usual case: one plain word
		binary.LittleEndian.PutUint64(b, w)
		Fill(b[8:], base+8, Stopper(w))
		return
	}
	k := min(len(b), StopAfter)
	Fill(b[:k], base, w)
	Fill(b[k:], base+uintptr(k), Stopper(w))
}

// VerifyRear checks a redzone filled by FillRear; it returns the index of
// the first bad byte or -1.
//
//go:norace
//go:noinline
func VerifyRear(b []byte, base uintptr, w uint64) int {
	if base&7 == 0 && len(b) >= 8 && binary.LittleEndian.Uint64(b) == w {
		if i := Verify(b[8:], base+8, Stopper(w)); i >= 0 {
			return 8 + i
		}
		return -1
	}
	k := min(len(b), StopAfter)
	if i := Verify(b[:k], base, w); i >= 0 {
		return i
	}
	if i := Verify(b[k:], base+uintptr(k), Stopper(w)); i >= 0 {
		return k + i
	}
	return -1
}

// VerifyClear is Verify and a clear of b in one pass, for a poisoned
// block about to be handed out zeroed: it returns the index of the first
// byte of b (at address base) that differs from pattern w, or -1 when b
// held w throughout and is now all zero. When it reports damage, the
// bytes from the 32-byte chunk holding the first bad one on are left as
// found (for the report); those before it may be zero already.
//
//go:norace
//go:noinline
func VerifyClear(b []byte, base uintptr, w uint64) int {
	p, n := unsafe.Pointer(unsafe.SliceData(b)), uintptr(len(b))
	if n < bulkMin || !haveVerifyClear || base&7 != 0 {
		if i := Verify(b, base, w); i >= 0 {
			return i
		}
		clear(b)
		return -1
	}
	m := n &^ 31
	done := verifyClearChunks(p, m, native(w))
	// The chunk that differs (if any) and the tail, the slow way.
	if i := Verify(b[done:], base+done, w); i >= 0 {
		return int(done) + i
	}
	clear(b[done:])
	return -1
}

// ExpectedRear is Expected for a rear redzone starting at start.
func ExpectedRear(w uint64, start, addr uintptr, n int) []byte {
	out := make([]byte, n)
	for i := range out {
		x := addr + uintptr(i)
		if x-start < StopAfter {
			out[i] = At(w, x)
		} else {
			out[i] = At(Stopper(w), x)
		}
	}
	return out
}

// Poison returns the poison word for a freed block at addr: keyed, with
// no zero byte, so neither zeroing nor a stale canary looks like poison.
func Poison(key uint64, addr uintptr) uint64 {
	return fillZeroBytes(scramble(^key, addr, 0xc2b2ae3d27d4eb4f), 0xa5)
}

// At returns the expected byte at address addr for pattern word w.
func At(w uint64, addr uintptr) byte { return byte(w >> (8 * (addr & 7))) }

// native returns the word whose in-memory bytes are w's little-endian
// bytes (w itself on little-endian machines), for whole-word access.
func native(w uint64) uint64 {
	var b [8]byte
	binary.LittleEndian.PutUint64(b[:], w)
	return binary.NativeEndian.Uint64(b[:])
}

// bulkMin is the length from which Fill and Verify use the pattern's
// period: once the first 8 bytes are right, Fill doubles them with copy
// and Verify compares the region with itself shifted by 8 (byte i+8 must
// equal byte i), both through the runtime's vectorized memmove and
// memequal. Slots of several KiB are poisoned and verified on every free
// and eviction; the word loops ran at a third of that speed, and under
// go test -fuzz every iteration of them is instrumented.
const bulkMin = 512

// Fill writes pattern w over b, whose first byte is at address base.
//
//go:norace
//go:noinline
func Fill(b []byte, base uintptr, w uint64) {
	if len(b) >= bulkMin && haveFillWords {
		// The bytes up to an 8-aligned address, one string store of
		// words, the tail.
		p := unsafe.Pointer(unsafe.SliceData(b))
		i := uintptr(0)
		for ; (base+i)&7 != 0; i++ {
			*(*byte)(unsafe.Add(p, i)) = At(w, base+i)
		}
		n := (uintptr(len(b)) - i) &^ 7
		fillWords(unsafe.Add(p, i), n, native(w))
		for i += n; i < uintptr(len(b)); i++ {
			*(*byte)(unsafe.Add(p, i)) = At(w, base+i)
		}
		return
	}
	if len(b) >= bulkMin {
		for i := range 8 {
			b[i] = At(w, base+uintptr(i))
		}
		for k := 8; k < len(b); k *= 2 {
			memmove(unsafe.Pointer(&b[k]), unsafe.Pointer(&b[0]), uintptr(min(k, len(b)-k))) // k is a multiple of the period
		}
		return
	}
	// Word stores through unsafe pointers: no bounds check per word (the
	// loops run for every redzone and poisoned slot of a hardened pair).
	p, n := unsafe.Pointer(unsafe.SliceData(b)), uintptr(len(b))
	i := uintptr(0)
	for ; i < n && (base+i)&7 != 0; i++ {
		*(*byte)(unsafe.Add(p, i)) = At(w, base+i)
	}
	wn := native(w)
	for ; i+32 <= n; i += 32 {
		x := (*[4]uint64)(unsafe.Add(p, i)) // 8-aligned here
		x[0], x[1], x[2], x[3] = wn, wn, wn, wn
	}
	for ; i+8 <= n; i += 8 {
		*(*uint64)(unsafe.Add(p, i)) = wn
	}
	for ; i < n; i++ {
		*(*byte)(unsafe.Add(p, i)) = At(w, base+i)
	}
}

// Verify returns the index of the first byte of b (at address base) that
// differs from pattern w, or -1.
//
//go:norace
//go:noinline
func Verify(b []byte, base uintptr, w uint64) int {
	if len(b) >= bulkMin {
		for i := range 8 {
			if b[i] != At(w, base+uintptr(i)) {
				return i
			}
		}
		if memequal(unsafe.Pointer(&b[8]), unsafe.Pointer(&b[0]), uintptr(len(b)-8)) {
			return -1
		}
		// Damaged: find the first bad byte the slow way.
	}
	p, n := unsafe.Pointer(unsafe.SliceData(b)), uintptr(len(b))
	i := uintptr(0)
	for ; i < n && (base+i)&7 != 0; i++ {
		if *(*byte)(unsafe.Add(p, i)) != At(w, base+i) {
			return int(i)
		}
	}
	wn := native(w)
	for ; i+32 <= n; i += 32 {
		x := (*[4]uint64)(unsafe.Add(p, i)) // 8-aligned here
		if (x[0]^wn)|(x[1]^wn)|(x[2]^wn)|(x[3]^wn) != 0 {
			break
		}
	}
	for ; i+8 <= n && *(*uint64)(unsafe.Add(p, i)) == wn; i += 8 {
	}
	for ; i < n; i++ {
		if *(*byte)(unsafe.Add(p, i)) != At(w, base+i) {
			return int(i)
		}
	}
	return -1
}

// Expected returns the n pattern bytes starting at address addr.
func Expected(w uint64, addr uintptr, n int) []byte {
	out := make([]byte, n)
	for i := range out {
		out[i] = At(w, addr+uintptr(i))
	}
	return out
}

// Addr is the address of b's first byte.
func Addr(b []byte) uintptr { return uintptr(unsafe.Pointer(unsafe.SliceData(b))) }

// memmove and memequal are the runtime's, uninstrumented (see the package
// comment).
//
//go:linkname memmove runtime.memmove
//go:noescape
func memmove(to, from unsafe.Pointer, n uintptr)

//go:linkname memequal runtime.memequal
//go:noescape
func memequal(a, b unsafe.Pointer, n uintptr) bool

// Arm fills a block's two redzones with canary w in one call: nf bytes at
// front, as Fill does, and nr bytes at rear, as FillRear does (the canary
// word, then its stopper variant). The common hardened layout (an 8-byte
// aligned front redzone and payload end, armMax bytes in all at most)
// takes straight word stores; any other goes the general way, whose bulk
// paths beat a word loop on the kilobytes of slack a big block's class
// leaves after it.
//
//go:norace
//go:noinline
func Arm(front unsafe.Pointer, nf uintptr, rear unsafe.Pointer, nr uintptr, w uint64) {
	if !wordwise(front, nf, rear, nr) {
		Fill(unsafe.Slice((*byte)(front), nf), uintptr(front), w)
		FillRear(unsafe.Slice((*byte)(rear), nr), uintptr(rear), w)
		return
	}
	wn, sn := native(w), native(Stopper(w))
	for i := uintptr(0); i < nf; i += 8 {
		*(*uint64)(unsafe.Add(front, i)) = wn
	}
	*(*uint64)(rear) = wn
	for i := uintptr(8); i < nr; i += 8 {
		*(*uint64)(unsafe.Add(rear, i)) = sn
	}
}

// armMax is the most redzone bytes Arm and Intact handle a word at a time.
const armMax = 256

// wordwise reports whether Arm and Intact take their word loops for these
// redzones: both 8-byte aligned and sized, the rear at least one canary
// word, armMax bytes in all at most.
func wordwise(front unsafe.Pointer, nf uintptr, rear unsafe.Pointer, nr uintptr) bool {
	return uintptr(front)&7 == 0 && nf&7 == 0 && uintptr(rear)&7 == 0 && nr&7 == 0 && nr >= 8 && nf+nr <= armMax
}

// Intact reports whether the redzones Arm filled still hold canary w.
// On false the caller finds the first damaged byte with Verify and
// VerifyRear.
//
//go:norace
//go:noinline
func Intact(front unsafe.Pointer, nf uintptr, rear unsafe.Pointer, nr uintptr, w uint64) bool {
	if !wordwise(front, nf, rear, nr) {
		return Verify(unsafe.Slice((*byte)(front), nf), uintptr(front), w) < 0 &&
			VerifyRear(unsafe.Slice((*byte)(rear), nr), uintptr(rear), w) < 0
	}
	wn, sn := native(w), native(Stopper(w))
	diff := *(*uint64)(rear) ^ wn
	for i := uintptr(0); i < nf; i += 8 {
		diff |= *(*uint64)(unsafe.Add(front, i)) ^ wn
	}
	for i := uintptr(8); i < nr; i += 8 {
		diff |= *(*uint64)(unsafe.Add(rear, i)) ^ sn
	}
	return diff == 0
}
