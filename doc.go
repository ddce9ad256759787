// Package hardalloc is a fuzzing-first hardened allocator for Go: off-heap
// memory (mmap) handed out as []byte with explicit Alloc, Realloc and Free,
// cheap always-on integrity checks, and a debug hardening layer built to
// find memory-lifetime bugs. This root package holds only the native fuzz
// targets; the allocator is package hardened, whose documentation
// describes its design (go doc github.com/hardalloc/hardalloc/hardened).
//
// # Threads and fuzzing
//
// Package thread starts goroutines whose launch capsule is allocated from
// the allocator and freed only when both owner and worker are done with
// it: the bug this project was born from (a helper thread's late unlock
// into its freed launch capsule). Package fuzz decodes fuzz inputs into op
// programs checked against a shadow model; the targets in fuzz_test.go run
// it under `go test -fuzz`, with or without -tags hardened and -asan.
package hardalloc
