package hardened

import (
	"sync/atomic"
	"testing"
	"unsafe"
)

func BenchmarkMicroPin(b *testing.B) {
	a, _ := New(Options{Seed: 1})
	defer a.Close()
	for b.Loop() {
		a.unpin(a.pin())
	}
}

func BenchmarkMicroCAS(b *testing.B) {
	var x uint64
	for i := 0; b.Loop(); i++ {
		atomic.CompareAndSwapUint64(&x, uint64(i), uint64(i+1))
	}
}

func BenchmarkMicroChecksum(b *testing.B) {
	a, _ := New(Options{Seed: 1})
	defer a.Close()
	var s uint64
	p := unsafe.Pointer(&s)
	for i := 0; b.Loop(); i++ {
		s += a.checksum(p, uint64(i))
	}
}

func BenchmarkMicroClear64(b *testing.B) {
	buf := make([]byte, 64)
	for b.Loop() {
		clear(buf)
	}
}
