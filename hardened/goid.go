package hardened

import (
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"unsafe"
)

// goid returns the current goroutine's id, as runtime.Stack prints it.
//
// Parsing runtime.Stack costs microseconds, too much for every allocation.
// Instead, on first use, the offset of the id field inside the runtime's
// g struct is found by matching the slow answer on two goroutines; goid
// then reads that field through the g pointer (from a two-instruction
// assembly function). If calibration fails (another architecture, a
// changed runtime) goid falls back to the slow path. First use, not init:
// release builds ask only when they record a site (large and sampled
// blocks, a report), and most programs never pay for it. Not instrumented
// (norace): it reads this goroutine's own g, which no race or ASan check
// has anything to say about.
//
//go:norace
//go:nocheckptr
func goid() uint64 {
	if off := goidOffset.Load(); off >= 0 {
		return *(*uint64)(unsafe.Add(getg(), off))
	} else if off == goidUnknown {
		goidOnce.Do(func() { goidOffset.Store(int64(calibrateGoid())) })
		return goid()
	}
	return slowGoid()
}

// goidUnknown marks goidOffset before calibration; -1 marks a failed one.
const goidUnknown = -2

var (
	goidOffset atomic.Int64
	goidOnce   sync.Once
)

func init() { goidOffset.Store(goidUnknown) }

func slowGoid() uint64 {
	var buf [64]byte
	s := string(buf[:runtime.Stack(buf[:], false)])
	s = strings.TrimPrefix(s, "goroutine ")
	if i := strings.IndexByte(s, ' '); i > 0 {
		id, _ := strconv.ParseUint(s[:i], 10, 64)
		return id
	}
	return 0
}

// candidates returns the 8-byte-aligned offsets in the first 256 bytes of
// the current g that hold the current goroutine's id.
func candidates() []int {
	id := slowGoid()
	g := getg()
	var out []int
	for off := 0; off < 256; off += 8 { // well inside the g struct (checkptr checks)
		if *(*uint64)(unsafe.Add(g, off)) == id {
			out = append(out, off)
		}
	}
	return out
}

func calibrateGoid() int {
	if !haveGetg {
		return -1
	}
	first := candidates()
	ch := make(chan []int)
	for range 2 {
		go func() { ch <- candidates() }()
	}
	second, third := <-ch, <-ch
	for _, off := range first {
		if contains(second, off) && contains(third, off) {
			return off
		}
	}
	return -1
}

func contains(s []int, x int) bool {
	for _, v := range s {
		if v == x {
			return true
		}
	}
	return false
}
