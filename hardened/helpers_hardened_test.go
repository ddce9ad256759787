//go:build hardened || asan

package hardened_test

// poke and peek: see flip (helpers_test.go).
//
//go:norace
//go:noinline
func poke(b []byte, off int, v byte) { *at(b, off) = v }

//go:norace
//go:noinline
func peek(b []byte, off int) byte { return *at(b, off) }

// count is how many reports wait to be taken.
func (c *collector) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.reports)
}
