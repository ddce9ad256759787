//go:build amd64 || arm64

package hardened

import "unsafe"

// getg returns the current goroutine's runtime g pointer.
func getg() unsafe.Pointer

const haveGetg = true
