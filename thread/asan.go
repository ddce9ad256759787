//go:build asan

package thread

import (
	"runtime"
	"unsafe"
)

// asanTouch tells AddressSanitizer about an atomic access to the capsule:
// Go's -asan instrumentation does not see sync/atomic, and the capsule's
// lock word is exactly where the seed's late unlock wrote into freed
// memory. Under -asan that write is reported at the access.
func asanTouch(p unsafe.Pointer, n int) { runtime.ASanWrite(p, n) }
