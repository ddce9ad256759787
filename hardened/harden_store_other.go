//go:build (hardened || asan) && (!(amd64 || arm64) || race)

package hardened

import "sync/atomic"

// storeRelease publishes a header word; see harden_store_asm.go. The race
// detector only understands sync/atomic, so race builds use it too.
func storeRelease(p *uint64, v uint64) { atomic.StoreUint64(p, v) }

func prefetch(addr uintptr) {}
