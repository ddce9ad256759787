package bench

import (
	"math/rand/v2"
	"runtime"
	"testing"

	"github.com/hardalloc/hardalloc/hardened"
)

// The mixed workload of hardened's BenchmarkMixed: 4096 live blocks of
// log-uniform sizes (16 B to 60 KiB), one replaced at random per op.
func mixedSize(rng *rand.Rand) int { return 16 << rng.IntN(12) * (8 + rng.IntN(8)) / 8 }

func BenchmarkMixed(b *testing.B) {
	b.Run("hardalloc", func(b *testing.B) {
		a, _ := hardened.New(hardened.Options{Seed: 1, StackDepth: -1})
		defer a.Close()
		rng := rand.New(rand.NewPCG(1, 2))
		set := make([][]byte, 4096)
		for i := range set {
			set[i], _ = a.Alloc(mixedSize(rng))
		}
		for b.Loop() {
			i := rng.IntN(len(set))
			a.Free(set[i])
			set[i], _ = a.Alloc(mixedSize(rng))
		}
		s := a.Stats()
		b.ReportMetric(float64(s.Mapped)/float64(s.Requested), "mapped/live")
	})
	b.Run("gomake", func(b *testing.B) {
		rng := rand.New(rand.NewPCG(1, 2))
		set := make([][]byte, 4096)
		for i := range set {
			set[i] = make([]byte, mixedSize(rng))
		}
		for b.Loop() {
			set[rng.IntN(len(set))] = make([]byte, mixedSize(rng))
		}
		runtime.GC()
		var live int
		for _, s := range set {
			live += len(s)
		}
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		b.ReportMetric(float64(ms.HeapInuse)/float64(live), "mapped/live")
		b.ReportMetric(float64(ms.HeapSys-ms.HeapReleased)/float64(live), "resident/live")
	})
}
