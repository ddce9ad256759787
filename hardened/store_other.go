//go:build !(amd64 || arm64) || race

package hardened

import "sync/atomic"

// storeRelease publishes a header word; see store_asm.go. The race
// detector only understands sync/atomic, so race builds use it too.
//
//lint:ignore U1000 used by the hardening layer (harden*.go, -tags hardened)
func storeRelease(p *uint64, v uint64) { atomic.StoreUint64(p, v) }

//lint:ignore U1000 used by the hardening layer (harden*.go, -tags hardened)
func prefetch(addr uintptr) {}
