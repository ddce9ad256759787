// Package thread runs a function on its own goroutine with an explicit
// lifecycle (Start, then exactly one Join or Detach), keeping its launch
// capsule in allocator memory.
//
// # The launch capsule
//
// Start allocates a capsule of CapsuleSize bytes from the given
// Allocator, off the Go heap. It holds only plain words, because the
// garbage collector does not scan it:
//
//	lock   a lock word (CAS to take it, a store to release it): the seed's
//	       futex-on-allocator-memory, now a write the allocator can see
//	refs   the reference count, starting at 2: the owner and the worker
//	state  worker-finished, owner-joined, owner-detached, panic-reported
//	magic  a constant checked on every access
//
// # Lifetime
//
// The capsule is freed exactly once, by whichever side drops the last
// reference, and each side drops its reference only after its last touch of
// the capsule: the worker after it has published fn's result and released
// the lock; the owner after Join has read the result, or after Detach has
// marked the capsule. This is the seed notes' permanent fix (a reference-
// counted holder shared by creator and trampoline). Hardened builds keep
// the capsule's size class in quarantine, so a reintroduced early free
// shows up as a WriteAfterFree, DoubleFree or UseAfterFree naming this
// package's functions (fault_on.go reintroduces those bugs under -tags
// faultinject, for the tests and fuzzers that prove they are caught).
//
// # Faults
//
// fn runs under the allocator's CatchFault: in hardened builds a fault on
// hardalloc memory in a thread (a freed large block, a guard page, a
// 0-byte block) becomes that block's report, and Join returns it, instead
// of a fatal error that kills the process.
//
// # Close
//
// Start takes a hold on the allocator for the worker, released once the worker
// no longer touches allocator memory: the allocator's Close waits for
// running workers, detached ones included, instead of unmapping a capsule
// under them.
//
// # Errors
//
// Join returns fn's error, or a *PanicError if fn panicked. A second Join,
// Join after Detach, Detach after Join, and calls on a nil or zero Thread
// return errors wrapping ErrJoined, ErrDetached or ErrInvalid; none of them
// touch the capsule. A detached thread's panic goes to the OnPanic option,
// or is printed to standard error with its stack: reported, never lost.
package thread

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"unsafe"

	"github.com/hardalloc/hardalloc/hardened"
	"github.com/hardalloc/hardalloc/internal/harness"
)

var (
	// ErrJoined: the thread was already joined.
	ErrJoined = errors.New("already joined")
	// ErrDetached: the thread was detached.
	ErrDetached = errors.New("detached")
	// ErrInvalid matches (errors.Is) every bad argument: a nil
	// allocator or function passed to Start, a nil or zero Thread.
	ErrInvalid = errors.New("invalid argument")
)

// Error is the error of a thread operation: the operation and what was
// wrong, said once ("thread: Start: nil allocator"). errors.Is sees
// through it to ErrJoined, ErrDetached, ErrInvalid or the allocator's
// error.
type Error struct {
	Op  string // Start, Join or Detach
	Err error
}

func (e *Error) Error() string { return "thread: " + e.Op + ": " + e.Err.Error() }
func (e *Error) Unwrap() error { return e.Err }

// invalid is a bad argument: its own message, matched by ErrInvalid.
type invalid string

func (e invalid) Error() string        { return string(e) }
func (e invalid) Is(target error) bool { return target == ErrInvalid }

// PanicError is fn's panic, recovered on the worker.
type PanicError struct {
	Name  string // the thread's name, if any
	Value any    // the value passed to panic
	Stack []byte // the worker's stack at the panic
}

func (e *PanicError) Error() string {
	if e.Name != "" {
		return fmt.Sprintf("thread %s panicked: %v", e.Name, e.Value)
	}
	return fmt.Sprintf("thread panicked: %v", e.Value)
}

// Unwrap returns the panic value if it is an error.
func (e *PanicError) Unwrap() error {
	err, _ := e.Value.(error)
	return err
}

// Option configures Start.
type Option func(*options)

type options struct {
	name    string
	locked  bool
	onPanic func(*PanicError)
	onExit  func()
}

// Name names the thread in diagnostics and panics.
func Name(name string) Option { return func(o *options) { o.name = name } }

// LockOSThread runs fn wired to one OS thread (runtime.LockOSThread), for
// code that needs thread identity.
func LockOSThread() Option { return func(o *options) { o.locked = true } }

