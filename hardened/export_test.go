package hardened

import "unsafe"

// StackMark is where the caller's stack is: a frame record just below
// the caller's, which moves when the goroutine's stack is copied (nil
// where frame has no walk). Tests compare two marks taken at the same
// depth to see whether the stack moved in between.
//
//go:noinline
func StackMark() unsafe.Pointer { return frame() }
