//go:build !asan

package hardened_test

const asanBuild = false
