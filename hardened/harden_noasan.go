//go:build hardened && !asan

package hardened

// shadowLine is 0: no shadow to request without -asan (asan.go).
func shadowLine(p uintptr) uintptr { return 0 }
