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

// stopThreads joins every thread still owned and waits for every worker,
// detached ones included; it returns the first Join error.
func (r *runner) stopThreads() error {
	var first error
	for s, t := range r.threads {
		if t != nil {
			r.threads[s] = nil
			if err := r.joined(t.Join(), r.fates[s]); err != nil && first == nil {
				first = err
			}
		}
	}
	r.exited.Wait()
	return first
}
