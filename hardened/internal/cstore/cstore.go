//go:build asan

// Package cstore is a one-function C library for the -asan catalog: C code
// that keeps a pointer into a hardalloc block and writes through it later,
// the seed's bug in its original language.
package cstore

/*
#cgo CFLAGS: -fsanitize=address
#cgo LDFLAGS: -fsanitize=address

static void cstore_write(char *p, long off, char v) { p[off] = v; }
*/
import "C"

import "unsafe"

// Write stores v at p+off from C.
func Write(p unsafe.Pointer, off int, v byte) {
	C.cstore_write((*C.char)(p), C.long(off), C.char(v))
}
