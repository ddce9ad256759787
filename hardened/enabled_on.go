//go:build hardened || asan

package hardened

// Enabled reports whether the hardening layer is compiled in: with -tags
// hardened, and in every -asan build (which records sites like ASan).
// The package itself never branches on it: its code reaches the layer
// through the methods harden*.go define and harden0.go stubs (see
// lifecycle.go). Enabled is for code outside that must know what to
// expect, such as tests and the fuzz layer's model.
const Enabled = true
