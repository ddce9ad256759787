package bench

import (
	"fmt"
	"sync"
	"testing"

	"modernc.org/memory"

	"github.com/hardalloc/hardalloc/hardened"
)

var sizes = []int{16, 64, 256, 4096, 65536}

var sink []byte

// BenchmarkPair is one allocate+free pair per op, one goroutine.
func BenchmarkPair(b *testing.B) {
	for _, n := range sizes {
		b.Run(fmt.Sprintf("hardalloc/%d", n), func(b *testing.B) {
			hardallocPair(b, hardened.Options{StackDepth: -1}, n)
		})
		b.Run(fmt.Sprintf("hardalloc-stacks/%d", n), func(b *testing.B) {
			hardallocPair(b, hardened.Options{}, n) // default: 16 frames in hardened builds
		})
		b.Run(fmt.Sprintf("hardalloc-protect/%d", n), func(b *testing.B) {
			// hardened builds: metadata read-only outside allocator calls
			hardallocPair(b, hardened.Options{StackDepth: -1, ProtectMetadata: true}, n)
		})
		b.Run(fmt.Sprintf("gomake/%d", n), func(b *testing.B) {
			for b.Loop() {
				sink = make([]byte, n) // GC cost is paid in the loop
			}
		})
		b.Run(fmt.Sprintf("syncpool/%d", n), func(b *testing.B) {
			pool := sync.Pool{New: func() any { s := make([]byte, n); return &s }}
			for b.Loop() {
				p := pool.Get().(*[]byte)
				clear(*p)
				pool.Put(p)
			}
		})
		b.Run(fmt.Sprintf("modernc/%d", n), func(b *testing.B) {
			var m memory.Allocator
			defer m.Close()
			for b.Loop() {
				p, _ := m.Calloc(n)
				m.Free(p)
			}
		})
		b.Run(fmt.Sprintf("cmalloc/%d", n), func(b *testing.B) {
			for b.Loop() {
				cFree(cMalloc(n))
			}
		})
	}
}

func hardallocPair(b *testing.B, opts hardened.Options, n int) {
	opts.Seed = 1
	a, err := hardened.New(opts)
	if err != nil {
		b.Fatal(err)
	}
	defer a.Close()
	for b.Loop() {
		p, _ := a.Alloc(n)
		a.Free(p)
	}
}

// BenchmarkPairParallel is the same from GOMAXPROCS goroutines.
func BenchmarkPairParallel(b *testing.B) {
	for _, n := range []int{64, 256} {
		b.Run(fmt.Sprintf("hardalloc/%d", n), func(b *testing.B) {
			a, _ := hardened.New(hardened.Options{Seed: 1, StackDepth: -1})
			defer a.Close()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					p, _ := a.Alloc(n)
					a.Free(p)
				}
			})
		})
		b.Run(fmt.Sprintf("cmalloc/%d", n), func(b *testing.B) {
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					cFree(cMalloc(n))
				}
			})
		})
	}
}
