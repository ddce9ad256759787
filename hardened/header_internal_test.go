package hardened

import (
	"math/rand/v2"
	"testing"
	"unsafe"
)

// The header checksum catches every change of up to three bits and every
// burst of up to 16 bits anywhere in the 8-byte word, for any slot and
// secret: detection of a damaged header is certain, not 1 - 2^-16.
func TestHeaderChecksumDetectsSmallDamage(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for trial := range 4 {
		a := &Allocator{secret: rng.Uint64()}
		slot := randomSlot(rng)
		h := header{size: rng.IntN(maxSmall + 1), off: uintptr(rng.IntN(64)) * 16,
			class: rng.IntN(numClasses), state: slotState(rng.IntN(6))}
		v := a.encode(slot, h)
		if got, ok := a.decode(slot, v); !ok || got != h {
			t.Fatalf("trial %d: %+v does not round-trip (%+v, %v)", trial, h, got, ok)
		}
		bad := func(e uint64, what string) {
			if _, ok := a.decode(slot, v^e); ok {
				t.Fatalf("trial %d: %s (error %#016x) not detected in header %#016x", trial, what, e, v)
			}
		}
		for i := range 64 {
			bad(1<<i, "1-bit flip")
			for j := range i {
				bad(1<<i|1<<j, "2-bit flip")
				for k := range j {
					bad(1<<i|1<<j|1<<k, "3-bit flip")
				}
			}
		}
		// Bursts: first and last bit set, anything between, length <= 16.
		for start := range 64 {
			for n := 2; n <= 16 && start+n <= 64; n++ {
				for mid := range uint64(1) << (n - 2) {
					bad((1|mid<<1|1<<(n-1))<<start, "burst")
				}
			}
		}
	}
}

// restate's one-lookup checksum update equals a full re-encode.
func TestRestateMatchesEncode(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	a := &Allocator{secret: rng.Uint64()}
	for range 10000 {
		slot := randomSlot(rng)
		h := header{size: rng.IntN(maxSmall + 1), off: uintptr(rng.IntN(64)) * 16,
			class: rng.IntN(numClasses), state: slotState(rng.IntN(6))}
		st := slotState(rng.IntN(6))
		want := h
		want.state = st
		if got := restate(a.encode(slot, h), st); got != a.encode(slot, want) {
			t.Fatalf("restate(%+v, %d) = %#x, encode gives %#x", h, st, got, a.encode(slot, want))
		}
	}
}

// slots are only addresses to the checksum: any 16-aligned ones will do.
var slotArena = make([]byte, 1<<20)

func randomSlot(rng *rand.Rand) unsafe.Pointer {
	return unsafe.Pointer(&slotArena[rng.IntN(len(slotArena)/16)*16])
}
