package redzone

import (
	"unsafe"

	"golang.org/x/sys/cpu"
)

// verifyClearAVX2 verifies and clears the 32-byte chunks from p (see
// clear_amd64.s); it needs AVX2.
//
//go:noescape
func verifyClearAVX2(p unsafe.Pointer, n uintptr, w uint64) uintptr

var haveVerifyClear = cpu.X86.HasAVX2

func verifyClearChunks(p unsafe.Pointer, n uintptr, w uint64) uintptr {
	return verifyClearAVX2(p, n, w)
}
