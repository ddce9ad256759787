//go:build !amd64

package redzone

import "unsafe"

func fillWords(p unsafe.Pointer, n uintptr, w uint64) { panic("unreachable") }

const haveFillWords = false