// OnPanic receives the panic of a detached thread (a joined thread's panic
// is returned by Join instead). Without it the panic is printed to stderr.
func OnPanic(f func(*PanicError)) Option { return func(o *options) { o.onPanic = f } }

// OnExit is called on the worker after it has dropped its last reference
// to the capsule: after it, the worker touches no allocator memory. Useful
// to wait for detached threads before closing the allocator.
func OnExit(f func()) Option { return func(o *options) { o.onExit = f } }

// capsule is the launch capsule's layout in allocator memory.
type capsule struct {
	lock  uint32
	refs  int32
	state uint32
	_     uint32
	magic uint64
}

const (
	capsuleMagic = 0x7468726561646361 // "threadca"

	stWorkerDone = 1 << iota
	stJoined
	stDetached
	stPanicReported
)

// CapsuleSize is the size of the launch capsule each Start allocates.
// Start registers it with the allocator it is given, so that hardened
// builds quarantine the capsule's size class on every free of that
// allocator (other allocators are not affected).
const CapsuleSize = 48

func init() {
	if unsafe.Sizeof(capsule{}) > CapsuleSize {
		panic("thread: capsule larger than CapsuleSize")
	}
}

// entry is the Go-side half of a thread: what cannot live off-heap.
type entry struct {
	fn     func() error
	opts   options
	done   chan struct{} // closed when fn's result is published
	exited chan struct{} // closed when the worker has dropped its reference
	// release lets the allocator's Close proceed: the worker calls it once
	// it touches no allocator memory any more.
	release func()
	err     error
	perr    *PanicError
}

// Thread is the owner's handle.
type Thread struct {
	mu    sync.Mutex
	a     *hardened.Allocator
	mem   []byte // the capsule
	e     *entry
	ended error // ErrJoined or ErrDetached once the owner released
}

// Start runs fn on a new goroutine. The capsule is allocated from a; a
// closed allocator or one over its Limit makes Start fail with a's error.
func Start(a *hardened.Allocator, fn func() error, opts ...Option) (*Thread, error) {
	switch {
	case a == nil:
		return nil, &Error{Op: "Start", Err: invalid("nil allocator")}
	case fn == nil:
		return nil, &Error{Op: "Start", Err: invalid("nil function")}
	}
	harness.AlwaysQuarantine(a, CapsuleSize) // once per allocator in effect: a flag already set is left alone
	mem, err := allocCapsule(a)
	if err != nil {
		return nil, &Error{Op: "Start", Err: err}
	}
	e := &entry{fn: fn, done: make(chan struct{}), exited: make(chan struct{})}
	for _, o := range opts {
		o(&e.opts)
	}
	c := (*capsule)(unsafe.Pointer(&mem[0]))
	c.refs = 2
	c.magic = capsuleMagic
	t := &Thread{a: a, mem: mem, e: e}
	e.release = harness.Hold(a) // Close waits for this worker
	go worker(a, mem, e)
	return t, nil
}

//go:noinline
func allocCapsule(a *hardened.Allocator) ([]byte, error) {
	return a.Alloc(CapsuleSize)
}

func capsuleOf(mem []byte) *capsule { return (*capsule)(unsafe.Pointer(unsafe.SliceData(mem))) }

// acquire takes the capsule's lock. If the magic word is gone the capsule
// was freed under us (only possible with an injected bug): go on
// unlocked, as the original C++ did, and let the allocator report the
// write instead of spinning forever on poison.
func (c *capsule) acquire() {
	asanTouch(unsafe.Pointer(&c.lock), 4)
	for !atomic.CompareAndSwapUint32(&c.lock, 0, 1) {
		if atomic.LoadUint64(&c.magic) != capsuleMagic {
			return
		}
		runtime.Gosched()
	}
}

func (c *capsule) release() {
	asanTouch(unsafe.Pointer(&c.lock), 4)
	atomic.StoreUint32(&c.lock, 0)
}

