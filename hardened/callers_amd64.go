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

// frame returns its caller's frame record: the frame pointer that
// callersAt and hashAt start a walk at, where the first return address is
// into the caller's caller. It is an unsafe.Pointer, not a uintptr, so
// that a stack copy (the goroutine's stack growing in a callee) moves it
// with the frame it points at.
func frame() unsafe.Pointer

// callersAt writes the return addresses of the frame-pointer chain from
// the frame record fp (from frame) into pcs and returns how many it
// wrote.
//
//go:noescape
func callersAt(fp unsafe.Pointer, pcs []uintptr) int

// hashAt walks as callersAt(fp, pcs[:max]) does and returns n, how many
// return addresses that would write, and their stackHash, storing none
// of them.
//
//go:noescape
func hashAt(fp unsafe.Pointer, max int) (hash uint64, n int)
