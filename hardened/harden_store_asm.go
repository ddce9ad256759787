//go:build (hardened || asan) && (amd64 || arm64) && !race

package hardened

// storeRelease publishes a header word with release ordering only: every
// earlier write (a payload fill, a site record) is visible to whoever
// loads the word atomically and sees v. Readers use atomic loads; writers
// that must not lose a race use compare-and-swap instead.
//
//go:noescape
func storeRelease(p *uint64, v uint64)

// storePair is storeRelease(p, v) after a plain store of m in the word
// after p.
//
//go:noescape
func storePair(p *uint64, v, m uint64)

// prefetchSlot4 is prefetch of lines cache lines from p, of rec, and of
// shadow unless it is 0, in one call.
//
//go:noescape
func prefetchSlot4(p uintptr, lines int, rec, shadow uintptr)

// prefetch asks the CPU to bring the cache line at addr closer; it never
// faults, whatever addr is.
//
//go:noescape
func prefetch(addr uintptr)
