//go:build !asan

package hardened_test

import (
	"errors"
	"testing"

	"github.com/hardalloc/hardalloc/hardened"
	"github.com/hardalloc/hardalloc/internal/harness"
)

// The header's second word mirrors the first while a block is live
// (-asan builds: both are heap redzone, which ASan stops at the write).
// A write to any of its bytes while the block is live is an underflow
// reported at Free, naming that byte and the block; the block is never
// handed out again and the allocator goes on.
func TestHeaderMirrorLiveDamage(t *testing.T) {
	mirror := headerOffset() + 8 // the second word, from the payload
	for _, n := range []int{16, 48, 1000} {
		for k := range 8 {
			a, c := newAlloc(t, hardened.Options{})
			b := mustAlloc(t, a, n)
			flip(b, mirror+k, 0x10)
			a.Free(b)
			r := c.take()
			want := addr(b) + uintptr(mirror+k)
			if len(r) != 1 || r[0].Kind != hardened.Underflow || r[0].Op != "Free" || r[0].Addr != want ||
				r[0].Block != addr(b) || r[0].Size != n || len(r[0].Got) != 8-k {
				t.Fatalf("n %d, byte %d: reports %v, want one underflow at %#x in the %d-byte block at %#x with %d bytes found",
					n, k, r, want, n, addr(b), 8-k)
			}
			for range 500 {
				x := mustAlloc(t, a, n)
				if addr(x) == addr(b) {
					t.Fatalf("n %d: the withdrawn block was handed out again", n)
				}
				a.Free(x)
			}
		}
	}
}

// A write to the second word of a free slot is a write after free,
// reported by the Alloc that would have handed the slot out again (no
// quarantine here, one cache: the slot comes straight back), which
// drops it and takes another.
func TestHeaderMirrorFreeDamage(t *testing.T) {
	mirror := headerOffset() + 8
	for k := range 8 {
		a, c := newAllocWith(t, hardened.Options{QuarantineBytes: -1}, harness.Extra{Cache: func() int { return 0 }})
		b := mustAlloc(t, a, 56)
		a.Free(b)
		flip(b, mirror+k, 0x01)
		for range 4 {
			x := mustAlloc(t, a, 56)
			if addr(x) == addr(b) {
				t.Fatalf("byte %d: the damaged slot was handed out again", k)
			}
			a.Free(x)
		}
		r := c.take()
		want := addr(b) + uintptr(mirror+k)
		if len(r) != 1 || r[0].Kind != hardened.WriteAfterFree || r[0].Op != "Alloc" || r[0].Addr != want || r[0].Size != 56 {
			t.Fatalf("byte %d: reports %v, want one write after free at %#x naming the 56-byte block", k, r, want)
		}
	}
}

// The mirror is keyed with the slot's address: a live header copied
// whole (both words) over another live block's is still caught at that
// block's Free, as the checksum alone catches it.
func TestHeaderMirrorCopied(t *testing.T) {
	a, c := newAlloc(t, hardened.Options{})
	src, dst := mustAlloc(t, a, 40), mustAlloc(t, a, 40)
	h := headerOffset()
	pokeBytes(dst, h, append([]byte(nil), raw(src, h, 16)...))
	a.Free(dst)
	r := c.take()
	if len(r) != 1 || r[0].Kind != hardened.HeaderCorruption {
		t.Fatalf("reports %v, want one header corruption", r)
	}
	a.Free(src)
	// The damaged header stays so; Close says so once more.
	if err := a.Close(); !errors.Is(err, hardened.HeaderCorruption) {
		t.Fatalf("Close: %v, want the header corruption again", err)
	}
	c.take()
}
