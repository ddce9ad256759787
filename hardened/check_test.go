package hardened_test

import (
	"errors"
	"io"
	"math/rand/v2"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/hardalloc/hardalloc/hardened"
)

func TestCloseReportsLeaks(t *testing.T) {
	c := new(collector)
	a, err := hardened.New(hardened.Options{OnReport: c.add, Seed: 3})
	if err != nil {
		t.Fatal(err)
	}
	x := mustAlloc(t, a, 33)
	y := mustAlloc(t, a, 1<<17)
	z := mustAlloc(t, a, 8)
	a.Free(z)
	err = a.Close()
	if !errors.Is(err, hardened.Leak) {
		t.Fatalf("Close = %v, want leaks", err)
	}
	got := map[int]bool{}
	for _, r := range c.take() {
		if r.Kind != hardened.Leak {
			t.Fatalf("unexpected report %s", r)
		}
		got[r.Size] = true
	}
	if len(got) != 2 || !got[33] || !got[1<<17] {
		t.Fatalf("leak sizes %v, want 33 and 131072", got)
	}
	// Everything after Close is an error, not a crash.
	if _, err := a.Alloc(1); !errors.Is(err, hardened.ErrClosed) {
		t.Fatalf("Alloc after Close: %v", err)
	}
	if _, err := a.Realloc(x, 5); !errors.Is(err, hardened.ErrClosed) {
		t.Fatalf("Realloc after Close: %v", err)
	}
	if err := a.Check(); !errors.Is(err, hardened.ErrClosed) {
		t.Fatalf("Check after Close: %v", err)
	}
	if err := a.Close(); !errors.Is(err, hardened.ErrClosed) {
		t.Fatalf("second Close: %v", err)
	}
	a.Free(y)
	if r := c.take(); len(r) != 1 || r[0].Kind != hardened.UseAfterClose {
		t.Fatalf("Free after Close: %v", r)
	}
}

func TestDefaultHandlerPanicsWithError(t *testing.T) {
	a, err := hardened.New(hardened.Options{ReportOutput: io.Discard}) // what it prints: TestDefaultHandlerPrintsReport
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b := mustAlloc(t, a, 10)
	a.Free(b)
	defer func() {
		e, ok := recover().(*hardened.Error)
		if !ok || e.Report.Kind != hardened.DoubleFree || !errors.Is(e, hardened.DoubleFree) {
			t.Fatalf("recovered %v", e)
		}
	}()
	a.Free(b)
	t.Fatal("double free did not panic")
}

// Check runs concurrently with correct use and must stay silent: it may
// look at a block while its owner frees it, or a slot while it is reused.
func TestCheckConcurrentWithUse(t *testing.T) {
	a, c := newAlloc(t, hardened.Options{QuarantineBytes: 8 << 10})
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(w), 9))
			for {
				select {
				case <-stop:
					return
				default:
				}
				n := rng.IntN(200)
				switch rng.IntN(8) {
				case 0:
					n = []int{70_000, 200_000}[rng.IntN(2)] // a big small block or a large one
				case 1, 2, 3:
					n = 1000 + rng.IntN(3000) // wide canary and poison passes
				}
				b, err := a.Alloc(n)
				if err != nil {
					t.Error(err)
					return
				}
				for i := range b {
					b[i] = byte(i)
				}
				a.Free(b)
			}
		}()
	}
	for a.Stats().Classes[0].Allocs+a.Stats().LiveBlocks == 0 && a.Stats().Requested == 0 {
		runtime.Gosched() // until the workers are running
	}
	for deadline := time.Now().Add(300 * time.Millisecond); time.Now().Before(deadline); {
		if err := a.Check(); err != nil {
			t.Errorf("Check during correct use: %v", err)
			break
		}
	}
	close(stop)
	wg.Wait()
	if r := c.take(); len(r) > 0 {
		t.Fatalf("report during correct use:\n%s", r[0])
	}
}
