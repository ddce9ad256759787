//go:build hardened || asan

package hardened_test

import (
	"fmt"
	"runtime"
	"testing"

	"github.com/hardalloc/hardalloc/hardened"
)

// A site's stack is its caller's, frame for frame, up to StackDepth: none
// of the allocator's own frames, none left out, none made up. Alloc's and
// Free's fast paths start the walk at their own frame record; the general
// paths (a fresh allocator's first Alloc, a Free the fast path declines)
// walk from their own frames and drop the allocator's by name. Both are
// checked against runtime.Callers from the calling function, at several
// depths of the caller's stack, below and beyond StackDepth.
func TestSiteStacksExact(t *testing.T) {
	for _, depth := range []int{0, 3, 40} {
		for _, nest := range []int{0, 5, 30} {
			t.Run(fmt.Sprintf("depth%d/nest%d", depth, nest), func(t *testing.T) {
				a, col := newAlloc(t, hardened.Options{StackDepth: depth})
				limit := depth
				if limit == 0 {
					limit = 16 // StackDepth's default
				}
				var want [4][]runtime.Frame // two Allocs, a Free, then its second Free
				var blocks [2][]byte
				nested(nest, func() {
					// The first Alloc of a fresh allocator takes the
					// general path; the second finds its slot in this P's
					// cache, the fast path.
					blocks[0], want[0], _ = allocSiteAt(a, 48)
					blocks[1], want[1], _ = allocSiteAt(a, 48)
					want[2], _ = freeSiteAt(a, blocks[1])
					want[3], _ = freeSiteAt(a, blocks[1])
				})
				rs := col.take()
				if len(rs) != 1 || rs[0].Kind != hardened.DoubleFree {
					t.Fatalf("reports: %v", rs)
				}
				r := rs[0]
				checkStack(t, "Free site", r.Free.Frames(), want[2], limit)
				checkStack(t, "Alloc site (fast path)", r.Alloc.Frames(), want[1], limit)

				// The general path's site, read through a report on the
				// first block: a Free through an interior pointer.
				freeSiteAt(a, blocks[0][1:])
				rs = col.take()
				if len(rs) != 1 || rs[0].Kind != hardened.InvalidFree {
					t.Fatalf("reports: %v", rs)
				}
				checkStack(t, "Alloc site (general path)", rs[0].Alloc.Frames(), want[0], limit)
				a.Free(blocks[0])
			})
		}
	}
}

// nested calls f from n frames further down the stack.
//
//go:noinline
func nested(n int, f func()) {
	if n == 0 {
		f()
		return
	}
	nested(n-1, f)
}

// framesHere is runtime.Callers from its caller, as frames.
//
//go:noinline
func framesHere() []runtime.Frame {
	pcs := make([]uintptr, 256)
	pcsSink = pcs // on the heap: a shallow frame, not itself the stack's growth
	fr := runtime.CallersFrames(pcs[:runtime.Callers(2, pcs)])
	var out []runtime.Frame
	for {
		f, more := fr.Next()
		out = append(out, f)
		if !more {
			return out
		}
	}
}

var pcsSink []uintptr

// checkStack compares a site's frames with the expected ones, the first
// limit of them, by function and line.
func checkStack(t *testing.T, what string, got, want []runtime.Frame, limit int) {
	t.Helper()
	want = want[:min(limit, len(want))]
	ok := len(got) == len(want)
	for i := 0; ok && i < len(got); i++ {
		ok = got[i].Function == want[i].Function && got[i].Line == want[i].Line
	}
	if !ok {
		var s string
		for i := range max(len(got), len(want)) {
			var g, w string
			if i < len(got) {
				g = fmt.Sprintf("%s:%d", got[i].Function, got[i].Line)
			}
			if i < len(want) {
				w = fmt.Sprintf("%s:%d", want[i].Function, want[i].Line)
			}
			s += fmt.Sprintf("\n  %-60s want %s", g, w)
		}
		t.Errorf("%s: %d frames, want %d:%s", what, len(got), len(want), s)
	}
}

