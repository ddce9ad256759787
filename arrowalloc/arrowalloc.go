// Package arrowalloc is an Apache Arrow memory.Allocator backed by a
// hardalloc allocator, so that arrow-go's buffers (Retain/Release, 64-byte
// aligned) live off the Go heap where hardalloc checks their lifetimes.
// What is caught depends on the build:
//
//   - every build: a buffer released twice (a double free), a buffer
//     never released (a leak at Close; with its allocating call in
//     hardened builds, by size otherwise), a bad pointer given back;
//
//   - -tags hardened: also a write into a released buffer (its poison is
//     verified at Check, when its memory is handed out again, and at
//     Close) and a write past a buffer's end (its canary), with both
//     sites; a read of a released buffer is not seen (it reads poison);
//
//   - -asan: any read or write of a released buffer or past its end,
//     stopped at the access;
//
//   - Options.SampleRate, in any build: one buffer in SampleRate gets a
//     guarded page, so a read or write after its Release faults (a report
//     with hardened.Monitor).
//
// Use:
//
//	mem, _ := arrowalloc.Open(hardened.Options{})
//	defer mem.Close() // prints every buffer still not released
//	b := array.NewInt64Builder(mem)
//
// Open sets the two options an arrow allocator wants: MinAlign 64, so
// every buffer takes hardalloc's fast paths already aligned, and Wrappers,
// so reports name the arrow code that asked for the buffer rather than
// this package or arrow/memory (see Wrappers). New wraps an allocator the
// caller configured.
//
// arrow's interface has no errors: out of memory, a Limit reached or a
// closed allocator panic, with the request in the message, as arrow's own
// allocators do. Zero-byte requests share one empty buffer that needs no
// Free: arrow drops empty buffers without releasing them, which hardalloc
// would report as leaks of its own zero-size blocks.
//
// The package does not import arrow (the interface is met structurally),
// so arrow's own memory package can use it: scripts/arrow-suites.sh runs
// arrow-go's test suites with their default allocator swapped for this one.
package arrowalloc

import (
	"fmt"
	"unsafe"

	"github.com/hardalloc/hardalloc/hardened"
)

// Alignment is the alignment of every buffer, arrow's.
const Alignment = 64

// Wrappers are the functions between arrow's callers and hardalloc: this
// package's and arrow/memory's (its Buffer, its checked and pooled
// allocators), for hardened.Options.Wrappers.
var Wrappers = []string{
	"github.com/hardalloc/hardalloc/arrowalloc.",
	"github.com/apache/arrow-go/v18/arrow/memory.",
}

// Allocator implements github.com/apache/arrow-go/v18/arrow/memory.Allocator.
type Allocator struct {
	a    *hardened.Allocator
	owns bool
}

// New returns an arrow allocator that takes its memory from a. Give a
// Options.MinAlign of 64 (or more) to keep Allocate on hardalloc's fast
// paths, and Wrappers in Options.Wrappers.
func New(a *hardened.Allocator) *Allocator { return &Allocator{a: a} }

// Open returns an arrow allocator with a hardalloc allocator of its own,
// made with opts plus MinAlign 64 and Wrappers; Close closes it.
func Open(opts hardened.Options) (*Allocator, error) {
	opts.MinAlign = max(opts.MinAlign, Alignment)
	opts.Wrappers = append(opts.Wrappers[:len(opts.Wrappers):len(opts.Wrappers)], Wrappers...)
	a, err := hardened.New(opts)
	if err != nil {
		return nil, err
	}
	return &Allocator{a: a, owns: true}, nil
}

// Hardalloc returns the hardalloc allocator behind x (for Check, Stats,
// CatchFault).
func (x *Allocator) Hardalloc() *hardened.Allocator { return x.a }

// Close closes the hardalloc allocator if Open made it, reporting the
// buffers never freed (hardened.Allocator.Close); otherwise it does
// nothing.
func (x *Allocator) Close() error {
	if !x.owns {
		return nil
	}
	return x.a.Close()
}

var empty [1]byte

// zero is the shared empty buffer: non-nil, never freed.
var zero = empty[:0:0]

func isZero(b []byte) bool { return unsafe.SliceData(b) == unsafe.SliceData(zero) }

// Allocate returns size zeroed bytes, 64-byte aligned.
func (x *Allocator) Allocate(size int) []byte {
	if size == 0 {
		return zero
	}
	b, err := x.a.AllocAligned(size, Alignment)
	if err != nil {
		panic(fmt.Errorf("arrowalloc: Allocate(%d): %w", size, err))
	}
	return b
}

// Reallocate resizes b to size bytes, keeping min(len(b), size) of them and
// the alignment (hardened.Allocator.ReallocAligned: in place where it can,
// and in hardened builds always moved, so a stale slice of the old buffer
// is a use after free hardalloc can see).
func (x *Allocator) Reallocate(size int, b []byte) []byte {
	switch {
	case b == nil || isZero(b):
		return x.Allocate(size)
	case size == 0:
		x.Free(b)
		return zero
	}
	nb, err := x.a.ReallocAligned(b[:cap(b)], size, Alignment)
	if err != nil {
		panic(fmt.Errorf("arrowalloc: Reallocate(%d, %d bytes): %w", size, cap(b), err))
	}
	return nb
}

// Free releases b; the shared empty buffer and nil are ignored.
func (x *Allocator) Free(b []byte) {
	if b == nil || isZero(b) {
		return
	}
	x.a.Free(b[:cap(b)])
}
