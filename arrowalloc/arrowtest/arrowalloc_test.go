package arrowtest

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"unsafe"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/ipc"
	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/hardalloc/hardalloc/arrowalloc"
	"github.com/hardalloc/hardalloc/hardened"
)

var _ memory.Allocator = (*arrowalloc.Allocator)(nil)

func newMem(t testing.TB) (*arrowalloc.Allocator, *hardened.Allocator, *[]*hardened.Report) {
	t.Helper()
	var reports []*hardened.Report
	mem, err := arrowalloc.Open(hardened.Options{Seed: 1, OnReport: func(r *hardened.Report) { reports = append(reports, r) }})
	if err != nil {
		t.Fatal(err)
	}
	return mem, mem.Hardalloc(), &reports
}

// Arrays built, written to IPC and read back, all released: Close finds
// no leak and nothing is reported.
func TestBuildersAndIPC(t *testing.T) {
	mem, ha, reports := newMem(t)
	schema := arrow.NewSchema([]arrow.Field{{Name: "n", Type: arrow.PrimitiveTypes.Int64}, {Name: "s", Type: arrow.BinaryTypes.String}}, nil)
	b := array.NewRecordBuilder(mem, schema)
	for i := range 10000 {
		b.Field(0).(*array.Int64Builder).Append(int64(i))
		b.Field(1).(*array.StringBuilder).Append(strings.Repeat("x", i%17))
	}
	rec := b.NewRecordBatch()
	b.Release()
	var buf bytes.Buffer
	w := ipc.NewWriter(&buf, ipc.WithSchema(schema), ipc.WithAllocator(mem))
	if err := w.Write(rec); err != nil {
		t.Fatal(err)
	}
	w.Close()
	rec.Release()
	r, err := ipc.NewReader(&buf, ipc.WithAllocator(mem))
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for r.Next() {
		col := r.RecordBatch().Column(0).(*array.Int64)
		for i := range col.Len() {
			if col.Value(i) != int64(n) {
				t.Fatalf("row %d: %d", n, col.Value(i))
			}
			n++
		}
	}
	r.Release()
	if n != 10000 {
		t.Fatalf("read %d rows", n)
	}
	if err := ha.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	for _, r := range *reports {
		t.Errorf("report:\n%s", r)
	}
}

// Reallocate keeps arrow's 64-byte alignment and the contents, growing
// and shrinking; zero-byte buffers need no Free.
func TestReallocateAlignment(t *testing.T) {
	mem, ha, reports := newMem(t)
	b := mem.Allocate(0)
	if b == nil || len(b) != 0 {
		t.Fatalf("Allocate(0) = %v", b)
	}
	for _, n := range []int{1, 63, 64, 100, 4096, 70000, 10, 200000, 3} {
		b = mem.Reallocate(n, b)
		if len(b) != n || uintptr(unsafe.Pointer(unsafe.SliceData(b)))%arrowalloc.Alignment != 0 {
			t.Fatalf("Reallocate(%d): len %d at %p", n, len(b), unsafe.SliceData(b))
		}
		for i := range b {
			b[i] = byte(i)
		}
	}
	mem.Free(b)
	mem.Free(mem.Allocate(0)) // ignored
	if err := ha.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if len(*reports) != 0 {
		t.Fatalf("reports: %v", *reports)
	}
}

// A buffer never released is a leak at Close, named by its site; a
// buffer freed twice is a double free; out of memory panics with the
// request.
func TestMisuseIsReported(t *testing.T) {
	mem, ha, reports := newMem(t)
	bld := array.NewInt64Builder(mem)
	bld.Append(7)
	leaked := bld.NewInt64Array() // never released
	_ = leaked
	bld.Release()
	b := mem.Allocate(128)
	mem.Free(b)
	mem.Free(b)
	if len(*reports) != 1 || (*reports)[0].Kind != hardened.DoubleFree {
		t.Fatalf("double free: reports %v", *reports)
	}
	err := ha.Close()
	if !errors.Is(err, hardened.Leak) {
		t.Fatalf("Close: %v, want a leak", err)
	}
	// The site starts at arrow's builder, past arrowalloc's and
	// arrow/memory's frames (Wrappers), in the summary too.
	if leak := (*reports)[len(*reports)-1]; hardened.Enabled &&
		!strings.Contains(leak.Summary(), "allocated in github.com/apache/arrow-go/v18/arrow/array.") {
		t.Errorf("the leak's summary does not name the builder that allocated it: %s\n%s", leak.Summary(), leak)
	}

	small, err := hardened.New(hardened.Options{Limit: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	defer small.Close()
	defer func() {
		v := recover()
		if e, ok := v.(error); !ok || !errors.Is(e, hardened.ErrOutOfMemory) || !strings.Contains(e.Error(), "Allocate(4194304)") {
			t.Fatalf("over the Limit: panic %v, want an out-of-memory error naming the request", v)
		}
	}()
	arrowalloc.New(small).Allocate(4 << 20)
}
