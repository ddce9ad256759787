//go:build !amd64

package hardened

import (
	"runtime"
	"unsafe"
)

//go:noinline
func callers(skip int, pcs []uintptr) int { return runtime.Callers(skip+3, pcs) }

// fpHash is callers(skip, pcs[:max]) from its caller's frame and the
// stackHash of what it wrote, and their number.
//
//go:noinline
func fpHash(skip, max int) (hash uint64, n int) {
	var pcs [maxWalk]uintptr
	n = callers(skip+1, pcs[:max])
	return stackHash(pcs[:n]), n
}

// frame is nil here: the sites' walks start from their own frame and
// drop the allocator's frames by name (Site.Frames).
func frame() unsafe.Pointer { return nil }

// callersAt and hashAt are never called with a nil frame.
func callersAt(fp unsafe.Pointer, pcs []uintptr) int  { panic("hardened: no frame walk here") }
func hashAt(fp unsafe.Pointer, max int) (uint64, int) { panic("hardened: no frame walk here") }
