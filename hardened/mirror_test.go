//go:build !asan

package hardened_test

import (
	"errors"
	"testing"
	"time"

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

// Check finds a live block's damaged mirror, names the byte, and leaves
// the block to its Free, which retires it without a second report.
func TestHeaderMirrorCheck(t *testing.T) {
	a, c := newAlloc(t, hardened.Options{})
	b := mustAlloc(t, a, 72)
	flip(b, headerOffset()+8+5, 0x80)
	err := a.Check()
	r := c.take()
	want := addr(b) + uintptr(headerOffset()+8+5)
	if !errors.Is(err, hardened.Underflow) || len(r) != 1 || r[0].Kind != hardened.Underflow || r[0].Op != "Check" || r[0].Addr != want || r[0].Size != 72 {
		t.Fatalf("Check: %v, reports %v, want one underflow at %#x in the 72-byte block", err, r, want)
	}
	a.Free(b)
	if r := c.take(); len(r) != 0 {
		t.Fatalf("Free of the damaged block reported again: %v", r)
	}
}

// Close finds a free slot's damaged mirror (in the quarantine in hardened
// builds, in a P's cache in release builds): a write after free.
func TestHeaderMirrorClose(t *testing.T) {
	a, c := newAlloc(t, hardened.Options{})
	b := mustAlloc(t, a, 24)
	a.Free(b)
	flip(b, headerOffset()+8, 0x01)
	if err := a.Check(); err != nil {
		t.Fatalf("Check looked at a free slot's mirror beside running Allocs: %v", err)
	}
	err := a.Close()
	r := c.take()
	want := addr(b) + uintptr(headerOffset()+8)
	if !errors.Is(err, hardened.WriteAfterFree) || len(r) != 1 || r[0].Kind != hardened.WriteAfterFree || r[0].Addr != want {
		t.Fatalf("Close: %v, reports %v, want one write after free at %#x", err, r, want)
	}
}

// No false positive: Check beside goroutines that allocate and free blocks
// of changing sizes (each new size stores a new mirror before the new
// word) never reports a mirror. (The order of those two stores is not
// what this finds wrong: the window between them is two instructions.)
func TestHeaderMirrorCheckConcurrent(t *testing.T) {
	a, c := newAlloc(t, hardened.Options{QuarantineBytes: -1})
	stop := make(chan struct{})
	done := make(chan struct{})
	for g := range 2 {
		go func() {
			defer func() { done <- struct{}{} }()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				b, err := a.Alloc(1 + (i*7+g)%60)
				if err != nil {
					t.Error(err)
					return
				}
				a.Free(b)
			}
		}()
	}
	for end := time.Now().Add(150 * time.Millisecond); time.Now().Before(end); {
		if err := a.Check(); err != nil {
			t.Errorf("Check: %v", err)
			break
		}
	}
	close(stop)
	<-done
	<-done
	if r := c.take(); len(r) != 0 {
		t.Fatalf("correct use reported: %v", r[0])
	}
}
