package hardened_test

import (
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"sync/atomic"
	"testing"
	"unsafe"

	"github.com/hardalloc/hardalloc/hardened"
	"github.com/hardalloc/hardalloc/redzone"
)

var benchSizes = []int{16, 64, 256, 4096, 65536}

func newBench(b *testing.B) *hardened.Allocator {
	b.Helper()
	a, err := hardened.New(hardened.Options{Seed: 1, StackDepth: benchStackDepth, SampleRate: benchSampleRate})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { a.Close() })
	return a
}

// benchStackDepth is the benchmarks' Options.StackDepth: -1, no stacks
// (goroutine and sequence number only), unless the HARDALLOC_BENCH_STACKS
// environment variable gives another (0: the default 16 frames).
var benchStackDepth = func() int {
	if d, err := strconv.Atoi(os.Getenv("HARDALLOC_BENCH_STACKS")); err == nil {
		return d
	}
	return -1
}()

// benchSampleRate is the benchmarks' Options.SampleRate: 0 (off) unless
// the HARDALLOC_BENCH_SAMPLE environment variable gives one.
var benchSampleRate, _ = strconv.Atoi(os.Getenv("HARDALLOC_BENCH_SAMPLE"))

// The benchmarks loop over b.N, not b.Loop: under -asan, a b.Loop body's
// locals are moved to the heap (its keep-alive), which put two Go heap
// objects (the slice and the error) into every hardalloc pair and none
// into BenchmarkGoMake's.

// BenchmarkAllocFree measures one Alloc+Free pair per op.
func BenchmarkAllocFree(b *testing.B) {
	for _, n := range benchSizes {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			a := newBench(b)
			b.SetBytes(int64(n))
			for range b.N {
				p, err := a.Alloc(n)
				if err != nil {
					b.Fatal(err)
				}
				a.Free(p)
			}
		})
	}
}

// BenchmarkAllocFreeParallel is the same pair from GOMAXPROCS goroutines.
func BenchmarkAllocFreeParallel(b *testing.B) {
	for _, n := range benchSizes {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			a := newBench(b)
			b.SetBytes(int64(n))
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					p, err := a.Alloc(n)
					if err != nil {
						b.Error(err)
						return
					}
					a.Free(p)
				}
			})
		})
	}
}

// BenchmarkMixed keeps a live set of 4096 blocks of random sizes
// (log-uniform, 16 B to 32 KiB) and replaces one at random per op. It
// reports mapped/live, the memory overhead of the allocator.
func BenchmarkMixed(b *testing.B) {
	a := newBench(b)
	const live = 4096
	rng := rand.New(rand.NewPCG(1, 2))
	size := func() int { return 16 << rng.IntN(12) * (8 + rng.IntN(8)) / 8 }
	set := make([][]byte, live)
	for i := range set {
		set[i], _ = a.Alloc(size())
	}
	for range b.N {
		i := rng.IntN(live)
		a.Free(set[i])
		p, err := a.Alloc(size())
		if err != nil {
			b.Fatal(err)
		}
		set[i] = p
	}
	st := a.Stats()
	b.ReportMetric(float64(st.Mapped)/float64(st.Requested), "mapped/live")
	for _, p := range set {
		a.Free(p)
	}
}

// BenchmarkQuarantineSize is the 64-byte pair for several quarantine
// budgets: in hardened builds each free evicts a block freed budget/80
// frees earlier, whose poison is verified in memory long gone from cache.
func BenchmarkQuarantineSize(b *testing.B) {
	for _, q := range []int64{-1, 64 << 10, 256 << 10, 1 << 20, 4 << 20} {
		b.Run(fmt.Sprint(q), func(b *testing.B) {
			a, err := hardened.New(hardened.Options{Seed: 1, StackDepth: -1, QuarantineBytes: q})
			if err != nil {
				b.Fatal(err)
			}
			defer a.Close()
			for range b.N {
				p, _ := a.Alloc(64)
				a.Free(p)
			}
		})
	}
}

