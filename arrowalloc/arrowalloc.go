// Package arrowalloc is an Apache Arrow memory.Allocator backed by a
// hardalloc allocator, so that arrow-go's buffers (Retain/Release, 64-byte
// aligned) live off the Go heap where hardalloc checks their lifetimes:
// a double free, a leak at Close with the allocating call, and, in
// -tags hardened or -asan builds, a use after Release.
//
//	ha, _ := hardened.New(hardened.Options{})
//	defer ha.Close() // prints every buffer still not released
//	mem := arrowalloc.New(ha)
//	b := array.NewInt64Builder(mem)
//
// arrow's interface has no errors: out of memory, a Limit reached or a
// closed allocator panic, with the request in the message, as arrow's own
// allocators do. Zero-byte requests share one empty buffer that needs no
// Free (arrow drops empty buffers freely).
package arrowalloc

import (
	"fmt"
	"unsafe"

	"github.com/hardalloc/hardalloc/hardened"
)

// Alignment is the alignment of every buffer, arrow's.
const Alignment = 64

// Allocator implements github.com/apache/arrow-go/v18/arrow/memory.Allocator.
type Allocator struct {
	a *hardened.Allocator
}

// New returns an arrow allocator that takes its memory from a.
func New(a *hardened.Allocator) *Allocator { return &Allocator{a: a} }

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
// the alignment: shrinking keeps the buffer, growing moves it (hardalloc's
// Realloc does not keep an alignment above 16).
func (x *Allocator) Reallocate(size int, b []byte) []byte {
	switch {
	case isZero(b) || b == nil:
		return x.Allocate(size)
	case size <= cap(b):
		return b[:size]
	}
	nb := x.Allocate(size)
	copy(nb, b)
	x.Free(b)
	return nb
}

// Free releases b; the shared empty buffer and nil are ignored.
func (x *Allocator) Free(b []byte) {
	if b == nil || isZero(b) {
		return
	}
	x.a.Free(b[:cap(b)])
}
