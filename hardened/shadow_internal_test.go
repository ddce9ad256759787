//go:build asan

package hardened

import (
	"fmt"
	"runtime"
	"testing"
	"unsafe"

	"github.com/hardalloc/hardalloc/internal/asanrt"
)

func init() {
	shadowOfSlot = func(slot unsafe.Pointer, n int) []bool {
		out := make([]bool, n)
		for i := range out {
			out[i] = asanrt.Poisoned(unsafe.Add(slot, i))
		}
		return out
	}
}

// The shadow the allocator keeps, read back from ASan byte by byte: a
// live block's len bytes and nothing else of its slot are addressable;
// freed, Reset and never-allocated slots are not; after Close nothing the
// allocator mapped is poisoned any more (the addresses may be reused).
func TestShadowStates(t *testing.T) {
	a, err := New(Options{Seed: 3, OnReport: func(r *Report) {
		if r.Kind != Leak {
			t.Errorf("report:\n%s", r)
		}
	}})
	if err != nil {
		t.Fatal(err)
	}
	poisoned := func(p unsafe.Pointer, off int) bool { return asanrt.Poisoned(unsafe.Add(p, off)) }
	// exactly checks that [p, p+n) is addressable and the bytes around it
	// (lo before, hi after) are not.
	exactly := func(what string, p unsafe.Pointer, n, lo, hi int) {
		t.Helper()
		for i := -lo; i < n+hi; i++ {
			if want := i < 0 || i >= n; poisoned(p, i) != want {
				t.Fatalf("%s: byte %d of a %d-byte block: poisoned=%v", what, i, n, !want)
			}
		}
	}
	none := func(what string, p unsafe.Pointer, n int) {
		t.Helper()
		for i := range n {
			if !poisoned(p, i) {
				t.Fatalf("%s: byte %d is addressable", what, i)
			}
		}
	}
	var blocks [][]byte
	for _, n := range []int{0, 1, 7, 8, 15, 16, 17, 40, 48, 100, 1000, 4095, 4096, 20000, 65536, 100 << 10, 1 << 20} {
		b, err := a.Alloc(n)
		if err != nil {
			t.Fatal(err)
		}
		p := unsafe.Pointer(unsafe.SliceData(b))
		if n == 0 && Enabled {
			exactly("Alloc(0)", p, 0, 0, 16) // its own 16 bytes of the zero region
		} else {
			exactly("Alloc", p, n, 16, 16)
		}
		if n > 1 && n <= maxSmall {
			// Realloc in place (release) or moved (hardened): the new
			// block's boundary is exact, the old one's bytes are gone.
			nb, err := a.Realloc(b, n-1)
			if err != nil {
				t.Fatal(err)
			}
			np := unsafe.Pointer(unsafe.SliceData(nb))
			exactly("Realloc smaller", np, n-1, 16, 16)
			if np != p {
				none("the old block after Realloc", p, n)
			}
			b = nb
		}
		c, err := a.AllocAligned(n, 64)
		if err != nil {
			t.Fatal(err)
		}
		exactly("AllocAligned", unsafe.Pointer(unsafe.SliceData(c)), n, 16, 16)
		a.Free(c)
		none("freed aligned", unsafe.Pointer(unsafe.SliceData(c)), max(n, 1))
		blocks = append(blocks, b)
	}
	if err := a.Check(); err != nil {
		t.Fatal(err)
	}
	for _, b := range blocks[:len(blocks)/2] {
		a.Free(b)
		none("freed", unsafe.Pointer(unsafe.SliceData(b)), max(len(b), 1))
	}
	// A never-allocated slot of a carved slab: the one after a fresh block.
	b := allocT(t, a, 24)
	p := unsafe.Pointer(unsafe.SliceData(b))
	slot, c, _, _ := a.locate(uintptr(p) - uintptr(a.base))
	stride := uintptr(classSize[c] + headerSize)
	next := unsafe.Add(slot, stride)
	for loadHeader(next) != 0 { // the first slot after b never handed out
		next = unsafe.Add(next, stride)
	}
	none("a never-allocated slot", next, int(stride))
	a.Free(b)

	live := blocks[len(blocks)/2:]
	a.reset(4) // the live half leaks; nothing of it stays addressable
	for _, b := range live {
		if len(b) <= maxSmall { // large ones are cached; freed either way
			none("after Reset", unsafe.Pointer(unsafe.SliceData(b)), max(len(b), 1))
		}
	}
	b = allocT(t, a, 300)
	p = unsafe.Pointer(unsafe.SliceData(b))
	if err := a.Close(); err == nil {
		t.Fatal("Close found no leak")
	}
	// Kept, poisoned, while it is among the last closed allocators;
	// unmapped and clear after that.
	for i := -16; i < 316; i++ {
		if !poisoned(p, i) {
			t.Fatalf("just after Close, byte %d of a block is addressable", i)
		}
	}
	closeMore(t)
	for i := -16; i < 316; i++ {
		if poisoned(p, i) {
			t.Fatalf("after Close and %d more, byte %d of an unmapped block is still poisoned", keepClosedCount, i)
		}
	}
}

