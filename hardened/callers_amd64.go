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

// fpHash walks as fpCallers(skip, pcs[:max]) does, from its caller's
// frame, and returns n, how many return addresses that would write, and
// their stackHash, storing none of them.
func fpHash(skip, max int) (hash uint64, n int)
