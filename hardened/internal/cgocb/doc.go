// Package cgocb runs Go code from a C function whose frame pointer is
// garbage, as a C caller compiled without frame pointers may leave it
// (libFuzzer's harness calls into Go so): the hardened allocator's
// frame-pointer unwinder must stop at the goroutine's stack bounds rather
// than follow it. Its test is that regression test; it needs cgo and
// amd64, and the package is empty elsewhere.
package cgocb
