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

// prefetchSlot4 asks the CPU to bring lines cache lines from p, the line
// at rec and, unless it is 0, the line at shadow closer, in one call; it
// never faults, whatever the addresses are.
//
//go:noescape
func prefetchSlot4(p uintptr, lines int, rec, shadow uintptr)
