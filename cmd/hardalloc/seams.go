package main

// The seams an overlay can route through hardalloc: a dependency's file
// that hands out manual memory, replaced by one that takes it from
// hardtest.Default, keeping the seam's own contract.

type seam struct {
	name   string
	module string // the dependency's module path
	doc    string
	files  []seamFile
}

type seamFile struct {
	path string // in the module
	body string // the replacement
}

var seams = []seam{
	{
		name:   "ristretto",
		module: "github.com/dgraph-io/ristretto/v2",
		doc:    "ristretto's z.Calloc, z.CallocNoRef and z.Free (and so badger, which allocates through z)",
		files:  []seamFile{{path: "z/calloc_nojemalloc.go", body: zCalloc}},
	},
	{
		name:   "arrow",
		module: "github.com/apache/arrow-go/v18",
		doc:    "arrow-go's Go allocator (memory.NewGoAllocator, memory.DefaultAllocator and what CheckedAllocator wraps in arrow's tests)",
		files:  []seamFile{{path: "arrow/memory/go_allocator.go", body: arrowGo}},
	},
	{
		name:   "pebble",
		module: "github.com/cockroachdb/pebble/v2",
		doc:    "pebble's internal/manual (the block cache's C.calloc and C.free)",
		files: []seamFile{
			{path: "internal/manual/manual_cgo.go", body: "//go:build cgo\n\n" + pebbleManual},
			{path: "internal/manual/manual_nocgo.go", body: "//go:build !cgo\n\n" + pebbleManual},
		},
	},
}

const zCalloc = `//go:build !jemalloc || !cgo

// Package z's manual memory, routed through hardalloc by cmd/hardalloc's
// overlay: every Calloc is a block of hardtest.Default, every Free frees
// it, so a double free, a bad pointer, a leak (at the end of the test
// binary, under hardtest.Main) and, with -tags hardened or -asan, a use
// after free are reported with their sites. NumAllocBytes counts as
// jemalloc's build does.
package z

import (
	"fmt"
	"sync/atomic"

	"github.com/hardalloc/hardalloc/hardtest"
)

// Calloc allocates a zeroed slice of size n that must be freed with Free.
func Calloc(n int, tag string) []byte {
	if n == 0 {
		return make([]byte, 0) // jemalloc's build: a 0-byte slice needs no Free
	}
	b, err := hardtest.Default().Alloc(n)
	if err != nil {
		panic(fmt.Sprintf("z.Calloc(%d, %q): %v", n, tag, err))
	}
	atomic.AddInt64(&numBytes, int64(n))
	return b
}

// CallocNoRef is Calloc, as in jemalloc's build.
func CallocNoRef(n int, tag string) []byte { return Calloc(n, tag) }

// Free frees b (all of its capacity), as jemalloc's build does.
func Free(b []byte) {
	if sz := cap(b); sz != 0 {
		atomic.AddInt64(&numBytes, -int64(sz))
		hardtest.Default().Free(b[:sz])
	}
}

// Leaks says what is still allocated.
func Leaks() string {
	st := hardtest.Default().Stats()
	if st.LiveBlocks == 0 {
		return "NO leaks found."
	}
	return fmt.Sprintf("hardalloc: %d blocks (%d bytes) still allocated; hardtest.Main lists them with their sites at exit", st.LiveBlocks, st.Requested)
}

// StatsPrint prints the allocator's counters.
func StatsPrint() {
	st := hardtest.Default().Stats()
	fmt.Printf("hardalloc: %d live blocks, %d bytes requested, %d bytes mapped\n", st.LiveBlocks, st.Requested, st.Mapped)
}

// ReadMemStats fills s from the allocator's counters.
func ReadMemStats(s *MemStats) {
	if s == nil {
		return
	}
	st := hardtest.Default().Stats()
	s.Allocated = uint64(st.Requested)
	s.Active = uint64(st.Mapped)
	s.Resident = uint64(st.Mapped)
	s.Retained = 0
}
`

const arrowGo = `// Package memory's GoAllocator, routed through hardalloc by
// cmd/hardalloc's overlay: every buffer is a 64-byte aligned block of
// hardtest.Default (arrowalloc), so a double Release, a buffer never
// released (under hardtest.Main) and, with -tags hardened or -asan, a
// use after Release are reported with their sites.
package memory

import (
	"github.com/hardalloc/hardalloc/arrowalloc"
	"github.com/hardalloc/hardalloc/hardtest"
)

// GoAllocator allocates from hardalloc.
type GoAllocator struct{}

// NewGoAllocator returns an allocator backed by hardtest.Default.
func NewGoAllocator() *GoAllocator { return &GoAllocator{} }

func (a *GoAllocator) Allocate(size int) []byte {
	return arrowalloc.New(hardtest.Default()).Allocate(size)
}

func (a *GoAllocator) Reallocate(size int, b []byte) []byte {
	return arrowalloc.New(hardtest.Default()).Reallocate(size, b)
}

func (a *GoAllocator) Free(b []byte) { arrowalloc.New(hardtest.Default()).Free(b) }

var (
	_ Allocator = (*GoAllocator)(nil)
)
`

const pebbleManual = `// Package manual's allocations, routed through hardalloc by
// cmd/hardalloc's overlay: every Buf is a block of hardtest.Default, so
// a double free, a bad Buf, a leak (under hardtest.Main, after the
// finalizers that free cache entries have run) and, with -tags hardened
// or -asan, a use after free are reported with their sites. The
// per-purpose metrics are kept as pebble keeps them.
package manual

import (
	"fmt"
	"unsafe"

	"github.com/hardalloc/hardalloc/hardtest"
)

// New allocates n zeroed bytes for purpose; they must be freed with Free.
func New(purpose Purpose, n uintptr) Buf {
	if n == 0 {
		return Buf{}
	}
	recordAlloc(purpose, n)
	b, err := hardtest.Default().Alloc(int(n))
	if err != nil {
		panic(fmt.Sprintf("manual.New(%d, %d): %v", purpose, n, err))
	}
	return Buf{data: unsafe.Pointer(unsafe.SliceData(b)), n: n}
}

// Free frees a Buf New returned.
func Free(purpose Purpose, b Buf) {
	if b.n != 0 {
		recordFree(purpose, b.n)
		hardtest.Default().Free(unsafe.Slice((*byte)(b.data), b.n))
	}
}
`
