package thread_test

import (
	"errors"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hardalloc/hardalloc/hardened"
	"github.com/hardalloc/hardalloc/thread"
)

type reports struct {
	mu sync.Mutex
	r  []*hardened.Report
}

func (c *reports) add(r *hardened.Report) { c.mu.Lock(); c.r = append(c.r, r); c.mu.Unlock() }
func (c *reports) take() []*hardened.Report {
	c.mu.Lock()
	defer c.mu.Unlock()
	r := c.r
	c.r = nil
	return r
}

func newAlloc(t *testing.T, opts hardened.Options) (*hardened.Allocator, *reports) {
	t.Helper()
	c := new(reports)
	opts.OnReport = c.add
	opts.Seed = 77
	a, err := hardened.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	return a, c
}

// closeClean closes a and requires no report and no leak.
func closeClean(t *testing.T, a *hardened.Allocator, c *reports) {
	t.Helper()
	if err := a.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	for _, r := range c.take() {
		t.Errorf("report:\n%s", r)
	}
}

var errBoom = errors.New("boom")

func TestJoinReturnsResult(t *testing.T) {
	a, c := newAlloc(t, hardened.Options{})
	th, err := thread.Start(a, func() error { return errBoom }, thread.Name("result"))
	if err != nil {
		t.Fatal(err)
	}
	if err := th.Join(); !errors.Is(err, errBoom) {
		t.Fatalf("Join = %v", err)
	}
	th, _ = thread.Start(a, func() error { return nil }, thread.LockOSThread())
	if err := th.Join(); err != nil {
		t.Fatal(err)
	}
	closeClean(t, a, c)
}

func TestPanicIsReturned(t *testing.T) {
	a, c := newAlloc(t, hardened.Options{})
	th, _ := thread.Start(a, func() error { panic("oops") }, thread.Name("p"))
	err := th.Join()
	var pe *thread.PanicError
	if !errors.As(err, &pe) || pe.Value != "oops" || len(pe.Stack) == 0 || pe.Name != "p" {
		t.Fatalf("Join = %#v", err)
	}
	closeClean(t, a, c)
}

func TestDetachedPanicIsReported(t *testing.T) {
	for _, detachFirst := range []bool{true, false} {
		a, c := newAlloc(t, hardened.Options{})
		got := make(chan *thread.PanicError, 1)
		exited := make(chan struct{})
		release := make(chan struct{})
		th, _ := thread.Start(a, func() error { <-release; panic(errBoom) },
			thread.OnPanic(func(p *thread.PanicError) { got <- p }),
			thread.OnExit(func() { close(exited) }))
		if detachFirst {
			th.Detach()
			close(release)
		} else {
			close(release)
			<-exited
			th.Detach()
		}
		if p := <-got; !errors.Is(p, errBoom) {
			t.Fatalf("detachFirst=%v: reported %v", detachFirst, p)
		}
		<-exited
		closeClean(t, a, c)
	}
}

func TestMisuseIsAnError(t *testing.T) {
	a, c := newAlloc(t, hardened.Options{})
	start := func() *thread.Thread {
		th, err := thread.Start(a, func() error { return nil })
		if err != nil {
			t.Fatal(err)
		}
		return th
	}
	var nilThread *thread.Thread
	tests := []struct {
		name string
		run  func() error
		want error
		msg  string // the whole message: what was wrong, said once
	}{
		{"second Join", func() error { th := start(); th.Join(); return th.Join() }, thread.ErrJoined, "thread: Join: already joined"},
		{"Join after Detach", func() error { th := start(); th.Detach(); return th.Join() }, thread.ErrDetached, "thread: Join: detached"},
		{"Detach after Join", func() error { th := start(); th.Join(); return th.Detach() }, thread.ErrJoined, "thread: Detach: already joined"},
		{"second Detach", func() error { th := start(); th.Detach(); return th.Detach() }, thread.ErrDetached, "thread: Detach: detached"},
		{"Join nil", func() error { return nilThread.Join() }, thread.ErrInvalid, "thread: Join: nil or zero Thread"},
		{"Detach zero", func() error { return new(thread.Thread).Detach() }, thread.ErrInvalid, "thread: Detach: nil or zero Thread"},
		{"Start nil fn", func() error { _, err := thread.Start(a, nil); return err }, thread.ErrInvalid, "thread: Start: nil function"},
		{"Start nil allocator", func() error { _, err := thread.Start(nil, func() error { return nil }); return err }, thread.ErrInvalid, "thread: Start: nil allocator"},
	}
	for _, tt := range tests {
		err := tt.run()
		var te *thread.Error
		if !errors.Is(err, tt.want) || !errors.As(err, &te) || err.Error() != tt.msg {
			t.Errorf("%s: %v, want %v (%q)", tt.name, err, tt.want, tt.msg)
		}
	}
	// Workers of detached threads drop the last capsule reference.
	for a.Stats().LiveBlocks != 0 {
		runtime.Gosched()
	}
	closeClean(t, a, c)
}