// A block that ends at its slab's end is followed by the next slab's
// first byte, not carved yet (PROT_NONE): it must be poisoned, so a
// one-byte overflow is an ASan report, not a bare fault (FuzzAllocFree's
// shadow oracle found it with MinAlign 64). It stays poisoned after Close
// while the allocator's memory is kept, and is clear once it is unmapped.
func TestShadowPastSlabEnd(t *testing.T) {
	a, err := New(Options{Seed: 3})
	if err != nil {
		t.Fatal(err)
	}
	b, err := a.Alloc(100)
	if err != nil {
		t.Fatal(err)
	}
	l, ok := a.layoutOf(b)
	if !ok || l.Class < 0 {
		t.Fatalf("layout of a 100-byte block: %+v, %v", l, ok)
	}
	c := l.Class // the class its slot is in (hardened builds add redzones)
	next := a.slotAt(c, uint32(1)<<classSlabShift[c])
	if !asanrt.Poisoned(next) {
		t.Errorf("the first byte of the slab after the only carved one is addressable: class %d, block %p, slab end %p, committed %d, region %#x, shadow there % x",
			c, unsafe.SliceData(b), next, a.loc[c].committed.Load(), a.classRegion(), snapshot(addrPtr(shadowOf(uintptr(next))), 4))
	}
	a.Free(b)
	a.Close()
	if !asanrt.Poisoned(next) {
		t.Error("just after Close the slab after the carved one is addressable")
	}
	closeMore(t)
	if asanrt.Poisoned(next) {
		t.Error("after Close the slab after the carved one is still poisoned")
	}
}

// closeMore makes and closes keepClosedCount allocators, so that every
// allocator closed before is unmapped.
func closeMore(t *testing.T) {
	for range keepClosedCount {
		a, err := New(Options{Seed: 1})
		if err != nil {
			t.Fatal(err)
		}
		a.Free(allocT(t, a, 10))
		a.Close()
	}
}

