package hardened

import "unsafe"

// fpCallers fills pcs with return addresses from the frame-pointer chain,
// starting with the caller of fpCallers's caller, after skipping skip
// frames. It returns how many it wrote.
//
//go:noescape
func fpCallers(skip int, pcs []uintptr) int

// callers is runtime.Callers(skip+2, pcs) semantics: pcs[0] is the
// caller of callers' caller when skip is 0.
//
//go:noinline
func callers(skip int, pcs []uintptr) int { return fpCallers(skip+1, pcs) }

// fpHash walks as fpCallers(skip, pcs[:max]) does, from its caller's
// frame, and returns n, how many return addresses that would write, and
// their stackHash, storing none of them.
func fpHash(skip, max int) (hash uint64, n int)

// frame returns its caller's frame record: the frame pointer that
// callersAt and hashAt start a walk at, where the first return address is
// into the caller's caller. It is an unsafe.Pointer, not a uintptr, so
// that a stack copy (the goroutine's stack growing in a callee) moves it
// with the frame it points at.
func frame() unsafe.Pointer

// fpCallersAt and fpHashAt are fpCallers and fpHash starting at the frame
// record fp (from frame), skipping nothing.
//
//go:noescape
func fpCallersAt(fp unsafe.Pointer, pcs []uintptr) int

//go:noescape
func fpHashAt(fp unsafe.Pointer, max int) (hash uint64, n int)

// callersAt writes the return addresses of the walk from fp into pcs.
func callersAt(fp unsafe.Pointer, pcs []uintptr) int { return fpCallersAt(fp, pcs) }

// hashAt is fpHashAt: the walk callersAt(fp, pcs[:max]) makes, hashed.
func hashAt(fp unsafe.Pointer, max int) (uint64, int) { return fpHashAt(fp, max) }
