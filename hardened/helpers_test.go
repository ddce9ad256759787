package hardened_test

import (
	"errors"
	"sync"
	"testing"
	"unsafe"

	"github.com/hardalloc/hardalloc/hardened"
	"github.com/hardalloc/hardalloc/internal/harness"
)

// collector records reports instead of panicking.
type collector struct {
	mu      sync.Mutex
	reports []*hardened.Report
}

func (c *collector) add(r *hardened.Report) {
	c.mu.Lock()
	c.reports = append(c.reports, r)
	c.mu.Unlock()
}

func (c *collector) take() []*hardened.Report {
	c.mu.Lock()
	defer c.mu.Unlock()
	r := c.reports
	c.reports = nil
	return r
}

// newAlloc returns an allocator whose reports are collected, and at
// cleanup asserts that nothing unexpected was reported and nothing leaked.
func newAlloc(t testing.TB, opts hardened.Options) (*hardened.Allocator, *collector) {
	t.Helper()
	return newAllocWith(t, opts, harness.Extra{})
}

// newAllocWith is newAlloc with the harness's configuration x.
func newAllocWith(t testing.TB, opts hardened.Options, x harness.Extra) (*hardened.Allocator, *collector) {
	t.Helper()
	c := new(collector)
	opts.OnReport = c.add
	if opts.Seed == 0 {
		opts.Seed = 42
	}
	a, err := harness.New(opts, x)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := a.Close(); err != nil && !errors.Is(err, hardened.ErrClosed) { // a test may close it itself
			t.Errorf("Close: %v", err)
		}
		for _, r := range c.take() {
			t.Errorf("unexpected report:\n%s", r)
		}
	})
	return a, c
}

// mustAlloc is a.Alloc(n) for a test: an error fails it at once. Not for
// goroutines other than the test's (see TestQuarantineBudgetConcurrent).
func mustAlloc(t testing.TB, a *hardened.Allocator, n int) []byte {
	t.Helper()
	b, err := a.Alloc(n)
	if err != nil {
		t.Fatalf("Alloc(%d): %v", n, err)
	}
	return b
}

// mustRealloc is a.Realloc(b, n) for a test.
func mustRealloc(t testing.TB, a *hardened.Allocator, b []byte, n int) []byte {
	t.Helper()
	nb, err := a.Realloc(b, n)
	if err != nil {
		t.Fatalf("Realloc(%d bytes, %d): %v", len(b), n, err)
	}
	return nb
}

func addr(b []byte) uintptr { return uintptr(unsafe.Pointer(unsafe.SliceData(b))) }

// raw views n bytes at b's start plus off, ignoring bounds: the tool for
// simulating memory bugs.
func raw(b []byte, off, n int) []byte {
	return unsafe.Slice((*byte)(unsafe.Add(unsafe.Pointer(unsafe.SliceData(b)), off)), n)
}

// flip, poke, peek, pokeBytes and peekBytes simulate a bug's access to
// bytes a program must not touch (headers, redzones, freed memory). They
// are //go:norace (and noinline: inlined, they would take the caller's
// instrumentation) so that an -asan build lets them through to the
// allocator's own detection, which is what these tests check; the
// access-time catalog (asan_test.go) makes the same accesses instrumented.
//
//go:norace
//go:noinline
func flip(b []byte, off int, mask byte) { *at(b, off) ^= mask }

//go:norace
//go:noinline
func pokeBytes(b []byte, off int, v []byte) {
	for i, x := range v {
		*at(b, off+i) = x
	}
}

//go:norace
//go:noinline
func peekBytes(b []byte, off, n int) []byte {
	out := make([]byte, n)
	for i := range out {
		out[i] = *at(b, off+i)
	}
	return out
}

func at(b []byte, off int) *byte {
	return (*byte)(unsafe.Add(unsafe.Pointer(unsafe.SliceData(b)), off))
}

func fill(b []byte, seed byte) {
	for i := range b {
		b[i] = seed + byte(i*7)
	}
}

func verify(t testing.TB, b []byte, seed byte, n int) {
	t.Helper()
	for i := range n {
		if b[i] != seed+byte(i*7) {
			t.Fatalf("byte %d of %d: got %#x want %#x", i, n, b[i], seed+byte(i*7))
		}
	}
}

func isZero(b []byte) bool {
	for _, x := range b {
		if x != 0 {
			return false
		}
	}
	return true
}
