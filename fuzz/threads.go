package fuzz

import (
	"errors"
	"fmt"
	"runtime"

	"github.com/hardalloc/hardalloc/hardened"
	"github.com/hardalloc/hardalloc/thread"
)

// This file is the thread ops: what a spawned thread does (threadWork)
// and at its end (its fate), and how the runner waits for and checks
// its threads.

// Thread fates: what a spawned thread's function does at its end, so the
// thread package's error and panic paths run too.
const (
	fateReturn = iota // return nil
	fateError         // return errFated
	fatePanic         // panic(errFated)
)

var errFated = errors.New("fuzz: the thread's fated error")

func threadFate(aux int) int { return [...]int{fateReturn, fateReturn, fateError, fatePanic}[aux/64%4] }

// joined checks what Join returned against the thread's fate (and allows
// an out-of-memory error under a Limit).
func (r *runner) joined(err error, fate int) error {
	var pe *thread.PanicError
	switch {
	case err != nil && r.oom(err):
		return nil
	case fate == fateReturn && err == nil,
		fate == fateError && err == errFated,
		fate == fatePanic && errors.As(err, &pe) && pe.Value == errFated:
		return nil
	case err == nil:
		return fmt.Errorf("join returned nil for a thread fated %d", fate)
	}
	return err
}

// onPanic is every thread's OnPanic. A detached worker's report waits
// until the program ends (finish: endNow), then yields until the owner's
// Reset is done, or a hundred times: a real OnPanic prints or logs and
// takes its time, and the owner's Reset or Close must wait for it (the
// worker holds the allocator until it has dropped its capsule). A worker
// that lets go too early is then deterministically inside its panic path
// while Reset runs, which finds its capsule live (with GOMAXPROCS 1, as
// make fuzz runs; with more Ps, as often as the yields last).
func (r *runner) onPanic(*thread.PanicError) {
	if r.detaching.Load() {
		r.panics.Add(1) // Detach reports on the owner's goroutine
		return
	}
	epoch := r.resets.Load()
	<-r.endGate()
	for k := 0; k < 100 && r.resets.Load() == epoch; k++ {
		runtime.Gosched()
	}
	r.panics.Add(1)
}

// endGate is the channel endNow closes.
func (r *runner) endGate() chan struct{} {
	r.endMu.Lock()
	defer r.endMu.Unlock()
	if r.ending == nil {
		r.ending = make(chan struct{})
	}
	return r.ending
}

// endNow releases the detached workers waiting in onPanic: the program
// (or the part before a Reset) is ending.
func (r *runner) endNow() {
	r.endMu.Lock()
	defer r.endMu.Unlock()
	if r.ending == nil {
		r.ending = make(chan struct{})
	}
	select {
	case <-r.ending:
	default:
		close(r.ending)
	}
}

// endDone opens a new gate once every worker is gone.
func (r *runner) endDone() {
	r.resets.Add(1)
	r.endMu.Lock()
	r.ending = nil
	r.endMu.Unlock()
}

func (r *runner) threadExited() {
	r.running.Add(-1)
	r.exited.Done()
}

// threadWork is what a spawned thread does: allocate, write, verify, free,
// then meet its fate.
func threadWork(a *hardened.Allocator, rounds, size, fate int) error {
	for k := range rounds + 1 {
		b, err := a.Alloc(size + k)
		if err != nil {
			return err
		}
		fillRamp(b, k)
		runtime.Gosched()
		if j := rampDiff(b, k); j >= 0 {
			return fmt.Errorf("thread block %d byte %d changed", k, j)
		}
		a.Free(b)
	}
	switch fate {
	case fateError:
		return errFated
	case fatePanic:
		panic(errFated)
	}
	return nil
}

// stopThreads joins every thread still owned and, with detached, waits
// for every worker, detached ones included; it returns the first Join
// error.
func (r *runner) stopThreads(detached bool) error {
	r.endNow()
	var first error
	for s, t := range r.threads {
		if t != nil {
			r.threads[s] = nil
			if err := r.joined(t.Join(), r.fates[s]); err != nil && first == nil {
				first = err
			}
		}
	}
	if detached {
		r.exited.Wait()
	}
	return first
}
