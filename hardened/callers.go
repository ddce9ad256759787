package hardened

import "math/bits"

const (
	stackSlop   = 6 // frames inside this package above the caller
	wrapperSlop = 8 // more, for Options.Wrappers' frames

	// maxWalk is the most frames a site's stack walk takes: the deepest
	// Options.StackDepth and both slops.
	maxWalk = 64 + stackSlop + wrapperSlop
)

// stackHash is the hash hashAt computes over the frames it walks: a
// rotate-xor-multiply chain over the return addresses, then their number.
func stackHash(pcs []uintptr) uint64 {
	var h uint64
	for _, pc := range pcs {
		h = bits.RotateLeft64(h^uint64(pc), 27) * 0x9e3779b97f4a7c15
	}
	return bits.RotateLeft64(h^uint64(len(pcs)), 27) * 0x9e3779b97f4a7c15
}
