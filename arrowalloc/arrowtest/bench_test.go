package arrowtest

import (
	"bytes"
	"testing"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/ipc"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/apache/arrow-go/v18/arrow/memory/mallocator"

	"github.com/hardalloc/hardalloc/arrowalloc"
	"github.com/hardalloc/hardalloc/hardened"
)

// peers runs bench against arrow's Go allocator, arrow's cgo Mallocator
// and this adapter (no stacks in hardened builds, as in the anchor
// measurement).
func peers(b *testing.B, bench func(*testing.B, memory.Allocator)) {
	b.Run("go", func(b *testing.B) { bench(b, memory.NewGoAllocator()) })
	b.Run("mallocator", func(b *testing.B) { bench(b, mallocator.NewMallocator()) })
	b.Run("hardalloc", func(b *testing.B) {
		mem, err := arrowalloc.Open(hardened.Options{StackDepth: -1})
		if err != nil {
			b.Fatal(err)
		}
		defer mem.Close()
		bench(b, mem)
	})
}

// BenchmarkBuilder builds and releases a 100k-value Int64 and a 100k-value
// String array per op.
func BenchmarkBuilder(b *testing.B) {
	peers(b, func(b *testing.B, mem memory.Allocator) {
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
	})
}

// BenchmarkIPC writes a 16-batch stream of 4096-row records (an Int64 and
// a String column) and reads it back, per op.
func BenchmarkIPC(b *testing.B) {
	schema := arrow.NewSchema([]arrow.Field{{Name: "n", Type: arrow.PrimitiveTypes.Int64}, {Name: "s", Type: arrow.BinaryTypes.String}}, nil)
	peers(b, func(b *testing.B, mem memory.Allocator) {
		var buf bytes.Buffer
		for b.Loop() {
			buf.Reset()
			w := ipc.NewWriter(&buf, ipc.WithSchema(schema), ipc.WithAllocator(mem))
			rb := array.NewRecordBuilder(mem, schema)
			for batch := range 16 {
				for i := range 4096 {
					rb.Field(0).(*array.Int64Builder).Append(int64(batch*4096 + i))
					rb.Field(1).(*array.StringBuilder).Append("row")
				}
				rec := rb.NewRecordBatch()
				if err := w.Write(rec); err != nil {
					b.Fatal(err)
				}
				rec.Release()
			}
			rb.Release()
			w.Close()
			r, err := ipc.NewReader(&buf, ipc.WithAllocator(mem))
			if err != nil {
				b.Fatal(err)
			}
			for r.Next() {
			}
			r.Release()
		}
	})
}
