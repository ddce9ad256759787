//go:build !asan

package thread_test

const asanBuild = false