// worker is the trampoline: run fn, publish its result, drop the worker's
// reference.
func worker(a *hardened.Allocator, mem []byte, e *entry) {
	if e.opts.locked {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
	}
	e.perr, e.err = call(faulting(a, e.fn), e.opts.name)
	close(e.done)

	c := capsuleOf(mem)
	c.acquire()
	c.state |= stWorkerDone
	report := c.state&stDetached != 0 && e.perr != nil && c.state&stPanicReported == 0
	if report {
		c.state |= stPanicReported
	}
	if inject(faultLateUnlock) {
		dropRef(a, mem) // BUG (injected): the last release happens before the unlock
		c.release()     // the seed's late futex write, into freed memory
	} else {
		c.release()
	}
	if inject(faultEarlyRelease) {
		e.release() // BUG (injected): Close may proceed before the drop below
	}
	if report {
		reportPanic(e)
	}
	if inject(faultWorkerFrees) || inject(faultDoubleFree) {
		a.Free(mem) // BUG (injected): the worker frees the capsule on finish
	} else if !inject(faultLateUnlock) {
		dropRef(a, mem)
	}
	close(e.exited)
	e.release()
	if e.opts.onExit != nil {
		e.opts.onExit()
	}
}

// faulting runs fn under a.CatchFault: a fault on hardalloc memory in a
// thread (a freed large block, a guard page, a 0-byte block, in hardened
// builds) becomes the block's report instead of a "fatal error: fault"
// that kills the process. With the default OnReport the report is printed
// and Join returns a *PanicError holding its *hardened.Error; with one
// set, fn's result is that *hardened.Error.
func faulting(a *hardened.Allocator, fn func() error) func() error {
	return func() error {
		var err error
		if r := a.CatchFault(func() { err = fn() }); r != nil {
			return &hardened.Error{Report: r}
		}
		return err
	}
}

func call(fn func() error, name string) (perr *PanicError, err error) {
	defer func() {
		if v := recover(); v != nil {
			perr = &PanicError{Name: name, Value: v, Stack: debug.Stack()}
		}
	}()
	return nil, fn()
}

func reportPanic(e *entry) {
	if e.opts.onPanic != nil {
		e.opts.onPanic(e.perr)
		return
	}
	fmt.Fprintf(os.Stderr, "%v (detached)\n%s\n", e.perr, e.perr.Stack)
}

// dropRef releases one reference; the last one frees the capsule.
//
//go:noinline
func dropRef(a *hardened.Allocator, mem []byte) {
	c := capsuleOf(mem)
	asanTouch(unsafe.Pointer(&c.refs), 4)
	if atomic.AddInt32(&c.refs, -1) == 0 {
		a.Free(mem)
	}
}

// begin marks the owner's one Join or Detach, or says why it can't be.
func (t *Thread) begin(op string, end error) error {
	if t == nil || t.a == nil {
		return &Error{Op: op, Err: invalid("nil or zero Thread")}
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.ended != nil {
		return &Error{Op: op, Err: t.ended}
	}
	t.ended = end
	return nil
}

// Join waits for fn to return and for the worker to finish with the
// capsule, and returns fn's error, or a *PanicError. When Join returns,
// the capsule has been freed.
func (t *Thread) Join() error {
	if err := t.begin("Join", ErrJoined); err != nil {
		return err
	}
	<-t.e.done
	c := capsuleOf(t.mem)
	c.acquire()
	c.state |= stJoined
	c.release()
	t.ownerDone()
	<-t.e.exited // the worker is gone too: the capsule has been freed
	if t.e.perr != nil {
		return t.e.perr
	}
	return t.e.err
}

// Detach lets the thread run on and free its capsule when it ends. A panic
// of fn is then reported through OnPanic (or stderr).
func (t *Thread) Detach() error {
	if err := t.begin("Detach", ErrDetached); err != nil {
		return err
	}
	c := capsuleOf(t.mem)
	c.acquire()
	c.state |= stDetached
	report := c.state&stWorkerDone != 0 && c.state&stPanicReported == 0
	if report {
		c.state |= stPanicReported
	}
	c.release()
	if report {
		<-t.e.done // published before stWorkerDone was set
		if t.e.perr != nil {
			reportPanic(t.e)
		}
	}
	t.ownerDone()
	return nil
}

// ownerDone drops the owner's reference (or, with a fault injected, frees).
func (t *Thread) ownerDone() {
	if inject(faultDoubleFree) {
		t.a.Free(t.mem) // BUG (injected): the owner frees too
		return
	}
	if inject(faultWorkerFrees) {
		return // BUG (injected): the worker already freed; the owner only touched it
	}
	dropRef(t.a, t.mem)
}
