//go:build !asan

package thread

import "unsafe"

// asanTouch: see asan.go; nothing without -asan.
func asanTouch(p unsafe.Pointer, n int) {}
