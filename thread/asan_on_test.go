//go:build asan

package thread_test

// asanBuild: instrumented bad accesses abort the test binary (ASan stops
// them first), so tests that make one on purpose skip.
const asanBuild = true
