//go:build asan

package asanrt_test

import (
	"testing"
	"unsafe"

	"github.com/hardalloc/hardalloc/hardened"
	"github.com/hardalloc/hardalloc/internal/asanrt"
)

// TestShadowReadsAgreeWithASan compares the direct shadow reads with
// ASan's own answers (__asan_region_is_poisoned, __asan_address_is_poisoned)
// over every sub-range near live, freed and zero-size blocks: each block
// boundary, partial granule and redzone the allocator makes.
func TestShadowReadsAgreeWithASan(t *testing.T) {
	a, err := hardened.New(hardened.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	var blocks [][]byte
	for _, n := range []int{0, 1, 7, 8, 9, 15, 16, 17, 31, 63, 100, 255, 1000, 4095, 4097, 70000} {
		b, err := a.Alloc(n)
		if err != nil {
			t.Fatal(err)
		}
		blocks = append(blocks, b)
	}
	check := func(what string, b []byte) {
		base := uintptr(unsafe.Pointer(unsafe.SliceData(b)))
		lo, hi := base-24, base+uintptr(len(b))+24
		if len(b) > 200 {
			// Long blocks: the ranges that start or end near an edge.
			hi = base + 200
		}
		for p := lo; p < hi; p++ {
			got := asanrt.PoisonedAt(p)
			if want := asanrt.Poisoned(ptr(p)); got != want {
				t.Fatalf("%s: PoisonedAt(%#x) = %v, ASan says %v", what, p, got, want)
			}
			for _, n := range []uintptr{1, 3, 8, 13, 64, 100, uintptr(len(b)), uintptr(len(b)) + 1} {
				wantP := asanrt.RegionPoisoned(ptr(p), n)
				got, bad := asanrt.FirstPoisoned(p, n)
				if bad != (wantP != nil) || bad && got != uintptr(wantP) {
					t.Fatalf("%s: FirstPoisoned(%#x, %d) = %#x, %v; ASan says %p", what, p, n, got, bad, wantP)
				}
			}
		}
	}
	for _, b := range blocks {
		check("live", b)
	}
	for _, b := range blocks {
		a.Free(b)
		if len(b) <= 70000/2 {
			check("freed", b) // large blocks may be unmapped at Free
		}
	}
}

func ptr(p uintptr) unsafe.Pointer { return *(*unsafe.Pointer)(unsafe.Pointer(&p)) }
