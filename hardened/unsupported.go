//go:build !(linux && (amd64 || arm64))

package hardened

// hardalloc builds only for 64-bit Linux (amd64, arm64): it depends on
// Linux's mmap, mprotect and madvise semantics and on reserving tens of
// GiB of address space. Elsewhere the build stops here, by name:
var _ = hardalloc_supports_only_linux_amd64_and_arm64
