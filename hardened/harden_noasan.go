//go:build hardened && !asan

package hardened

// prefetchShadow has no shadow to request without -asan (asan.go).
func prefetchShadow(p uintptr) {}
