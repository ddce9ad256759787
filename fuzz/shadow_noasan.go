//go:build !asan

package fuzz

// Without -asan there is no shadow to check (shadow_asan.go).

func (r *runner) checkShadow(int) error        { return nil }
func (r *runner) sweepShadow(int, bool) error  { return nil }
func (r *runner) checkFreed(int, []byte) error { return nil }

// asanBuild says the program is built with -asan.
const asanBuild = false
