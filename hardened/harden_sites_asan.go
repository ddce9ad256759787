//go:build asan

package hardened

import "unsafe"

// asan_remote.go reads site records out of a stopped process by this
// layout (siteRecRaw).
var (
	_ [unsafe.Sizeof(siteRec{}) - siteRecRawSize]struct{}
	_ [siteRecRawSize - unsafe.Sizeof(siteRec{})]struct{}
	_ [unsafe.Offsetof(siteRec{}.allocStack) - 32]struct{}
	_ [32 - unsafe.Offsetof(siteRec{}.allocStack)]struct{}
	_ [unsafe.Offsetof(siteRec{}.freeStack) - 36]struct{}
	_ [36 - unsafe.Offsetof(siteRec{}.freeStack)]struct{}
)
