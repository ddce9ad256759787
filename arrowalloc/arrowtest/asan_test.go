//go:build asan

package arrowtest

import (
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/apache/arrow-go/v18/arrow/array"

	"github.com/hardalloc/hardalloc/arrowalloc"
	"github.com/hardalloc/hardalloc/hardened"
)

//go:noinline
func valueAfterRelease(mem *arrowalloc.Allocator) int64 {
	b := array.NewInt64Builder(mem)
	for i := range 100 {
		b.Append(int64(i))
	}
	arr := b.NewInt64Array()
	b.Release()
	arr.Release()        // the buffers go back to hardalloc...
	return arr.Value(42) // ...and this read is the bug Go's GC would hide
}

// A read of an arrow array after its Release, the bug class hardalloc
// found in arrow-go's own tests: under -asan it is stopped at the read,
// and hardalloc names the buffer's allocation (and, hardened, its free).
func TestAsanUseAfterRelease(t *testing.T) {
	if os.Getenv("ARROWALLOC_ASAN_CHILD") != "" {
		mem, err := arrowalloc.Open(hardened.Options{})
		if err != nil {
			t.Fatal(err)
		}
		valueAfterRelease(mem)
		t.Fatal("the read after Release went on")
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestAsanUseAfterRelease$")
	cmd.Env = append(os.Environ(), "ARROWALLOC_ASAN_CHILD=1", "GOMAXPROCS=2")
	out, _ := cmd.CombinedOutput()
	text := string(out)
	want := []string{"ERROR: AddressSanitizer: heap-use-after-free", "READ of size 8",
		"==hardalloc== the address above is in hardalloc memory", "valueAfterRelease",
		// Sites start at arrow's code (Wrappers): the summary names the
		// builder that allocated the buffer, not the adapter.
		"freed by goroutine", "allocated by goroutine",
		"SUMMARY: hardalloc: heap-use-after-free of block allocated in github.com/apache/arrow-go/v18/arrow/array."}
	for _, w := range want {
		if !strings.Contains(text, w) {
			t.Errorf("output lacks %q", w)
		}
	}
	if t.Failed() {
		t.Logf("child output:\n%s", text)
	}
}
