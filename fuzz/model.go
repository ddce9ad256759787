package fuzz

import (
	"bytes"
	"cmp"
	"iter"
	"math/bits"
	"slices"
	"sync"
	"unsafe"
)

// This file is the shadow model: what the program believes about every
// block it holds (its slot, its expected bytes, its class), the blocks
// it dropped without freeing (orphans, expected leaks) and the patterns
// it writes; exec.go checks the allocator against it after every op.

// model is what the program holds: a block per slot, the orphans, and the
// bulk set.
type model struct {
	slots   [NumSlots]*block
	held    uint16   // bit s set: slots[s] is not nil (setSlot)
	orphans []*block // blocks whose slot was reused without a free: expected leaks, sorted by start

	bulk      []bulkBlock // the bulk set (bulk.go)
	bulkBytes int         // its bytes
	bulkClass []int64     // its blocks per size class
	granules  granules    // the granules it covers (overlap.go)
}

// block is the model of one live block.
type block struct {
	b     []byte
	want  []byte // expected contents; nil: all zero (never written)
	align int    // AllocAligned's alignment (0: plain Alloc)
	class int    // the size class Stats count it in (-1: large), from LayoutOf

	//lint:ignore U1000 used under -asan (shadow_asan.go)
	shadowed bool // every byte checked against ASan's shadow
}

// expect returns the byte the model expects at offset j.
func (b *block) expect(j int) byte {
	if b.want == nil {
		return 0
	}
	return b.want[j]
}

// diff returns the first offset whose byte differs from the model, or -1.
func (b *block) diff() int {
	if b.want == nil {
		return isZero(b.b)
	}
	return firstDiff(b.b, b.want)
}

func (b *block) start() uintptr { return uintptr(unsafe.Pointer(unsafe.SliceData(b.b))) }

func (b *block) end() uintptr { return b.start() + uintptr(max(len(b.b), 1)) }

// live yields every block the model holds live, orphans first, numbered
// from 0, without copying them (the overlap check runs on every alloc).
func (r *model) live() iter.Seq2[int, *block] {
	return func(yield func(int, *block) bool) {
		k := 0
		for _, l := range [2][]*block{r.orphans, r.slots[:]} {
			for _, b := range l {
				if b == nil {
					continue
				}
				if !yield(k, b) {
					return
				}
				k++
			}
		}
	}
}

// The model's copies of block contents are recycled across runs: making
// a fresh Go slice per block cost GC work, and the Go heap's scavenger
// returned the pages, which then faulted in again (about 10 us a page).
var wantPools [bits.UintSize]sync.Pool // by log2 of the capacity

func getWant(n int) []byte {
	if n == 0 {
		return []byte{}
	}
	k := bits.Len(uint(n - 1))
	if v, ok := wantPools[k].Get().(*[]byte); ok {
		return (*v)[:n] // not cleared: every caller overwrites all n bytes
	}
	return make([]byte, n, 1<<k)
}

func putWant(w []byte) {
	if cap(w) == 0 {
		return
	}
	wantPools[bits.Len(uint(cap(w)-1))].Put(&w)
}

var zeros [4096]byte

// isZero returns the index of the first non-zero byte of b, or -1.
// Comparisons go through bytes.Equal (vectorized), a page at a time.
func isZero(b []byte) int {
	for off := 0; off < len(b); off += len(zeros) {
		chunk := b[off:min(len(b), off+len(zeros))]
		if !bytes.Equal(chunk, zeros[:len(chunk)]) {
			for i, x := range chunk {
				if x != 0 {
					return off + i
				}
			}
		}
	}
	return -1
}

// setSlot sets slot s to b (nil: empty), keeping held.
func (r *model) setSlot(s int, b *block) {
	r.slots[s] = b
	if b != nil {
		r.held |= 1 << s
	} else {
		r.held &^= 1 << s
	}
}

func (r *model) put(slot int, b *block) {
	if old := r.slots[slot]; old != nil {
		k, _ := slices.BinarySearchFunc(r.orphans, old.start(), func(o *block, s uintptr) int { return cmp.Compare(o.start(), s) })
		r.orphans = slices.Insert(r.orphans, k, old) // kept sorted by start (checkNew)
	}
	r.setSlot(slot, b)
}

// fillPattern writes byte aux+13j+1 at every offset j of w: a period
// of 256 copied from a table, then doubling copies. (Byte loops are slow
// under go test -fuzz: every iteration bumps a coverage counter.)
func fillPattern(w []byte, aux byte) { fillPeriodic(w, patRows[aux][:]) }

// fillPeriodic fills b with period p repeated: one copy of it, then
// doubling copies.
func fillPeriodic(b, p []byte) {
	n := copy(b, p)
	for m := n; m < len(b); m *= 2 {
		copy(b[m:], b[:m])
	}
}

// fillRamp writes byte(j+k) at every offset j of b.
func fillRamp(b []byte, k int) { fillPeriodic(b, ramp[k%256:][:256]) }

// rampDiff returns the first offset j of b not holding byte(j+k), or -1.
func rampDiff(b []byte, k int) int {
	for off := 0; off < len(b); off += 256 {
		chunk := b[off:min(len(b), off+256)]
		if j := firstDiff(chunk, ramp[k%256:][:len(chunk)]); j >= 0 {
			return off + j
		}
	}
	return -1
}

func firstDiff(got, want []byte) int {
	if bytes.Equal(got, want) {
		return -1
	}
	for j := range got {
		if got[j] != want[j] {
			return j
		}
	}
	return -1
}

// patRows[aux][j] is aux+13j+1, fillPattern's pattern.
var patRows = func() (t [256][256]byte) {
	for aux := range t {
		for j := range t[aux] {
			t[aux][j] = byte(aux) + byte(j*13) + 1
		}
	}
	return t
}()

// ramp is the bytes 0 to 255, twice: ramp[k%256:][:n] for n <= 256 is
// byte(j+k) at each j, threadWork's pattern.
var ramp = func() (t [512]byte) {
	for i := range t {
		t[i] = byte(i)
	}
	return t
}()
