package hardened

import (
	"fmt"
	"os"
	"strings"
	"testing"
	"unsafe"
)

// With guard regions a large block is one mapping, not three.
func TestLargeBlockIsOneVMA(t *testing.T) {
	if !haveGuardRegions {
		t.Skip("kernel without MADV_GUARD_INSTALL: mprotect fallback")
	}
	a, _ := New(Options{Seed: 1})
	defer a.Close()
	b := allocT(t, a, 300_000)
	lo := uintptr(unsafe.Pointer(&b[0]))
	maps, _ := os.ReadFile("/proc/self/maps")
	n := 0
	for _, line := range strings.Split(string(maps), "\n") {
		var s, e uintptr
		if _, err := fmtSscanf(line, &s, &e); err == nil && e > lo-pageSize && s < lo+300_000+pageSize {
			n++
		}
	}
	if n != 1 {
		t.Fatalf("large block spans %d mappings", n)
	}
	a.Free(b)
}

func fmtSscanf(line string, s, e *uintptr) (int, error) {
	return fmt.Sscanf(line, "%x-%x", s, e)
}
