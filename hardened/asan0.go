//go:build !asan

package hardened

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

// asanEnabled reports whether the program is built with -asan. This file
// and asan.go are the only two that know the build tag (the runtime's
// asan0.go / asan.go pair): without -asan every shadow function below is
// empty and inlined away, and no cgo is needed.
const asanEnabled = false

func shadowSet(p, n uintptr, v byte)            {}
func shadowLive(p, n uintptr)                   {}
func shadowSlot(s, m, lo, n uintptr)            {}
func shadowDead(p, m uintptr)                   {}
func asanRegister(a *Allocator)                 {}
func asanUnregister(a *Allocator)               {}
func storeHeader(slot unsafe.Pointer, v uint64) { *hdrWord(slot) = v }

// keepClosed keeps nothing: without -asan a closed allocator's memory is
// unmapped (a late access faults; CatchFault and the crash monitor say
// what it was).
func (a *Allocator) keepClosed(mem []byte) bool { return false }

// unmapReservation gives a closed allocator's class reservation back.
func (a *Allocator) unmapReservation() error { return unix.Munmap(a.mem) }

type closedAlloc struct{}

func (a *Allocator) startClosing() {}
