//go:build (hardened || asan) && (!(amd64 || arm64) || race)

package hardened

import (
	"sync/atomic"
	"unsafe"
)

// storeRelease publishes a header word; see harden_store_asm.go. The race
// detector only understands sync/atomic, so race builds use it too.
func storeRelease(p *uint64, v uint64) { atomic.StoreUint64(p, v) }

func storePair(p *uint64, v, m uint64) {
	atomic.StoreUint64((*uint64)(unsafe.Add(unsafe.Pointer(p), 8)), m)
	atomic.StoreUint64(p, v)
}

func prefetchSlot4(p uintptr, lines int, rec, shadow uintptr) {}