func TestStartFailsWithAllocatorError(t *testing.T) {
	a, _ := newAlloc(t, hardened.Options{})
	a.Close()
	if _, err := thread.Start(a, func() error { return nil }); !errors.Is(err, hardened.ErrClosed) {
		t.Fatalf("Start on closed allocator: %v", err)
	}
	b, _ := newAlloc(t, hardened.Options{Limit: 1})
	if _, err := thread.Start(b, func() error { return nil }); !errors.Is(err, hardened.ErrOutOfMemory) {
		t.Fatalf("Start over Limit: %v", err)
	}
	b.Close()
}

// Thousands of concurrent lifecycles: no report, no leak.
func TestManyConcurrentLifecycles(t *testing.T) {
	a, c := newAlloc(t, hardened.Options{})
	n := 4000
	if testing.Short() {
		n = 500
	}
	var exited sync.WaitGroup
	var ran atomic.Int64
	var owners sync.WaitGroup
	for o := range 8 {
		owners.Add(1)
		go func() {
			defer owners.Done()
			for i := range n / 8 {
				exited.Add(1)
				th, err := thread.Start(a, func() error {
					b, err := a.Alloc(i % 300)
					if err != nil {
						return err
					}
					a.Free(b)
					ran.Add(1)
					return nil
				}, thread.OnExit(exited.Done))
				if err != nil {
					t.Error(err)
					exited.Done()
					return
				}
				if (i+o)%3 == 0 {
					err = th.Detach()
				} else {
					err = th.Join()
				}
				if err != nil {
					t.Error(err)
				}
			}
		}()
	}
	owners.Wait()
	exited.Wait()
	if ran.Load() != int64(n/8*8) {
		t.Fatalf("ran %d of %d", ran.Load(), n)
	}
	closeClean(t, a, c)
}

// Close while a detached thread still runs waits for its worker instead
// of unmapping the capsule under it (which killed the process with
// SIGSEGV in thread.worker): the worker finishes, frees its capsule, and
// Close finds nothing leaked.
func TestCloseWaitsForDetachedWorker(t *testing.T) {
	a, c := newAlloc(t, hardened.Options{})
	gate := make(chan struct{})
	var finished atomic.Bool
	th, err := thread.Start(a, func() error {
		<-gate
		runtime.Gosched()
		finished.Store(true)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := th.Detach(); err != nil {
		t.Fatal(err)
	}
	closed := make(chan error, 1)
	go func() { closed <- a.Close() }()
	select {
	case err := <-closed:
		t.Fatalf("Close returned (%v) while the detached worker was still running", err)
	case <-time.After(20 * time.Millisecond):
	}
	close(gate)
	if err := <-closed; err != nil {
		t.Fatalf("Close: %v", err)
	}
	if !finished.Load() {
		t.Fatal("Close returned before the worker finished")
	}
	for _, r := range c.take() {
		t.Errorf("report:\n%s", r)
	}
}

// A thread that touches a freed large block gets the block's report (a
// hardened build makes that page fault), not a process-killing fault.
func TestThreadFaultIsReported(t *testing.T) {
	if !hardened.Enabled {
		t.Skip("needs -tags hardened: release builds do not protect freed blocks")
	}
	if asanBuild {
		t.Skip("under -asan the read is stopped by ASan first (hardened/asan_test.go)")
	}
	a, c := newAlloc(t, hardened.Options{})
	b, err := a.Alloc(200 << 10)
	if err != nil {
		t.Fatal(err)
	}
	a.Free(b)
	th, err := thread.Start(a, func() error {
		sinkByte = b[100]
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	err = th.Join()
	if !errors.Is(err, hardened.UseAfterFree) {
		t.Fatalf("Join: %v, want the use-after-free report", err)
	}
	if r := c.take(); len(r) != 1 || r[0].Kind != hardened.UseAfterFree || r[0].Offset != 100 {
		t.Fatalf("reports %v", r)
	}
	closeClean(t, a, c)
}

var sinkByte byte
