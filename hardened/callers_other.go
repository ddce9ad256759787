//go:build !amd64

package hardened

import "runtime"

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
