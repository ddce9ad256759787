package hardened

import (
	"testing"
	"unsafe"
)

// allocT is a.Alloc(n) for an internal test: an error fails it at once.
func allocT(t testing.TB, a *Allocator, n int) []byte {
	t.Helper()
	b, err := a.Alloc(n)
	if err != nil {
		t.Fatalf("Alloc(%d): %v", n, err)
	}
	return b
}

func addrOf(b []byte) uintptr { return uintptr(unsafe.Pointer(unsafe.SliceData(b))) }

// peekByte reads a byte the program must not (a redzone, a free slot),
// uninstrumented, so that -asan builds let the test look.
//
//go:norace
//go:noinline
func peekByte(p unsafe.Pointer) byte { return *(*byte)(p) }