// BenchmarkLargeAllocFree is a 256 KiB Alloc+Free pair with the large-block
// cache on (the default) and off, writing every page as a user would: a
// fresh mapping costs mmap, guard installs, munmap and a page fault per
// page touched.
func BenchmarkLargeAllocFree(b *testing.B) {
	for _, cache := range []int64{0, -1} {
		name := map[int64]string{0: "cache", -1: "nocache"}[cache]
		b.Run(name, func(b *testing.B) {
			a, err := hardened.New(hardened.Options{Seed: 1, StackDepth: benchStackDepth, LargeCacheBytes: cache})
			if err != nil {
				b.Fatal(err)
			}
			defer a.Close()
			b.SetBytes(256 << 10)
			for range b.N {
				p, err := a.Alloc(256 << 10)
				if err != nil {
					b.Fatal(err)
				}
				for i := 0; i < len(p); i += 4096 {
					p[i] = 1 // the user writes every page
				}
				a.Free(p)
			}
		})
	}
}

var benchSink []byte

// BenchmarkGoMake is Go's own heap on the same workload as
// BenchmarkAllocFree (make, dropped at once), the peer hardalloc's cost
// is read against in the same binary and build (-asan included).
func BenchmarkGoMake(b *testing.B) {
	for _, n := range benchSizes {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			b.SetBytes(int64(n))
			for range b.N {
				benchSink = make([]byte, n)
			}
		})
	}
}

// BenchmarkComputeParallel is the scaling reference for
// BenchmarkAllocFreeParallel: a loop that touches no shared memory, run
// the same way (-cpu 1,2 shows what two goroutines can gain here).
func BenchmarkComputeParallel(b *testing.B) {
	b.RunParallel(func(pb *testing.PB) {
		x := uint64(1)
		for pb.Next() {
			for range 8 {
				x = x*6364136223846793005 + 1442695040888963407
			}
		}
		computeSink.Add(x)
	})
}

var computeSink atomic.Uint64

// BenchmarkClearParallel is the scaling reference for the largest sizes
// of BenchmarkAllocFreeParallel, whose pair is mostly the zeroing of the
// payload: each goroutine clears its own 64 KiB buffer, and nothing else.
func BenchmarkClearParallel(b *testing.B) {
	b.SetBytes(64 << 10)
	b.RunParallel(func(pb *testing.PB) {
		buf := make([]byte, 64<<10)
		for pb.Next() {
			clearBuf(buf)
		}
		computeSink.Add(uint64(buf[len(buf)-1]))
	})
}

// BenchmarkPoisonStreamParallel is the scaling reference for the
// hardened 64 KiB pair, whose memory traffic is not a clear of one warm
// buffer: its Alloc verifies and zeroes a slot freed a quarantine ago
// (4 MiB of frees, gone from the core's own caches), and its Free poisons
// the slot. Each goroutine does the same to its own 4 MiB, 64 KiB at a
// time in turn, with the allocator's pattern code and nothing else.
func BenchmarkPoisonStreamParallel(b *testing.B) {
	const chunk, chunks = 64 << 10, 64
	const w = 0xa5c3e1f70b2d4968
	b.SetBytes(chunk)
	b.RunParallel(func(pb *testing.PB) {
		buf := make([]byte, chunk*chunks)
		base := uintptr(unsafe.Pointer(unsafe.SliceData(buf)))
		for k := range chunks {
			redzone.Fill(buf[k*chunk:(k+1)*chunk], base+uintptr(k*chunk), w)
		}
		k := 0
		for pb.Next() {
			c := buf[k*chunk : (k+1)*chunk]
			at := base + uintptr(k*chunk)
			if redzone.Verify(c, at, w) >= 0 {
				panic("poison changed")
			}
			clearBuf(c)
			redzone.Fill(c, at, w)
			k = (k + 1) % chunks
		}
	})
}

// clearBuf is not inlined, so the compiler cannot drop a clear of a
// buffer nothing reads between two clears.
//
//go:noinline
func clearBuf(b []byte) { clear(b) }
