//go:build faultinject

package thread

import "sync/atomic"

// Fault selects a reintroduced launch-capsule bug (faultinject builds
// only), to prove the hardening layer and the fuzzers catch the bug class
// this project was born from.
type Fault int

const (
	// FaultNone: correct behaviour.
	FaultNone Fault = iota
	// FaultWorkerFrees: the worker frees the capsule when fn returns, while
	// the owner still joins or detaches through it (use after free by the
	// owner).
	FaultWorkerFrees
	// FaultDoubleFree: the worker and the owner both free the capsule.
	FaultDoubleFree
	// FaultLateUnlock: the worker drops the last reference before it
	// releases the capsule's lock: a late write into freed memory (the
	// seed's futex case).
	FaultLateUnlock
	// FaultEarlyRelease: a detached worker lets its allocator's Close
	// proceed as soon as it has unlocked the capsule ("the capsule is
	// all it touches"), before it reports its panic and drops its
	// reference: Close finds the capsule live, and the late drop frees
	// into a closed allocator.
	FaultEarlyRelease
)

const (
	faultWorkerFrees  = FaultWorkerFrees
	faultDoubleFree   = FaultDoubleFree
	faultLateUnlock   = FaultLateUnlock
	faultEarlyRelease = FaultEarlyRelease
)

var current atomic.Int32

// SetFault selects the injected bug for threads that end from now on.
func SetFault(f Fault) { current.Store(int32(f)) }

func inject(f Fault) bool { return Fault(current.Load()) == f }
