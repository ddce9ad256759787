//go:build asan

package hardened_test

// asanBuild is true under -asan, where AddressSanitizer stops bad
// accesses before any page protection can fault, and the hardening
// layer writes no canaries or poison (the shadow stops those writes at
// the access: TestAccessCatalog), so tests of what the patterns catch
// skip.
const asanBuild = true
