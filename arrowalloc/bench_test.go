package arrowalloc_test

import (
	"testing"

	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/hardalloc/hardalloc/arrowalloc"
	"github.com/hardalloc/hardalloc/hardened"
)

// BenchmarkBuilder builds and releases a 100k-value Int64 and a 100k-value
// String array per op: arrow's Go allocator against hardalloc's.
func BenchmarkBuilder(b *testing.B) {
	run := func(b *testing.B, mem memory.Allocator) {
		for b.Loop() {
			ib := array.NewInt64Builder(mem)
			sb := array.NewStringBuilder(mem)
			for i := range 100_000 {
				ib.Append(int64(i))
				sb.Append("value")
			}
			ia, sa := ib.NewInt64Array(), sb.NewStringArray()
			ib.Release()
			sb.Release()
			ia.Release()
			sa.Release()
		}
	}
	b.Run("go", func(b *testing.B) { run(b, memory.NewGoAllocator()) })
	b.Run("hardalloc", func(b *testing.B) {
		ha, err := hardened.New(hardened.Options{StackDepth: -1})
		if err != nil {
			b.Fatal(err)
		}
		defer ha.Close()
		run(b, arrowalloc.New(ha))
	})
}