// The frame record Alloc and Free hand to the walk moves with the stack:
// a goroutine's stack that grows (is copied) inside the allocator, between
// the API call and the walk, still yields the exact stack. Each Alloc and
// each Free runs first thing on a new goroutine whose stack is filled to
// a different depth (16-byte steps), so that the growth lands in each
// frame of the allocator's in turn; the test fails if none saw it.
func TestSiteStacksAcrossStackGrowth(t *testing.T) {
	a, col := newAlloc(t, hardened.Options{})
	a.Free(mustAlloc(t, a, 48)) // fill this P's cache: the Allocs below are fast
	moved := 0
	for pad := range 800 {
		var want [2][]runtime.Frame
		var grew [2]bool
		var b []byte
		onDeepStack(pad, func() { b, want[0], grew[0] = allocSiteAt(a, 48) })
		onDeepStack(pad, func() { want[1], grew[1] = freeSiteAt(a, b) })
		a.Free(b)
		rs := col.take()
		if len(rs) != 1 || rs[0].Kind != hardened.DoubleFree {
			t.Fatalf("pad %d: reports %v", pad, rs)
		}
		checkStack(t, fmt.Sprintf("pad %d: Alloc site", pad), rs[0].Alloc.Frames(), want[0], 16)
		checkStack(t, fmt.Sprintf("pad %d: Free site", pad), rs[0].Free.Frames(), want[1], 16)
		for _, g := range grew {
			if g {
				moved++
			}
		}
	}
	if moved == 0 && hardened.StackMark() != nil {
		t.Fatal("no Alloc or Free ran across a stack growth: the test tested nothing")
	}
	t.Logf("%d calls grew the stack", moved)
}

// onDeepStack runs f on a new goroutine, below about 16*pad bytes of frames.
func onDeepStack(pad int, f func()) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		padded(pad/8, func() { fine(pad%8, f) })
	}()
	<-done
}

// padded calls f below n frames of 64 bytes each.
//
//go:noinline
func padded(n int, f func()) {
	var pad [64]byte
	if n == 0 {
		f()
		return
	}
	padded(n-1, f)
	runtime.KeepAlive(&pad)
}

// fine calls f below one frame of 16*(k+1) bytes.
func fine(k int, f func()) {
	switch k {
	case 0:
		under[[16]byte](f)
	case 1:
		under[[32]byte](f)
	case 2:
		under[[48]byte](f)
	case 3:
		under[[64]byte](f)
	case 4:
		under[[80]byte](f)
	case 5:
		under[[96]byte](f)
	case 6:
		under[[112]byte](f)
	default:
		under[[128]byte](f)
	}
}

//go:noinline
func under[T any](f func()) {
	var pad T
	f()
	runtime.KeepAlive(&pad)
}

// allocSiteAt allocates and returns the stack as runtime.Callers sees it
// from here, with this frame's line moved to the Alloc call, and whether
// the goroutine's stack moved (was copied) during Alloc.
//
//go:noinline
func allocSiteAt(a *hardened.Allocator, n int) ([]byte, []runtime.Frame, bool) {
	at := uintptr(hardened.StackMark()) // a number: a stack copy leaves it as it was
	b, _ := a.Alloc(n)
	moved := uintptr(hardened.StackMark()) != at
	want := framesHere() // after Alloc: its own growth of the stack is not Alloc's
	want[0].Line -= 2
	return b, want, moved
}

// freeSiteAt is allocSiteAt for Free.
//
//go:noinline
func freeSiteAt(a *hardened.Allocator, b []byte) ([]runtime.Frame, bool) {
	at := uintptr(hardened.StackMark())
	a.Free(b)
	moved := uintptr(hardened.StackMark()) != at
	want := framesHere()
	want[0].Line -= 2
	return want, moved
}
