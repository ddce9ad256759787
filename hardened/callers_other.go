//go:build !amd64

package hardened

import "runtime"

//go:noinline
func callers(skip int, pcs []uintptr) int { return runtime.Callers(skip+3, pcs) }
