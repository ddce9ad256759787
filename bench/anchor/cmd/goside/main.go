// Command goside is the Go half of hardalloc's anchor measurement
// (bench/anchor): the workloads of ../../c/workload.c, with the same loop
// shapes, sizes, random sequence and output, run against hardalloc. Build
// it twice, plain and with -tags hardened.
//
//	goside pair  CONFIG T_ms
//	goside mixed CONFIG STEPS
//
// CONFIG: hardalloc (Options{Seed: 1, StackDepth: -1}: in hardened builds
// goroutine and sequence number per site, no stacks), hardalloc-stacks
// (Options{Seed: 1}: 16-frame stacks in hardened builds), hardalloc-q256k
// (no stacks, a 256 KiB quarantine instead of the default 4 MiB: the
// bytes hardened_malloc's default slab quarantine holds for one size
// class, a 128 KiB random array and a 128 KiB queue, since h_malloc.c
// scales CONFIG_SLAB_QUARANTINE_RANDOM_LENGTH and _QUEUE_LENGTH (1 each)
// by 2^(17 - log2 size) slots; on a one-size pair workload the two
// quarantines then hold the same memory), gomake (make, garbage
// collected).
package main

import (
	"fmt"
	"os"
	"strconv"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/hardalloc/hardalloc/hardened"
)

const (
	batch = 1000
	slots = 8192
)

//lint:ignore U1000 written only: it makes the allocations escape, as the C side's volatile sink does
var sink []byte

func cpuNS() int64 {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_PROCESS_CPUTIME_ID, &ts); err != nil {
		panic(err)
	}
	return ts.Nano()
}

// An allocator under test: hardalloc, or make with the garbage collector.
type allocator interface {
	alloc(n int) []byte
	free(b []byte)
}

type hard struct{ a *hardened.Allocator }

func (h hard) alloc(n int) []byte {
	b, err := h.a.Alloc(n)
	if err != nil {
		panic(err)
	}
	return b
}
func (h hard) free(b []byte) { h.a.Free(b) }

type gomake struct{}

func (gomake) alloc(n int) []byte { return make([]byte, n) }
func (gomake) free([]byte)        {}

// One batch of pairs, written out per allocator so no interface call sits
// in the loop (the C loop calls malloc and free through the PLT only).
//
//go:noinline
func pairsHard(a *hardened.Allocator, n int) {
	for i := range batch {
		p, _ := a.Alloc(n)
		p[0] = byte(i)
		sink = p
		a.Free(p)
	}
	sink = nil
}

//go:noinline
func pairsMake(n int) {
	for i := range batch {
		p := make([]byte, n)
		p[0] = byte(i)
		sink = p
	}
	sink = nil
}

func pairNS(run func(int), n int, t int64) float64 {
	run(n)
	c0, k := cpuNS(), int64(0)
	var c int64
	for {
		run(n)
		k++
		if c = cpuNS() - c0; c >= t {
			break
		}
	}
	return float64(c) / float64(k*batch)
}

// splitmix64, seeded 42, as in workload.c.
var rng uint64 = 42

func next() uint64 {
	rng += 0x9e3779b97f4a7c15
	z := rng
	z = (z ^ z>>30) * 0xbf58476d1ce4e5b9
	z = (z ^ z>>27) * 0x94d049bb133111eb
	return z ^ z>>31
}

func mixedSize() int {
	r := next()
	lo := 1 << (4 + r%12)
	return lo + int((r>>8)%uint64(lo))
}

func touch(p []byte) {
	for i := 0; i < len(p); i += 4096 {
		p[i] = 1
	}
	p[len(p)-1] = 1
}

// rssNow is the resident set now (/proc/self/statm), as in workload.c.
func rssNow() int64 {
	b, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		return 0
	}
	var size, res int64
	fmt.Sscan(string(b), &size, &res)
	return res * int64(os.Getpagesize())
}

func mixed(al allocator, steps int) {
	var p [slots][]byte
	live, peak := 0, 0
	base := rssNow()
	for i := range p {
		p[i] = al.alloc(mixedSize())
		touch(p[i])
		live += len(p[i])
	}
	peak = live
	c0 := cpuNS()
	for range steps {
		i := next() % slots
		live -= len(p[i])
		al.free(p[i])
		p[i] = al.alloc(mixedSize())
		touch(p[i])
		live += len(p[i])
		peak = max(peak, live)
	}
	ns := float64(cpuNS()-c0) / float64(steps)
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	fmt.Printf("mixed %.1f %.3f\n", ns, float64(ru.Maxrss*1024-base)/float64(peak))
	for i := range p {
		al.free(p[i])
	}
}

func main() {
	if len(os.Args) != 4 {
		fmt.Fprintln(os.Stderr, "usage: goside pair|mixed hardalloc|hardalloc-stacks|hardalloc-q256k|gomake T_ms|STEPS")
		os.Exit(2)
	}
	arg, err := strconv.Atoi(os.Args[3])
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	var al allocator = gomake{}
	var h *hardened.Allocator
	switch os.Args[2] {
	case "hardalloc", "hardalloc-stacks", "hardalloc-q256k":
		opts := hardened.Options{Seed: 1, StackDepth: -1}
		switch os.Args[2] {
		case "hardalloc-stacks":
			opts.StackDepth = 0
		case "hardalloc-q256k":
			opts.QuarantineBytes = 256 << 10
		}
		if h, err = hardened.New(opts); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		defer h.Close()
		al = hard{h}
	case "gomake":
	default:
		fmt.Fprintln(os.Stderr, "unknown config", os.Args[2])
		os.Exit(2)
	}
	switch os.Args[1] {
	case "pair":
		run := pairsMake
		if h != nil {
			run = func(n int) { pairsHard(h, n) }
		}
		for _, n := range []int{16, 64, 256, 4096, 65536} {
			fmt.Printf("pair %d %.2f\n", n, pairNS(run, n, int64(arg)*1e6))
		}
	case "mixed":
		mixed(al, arg)
	default:
		fmt.Fprintln(os.Stderr, "unknown workload", os.Args[1])
		os.Exit(2)
	}
}