// TestResetShadowRedzone: after Reset every slot of every slab a class
// carved is redzone in the shadow again, byte for byte, the slabs purged
// before it (whose freed slots' shadow said freed) included: Reset marks
// only the slots handed out since the last one (slabState.touched).
func TestResetShadowRedzone(t *testing.T) {
	a, err := New(Options{Seed: 5, QuarantineBytes: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	var bs [][]byte
	for range 400 {
		b, err := a.Alloc(3000)
		if err != nil {
			t.Fatal(err)
		}
		bs = append(bs, b)
	}
	c := sizeClass(uintptr(3000 + a.h.front + a.h.rear))
	for i := len(bs) - 1; i >= 0; i-- { // the high slabs empty first and are purged
		if i%2 == 0 || i > 100 {
			a.Free(bs[i])
		}
	}
	purged := 0
	for _, st := range a.classes[c].slabs {
		if st.purged {
			purged++
		}
	}
	if purged == 0 {
		t.Fatal("no slab was purged")
	}
	a.reset(6)
	stride := uintptr(classSize[c] + headerSize)
	for s := range a.classes[c].slabs {
		base := uintptr(a.slotAt(c, uint32(s)<<classSlabShift[c]))
		if i, v := firstShadowNot(base, uintptr(classSlots[c])*stride, shadowRedzone); i >= 0 {
			t.Fatalf("slab %d of %d (%d purged): shadow byte %d is %#x after Reset, want redzone %#x", s, len(a.classes[c].slabs), purged, i, v, shadowRedzone)
		}
	}
}

// firstShadowNot returns the index of the first shadow byte of [p, p+n)
// that is not v, and that byte; -1 if all are v. //go:norace: an
// instrumented read of the shadow would check the shadow's shadow.
//
//go:norace
//go:nocheckptr
func firstShadowNot(p, n uintptr, v byte) (int, byte) {
	sh := unsafe.Slice((*byte)(addrPtr(shadowOf(p))), n>>shadowScale)
	for i, b := range sh {
		if b != v {
			return i, b
		}
	}
	return -1, 0
}

// shadowSet writes exactly the shadow bytes of [p, p+n), whatever n's
// remainder after its 32-byte steps, and leaves the bytes around it as
// they were; ASan reads the result back as poisoned (or addressable).
func TestShadowSetExact(t *testing.T) {
	mem := make([]byte, 64<<10)  // a Go heap block: its shadow is mapped
	defer runtime.KeepAlive(mem) // freed, the sweeper would poison its shadow
	base := uintptr(unsafe.Pointer(&mem[0])) &^ 7
	shadow := func(i uintptr) byte { return peekShadow(base + 8*i) }
	const window = 400 // shadow bytes examined
	defer shadowSet(base+8, 8*window, 0)
	for _, start := range []uintptr{1, 2, 5} {
		for k := uintptr(0); k <= 300; k += 1 + k/40 {
			shadowSet(base+8, 8*window, 0)
			shadowSet(base+8*start, 8*k, shadowFreed)
			for i := uintptr(1); i < window; i++ {
				want := byte(0)
				if i >= start && i < start+k {
					want = shadowFreed
				}
				if got := shadow(i); got != want {
					t.Fatalf("shadowSet(%d granules from %d): shadow byte %d is %#x, want %#x", k, start, i, got, want)
				}
			}
			if k > 0 && !asanrt.Poisoned(addrPtr(base+8*(start+k)-1)) {
				t.Fatalf("shadowSet(%d granules from %d): ASan reads the last byte as addressable", k, start)
			}
		}
	}
}

// peekShadow reads p's shadow byte, uninstrumented (a closure would not
// be: the shadow of the shadow is ASan's protected gap).
//
//go:norace
//go:nocheckptr
func peekShadow(p uintptr) byte { return *(*byte)(addrPtr(shadowOf(p))) }

// shadowSlot and shadowDead write exactly a slot's shadow, word by word,
// as a byte-by-byte model says: every slot size of the classes (and some
// past the word-wise limit), every payload start and length a slot of
// that size can hold; the shadow on either side is left as it was.
func TestShadowSlotExact(t *testing.T) {
	mem := make([]byte, 64<<10)  // a Go heap block: its shadow is mapped
	defer runtime.KeepAlive(mem) // freed, the sweeper would poison its shadow
	base := (uintptr(unsafe.Pointer(&mem[0])) + 15) &^ 15
	shadow := func(i uintptr) byte { return peekShadow(base + 8*i) }
	const sentinel = 0xf1
	defer shadowSet(base, 8*1000, 0)
	check := func(what string, m uintptr, want func(i uintptr) byte) {
		t.Helper()
		for i := uintptr(0); i < m+8; i++ {
			w := byte(sentinel)
			if i >= 2 && i < 2+m {
				w = want(i - 2)
			}
			if got := shadow(i); got != w {
				var d []byte
				for j := uintptr(0); j < m+8; j++ {
					d = append(d, shadow(j))
				}
				t.Fatalf("%s: shadow byte %d of the slot is %#x, want %#x\n% x", what, int(i)-2, got, w, d)
			}
		}
	}
	for m := uintptr(2); m <= shadowSmall+16; m += 2 {
		s := base + 16 // two shadow bytes of sentinel before the slot
		for lo := uintptr(2); lo < m; lo += 1 + lo/8 {
			for n := uintptr(1); n <= 8*(m-lo); n += 1 + n/16 {
				shadowSet(base, 8*(m+10), sentinel)
				shadowSlot(s, m, lo, n)
				check(fmt.Sprintf("shadowSlot(m=%d, lo=%d, n=%d)", m, lo, n), m, func(i uintptr) byte {
					switch {
					case i < lo || i >= lo+(n+7)/8:
						return shadowRedzone
					case i == lo+n/8:
						return byte(n % 8) // the partial granule
					}
					return 0
				})
			}
		}
		shadowSet(base, 8*(m+10), sentinel)
		shadowDead(s, m)
		check(fmt.Sprintf("shadowDead(m=%d)", m), m, func(uintptr) byte { return shadowFreed })
	}
}
