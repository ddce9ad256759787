//go:build !amd64

package hardened

import (
	"runtime"
	"unsafe"
)

//go:noinline
func callers(skip int, pcs []uintptr) int { return runtime.Callers(skip+3, pcs) }

// frame is nil here: there is no frame-pointer walk, and callersAt and
// hashAt, given nil, start at their caller's caller, as a walk from their
// caller's frame record would.
func frame() unsafe.Pointer { return nil }

// callersAt is runtime.Callers from its caller's caller; fp is nil.
//
//go:noinline
func callersAt(fp unsafe.Pointer, pcs []uintptr) int { return runtime.Callers(3, pcs) }

// hashAt is callersAt(fp, pcs[:max]) and the stackHash of what it wrote,
// and their number.
//
//go:noinline
func hashAt(fp unsafe.Pointer, max int) (hash uint64, n int) {
	var pcs [maxWalk]uintptr
	n = runtime.Callers(3, pcs[:max])
	return stackHash(pcs[:n]), n
}
