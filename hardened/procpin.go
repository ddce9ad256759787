package hardened

import (
	_ "unsafe" // for go:linkname
)

// procPin disables preemption and returns the current P's id. While pinned
// the goroutine owns that P's cache outright: no lock, no atomic. It must not
// block, so every path that may sleep (a mutex, a syscall) unpins first.
// runtime.procPin is kept linkable for this use (go.dev/issue/67401).
// Declared in every build: race builds, which lock their caches instead
// (pin_race.go), compile the release fast paths' calls and never run them.
//
//go:linkname procPin runtime.procPin
func procPin() int

//go:linkname procUnpin runtime.procUnpin
func procUnpin()

// releaseFast says Alloc and Free take their release fast paths: no
// hardening layer (and so no -asan), caches pinned rather than locked, no
// fault injection (whose hooks and seeded bugs live on the general fast
// path, which the release fast paths only shortcut).
const releaseFast = !hardening && !lockedCaches && !injecting
