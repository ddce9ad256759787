package hardened

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
