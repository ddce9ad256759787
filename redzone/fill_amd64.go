package redzone

import "unsafe"

// fillWords stores w in the n/8 words from p (8-aligned): a string store,
// no reads.
//
//go:noescape
func fillWords(p unsafe.Pointer, n uintptr, w uint64)

const haveFillWords = true
