//go:build !faultinject

package thread

type fault int

const (
	faultWorkerFrees fault = iota + 1
	faultDoubleFree
	faultLateUnlock
	faultEarlyRelease
)

// inject is false in every normal build: the seeded bugs compile away.
func inject(fault) bool { return false }
