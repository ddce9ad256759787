//go:build asan

package hardened_test

// asanBuild is true under -asan, where AddressSanitizer stops bad
// accesses before any page protection can fault.
const asanBuild = true
