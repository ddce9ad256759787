package hardened

import (
	"errors"
	"fmt"
)

// Errors returned for bad arguments and resource exhaustion. They are
// returned wrapped in an *OpError; match them with errors.Is.
var (
	// ErrInvalidSize: a negative size, or one whose rounding overflows.
	ErrInvalidSize = errors.New("invalid size")
	// ErrAlignment: an alignment that is not a positive power of two or is
	// larger than MaxAlign.
	ErrAlignment = errors.New("invalid alignment")
	// ErrOutOfMemory: the request would map more than Options.Limit bytes,
	// or the operating system refused the mapping.
	ErrOutOfMemory = errors.New("out of memory")
	// ErrClosed: the allocator has been closed.
	ErrClosed = errors.New("allocator is closed")
)

// MaxAlign is the largest alignment AllocAligned accepts.
const MaxAlign = 1 << 30

// OpError is the error returned by an allocator operation whose arguments
// were refused or whose memory could not be had. Nothing was allocated and
// nothing passed in was changed.
type OpError struct {
	Op    string // "Alloc", "AllocAligned", "Realloc", "ReallocAligned", ...
	Size  int    // the requested size
	Align int    // the requested alignment, 0 when the operation has none
	Err   error  // one of the Err* sentinels, possibly wrapping an OS error
}

// Error reads like the call that failed: "hardalloc: AllocAligned(100, 3):
// invalid alignment", "hardalloc: Close: allocator is closed".
func (e *OpError) Error() string {
	switch e.Op {
	case "AllocAligned", "ReallocAligned":
		return fmt.Sprintf("hardalloc: %s(%d, %d): %v", e.Op, e.Size, e.Align, e.Err)
	case "Alloc", "Realloc":
		return fmt.Sprintf("hardalloc: %s(%d): %v", e.Op, e.Size, e.Err)
	}
	return fmt.Sprintf("hardalloc: %s: %v", e.Op, e.Err)
}

func (e *OpError) Unwrap() error { return e.Err }

// Error is a detected memory-safety bug, as an error. The default
// Options.OnReport panics with an *Error; Check, Close and Realloc return
// them. errors.Is(err, hardened.DoubleFree) matches by Kind.
type Error struct {
	Report *Report
}

func (e *Error) Error() string { return "hardalloc: " + e.Report.Summary() }

// Is reports whether target is the Kind of this error, so that
// errors.Is(err, hardened.Overflow) works through wrapping and joins.
func (e *Error) Is(target error) bool {
	k, ok := target.(Kind)
	return ok && k == e.Report.Kind
}
