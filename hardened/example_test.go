package hardened_test

import (
	"errors"
	"fmt"
	"strings"
	"unsafe"

	"github.com/hardalloc/hardalloc/hardened"
)

func Example() {
	a, err := hardened.New(hardened.Options{Limit: 64 << 20})
	if err != nil {
		panic(err)
	}
	defer a.Close()

	buf, _ := a.Alloc(5)
	copy(buf, "hello")
	buf, _ = a.Realloc(buf, 11) // keeps "hello", zeroes the rest
	copy(buf[5:], " world")
	fmt.Println(string(buf))
	a.Free(buf)
	// Output: hello world
}

// Bugs are reported, not silently absorbed: here a double free and an
// interior free go to OnReport instead of the default panic.
func ExampleOptions_onReport() {
	a, _ := hardened.New(hardened.Options{OnReport: func(r *hardened.Report) {
		fmt.Println(r.Kind, r.Size)
	}})
	defer a.Close()
	b, _ := a.Alloc(32)
	a.Free(b[4:]) // interior pointer: refused, b stays valid
	a.Free(b)
	a.Free(b) // double free
	// Output:
	// invalid-free 32
	// double-free 32
}

func ExampleAllocator_Alloc_errors() {
	a, _ := hardened.New(hardened.Options{Limit: 1 << 20})
	defer a.Close()
	_, err := a.Alloc(-1)
	fmt.Println(errors.Is(err, hardened.ErrInvalidSize))
	_, err = a.Alloc(2 << 20)
	fmt.Println(errors.Is(err, hardened.ErrOutOfMemory))
	_, err = a.AllocAligned(64, 48)
	fmt.Println(errors.Is(err, hardened.ErrAlignment))
	// Output:
	// true
	// true
	// true
}

func ExampleAllocator_Close() {
	a, _ := hardened.New(hardened.Options{OnReport: func(r *hardened.Report) {}})
	a.Alloc(100)
	err := a.Close()
	fmt.Println(errors.Is(err, hardened.Leak))
	// Output: true
}

// Freed large blocks wait in a cache for reuse and count as mapped; Trim
// gives them (and wholly free slabs) back to the OS.
func ExampleAllocator_Trim() {
	a, _ := hardened.New(hardened.Options{QuarantineBytes: -1})
	defer a.Close()
	b, _ := a.Alloc(1 << 20)
	a.Free(b)
	fmt.Println(a.Stats().Mapped >= 1<<20)
	a.Trim()
	fmt.Println(a.Stats().Mapped < 1<<20, a.Stats().LargeCached)
	// Output:
	// true
	// true 0
}

// A client whose every buffer is 64-byte aligned (Apache Arrow's are)
// sets MinAlign: Alloc and Realloc then keep the alignment on their fast
// paths, and ReallocAligned keeps a larger one.
func ExampleOptions_minAlign() {
	a, _ := hardened.New(hardened.Options{MinAlign: 64})
	defer a.Close()
	b, _ := a.Alloc(100)
	b, _ = a.Realloc(b, 5000)
	fmt.Println(uintptr(unsafe.Pointer(&b[0]))%64 == 0)
	b, _ = a.ReallocAligned(b, 200, 4096)
	fmt.Println(uintptr(unsafe.Pointer(&b[0]))%4096 == 0)
	a.Free(b)
	// Output:
	// true
	// true
}

// An adapter around the allocator names its functions in Wrappers, so
// reports start at the adapter's caller (in hardened builds, which record
// sites; release builds have none to show).
func ExampleOptions_wrappers() {
	a, _ := hardened.New(hardened.Options{
		Wrappers: []string{"github.com/hardalloc/hardalloc/hardened_test.adapter"},
		OnReport: func(r *hardened.Report) {
			top := "no site"
			if fr := r.Alloc.Frames(); len(fr) > 0 {
				top = fr[0].Function
			}
			fmt.Println(r.Kind, "allocation site in the adapter:", strings.Contains(top, "adapter"))
		},
	})
	defer a.Close()
	b := adapterAlloc(a, 10)
	a.Free(b)
	a.Free(b)
	// Output: double-free allocation site in the adapter: false
}

//go:noinline
func adapterAlloc(a *hardened.Allocator, n int) []byte {
	b, _ := a.Alloc(n)
	return b
}
