package hardened_test

import (
	"errors"
	"runtime"
	"strings"
	"sync"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/hardalloc/hardalloc/hardened"
	"github.com/hardalloc/hardalloc/internal/harness"
)

// allocSite allocates on behalf of the catalog so that reports can be
// checked to name it as the allocation site (hardened builds).
//
//go:noinline
func allocSite(t testing.TB, a *hardened.Allocator, n int) []byte {
	b, err := a.Alloc(n)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// headerOffset is where a small block's header starts relative to its
// payload, for Options{Redzone: 16}.
func headerOffset() int {
	if hardened.Enabled {
		return -32
	}
	return -16
}

type misuse struct {
	name string
	// kind is the report expected; release says whether release builds
	// detect it too (the always-on checks).
	kind    hardened.Kind
	release bool
	// size is the size of the block the report must name (-1: none).
	size int
	// steps performs a scenario; with bug false it must be correct use.
	steps func(t *testing.T, a *hardened.Allocator, bug bool)
}

// catalog is the misuse catalog: every bug class the allocator promises to
// detect. misuse_hardened_test.go appends the rows that need -tags hardened.
var catalog = []misuse{
	{"double free small", hardened.DoubleFree, true, 40, func(t *testing.T, a *hardened.Allocator, bug bool) {
		b := allocSite(t, a, 40)
		a.Free(b)
		if bug {
			a.Free(b)
		}
	}},
	{"double free large", hardened.DoubleFree, true, 200_000, func(t *testing.T, a *hardened.Allocator, bug bool) {
		b := allocSite(t, a, 200_000)
		a.Free(b)
		if bug {
			a.Free(b)
		}
	}},
	// Release builds: the byte below the payload is the header's second
	// word, which mirrors the first while the block is live; hardened
	// builds: the front redzone.
	{"underflow by 1 small", hardened.Underflow, true, 64, func(t *testing.T, a *hardened.Allocator, bug bool) {
		b := allocSite(t, a, 64)
		if bug {
			flip(b, -1, 0xff)
		}
		a.Free(b)
	}},
	{"delayed double free", hardened.DoubleFree, true, 48, func(t *testing.T, a *hardened.Allocator, bug bool) {
		b := allocSite(t, a, 48)
		c := allocSite(t, a, 48)
		a.Free(b)
		a.Free(c)
		if bug {
			a.Free(b)
		}
	}},
	{"double free from two goroutines", hardened.DoubleFree, true, 64, func(t *testing.T, a *hardened.Allocator, bug bool) {
		b := allocSite(t, a, 64)
		var wg sync.WaitGroup
		start := make(chan struct{})
		frees := 1
		if bug {
			frees = 2
		}
		for range frees {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				a.Free(b)
			}()
		}
		close(start)
		wg.Wait()
	}},
	{"interior free small", hardened.InvalidFree, true, 32, func(t *testing.T, a *hardened.Allocator, bug bool) {
		b := allocSite(t, a, 32)
		fill(b, 1)
		if bug {
			a.Free(b[8:])
		}
		verify(t, b, 1, 32) // nothing lost
		a.Free(b)
	}},
	{"unaligned free small", hardened.InvalidFree, true, 32, func(t *testing.T, a *hardened.Allocator, bug bool) {
		b := allocSite(t, a, 32)
		if bug {
			a.Free(b[3:])
		}
		a.Free(b)
	}},
	{"interior free large", hardened.InvalidFree, true, 200_000, func(t *testing.T, a *hardened.Allocator, bug bool) {
		b := allocSite(t, a, 200_000)
		fill(b, 2)
		if bug {
			a.Free(b[8192:])
		}
		verify(t, b, 2, len(b))
		a.Free(b)
	}},
	{"unaligned free large", hardened.InvalidFree, true, 200_000, func(t *testing.T, a *hardened.Allocator, bug bool) {
		b := allocSite(t, a, 200_000)
		if bug {
			a.Free(b[5:])
		}
		a.Free(b)
	}},
	{"free of a Go-heap slice", hardened.InvalidFree, true, -1, func(t *testing.T, a *hardened.Allocator, bug bool) {
		g := make([]byte, 64)
		if bug {
			a.Free(g)
		}
	}},
	{"free of a foreign mmap", hardened.InvalidFree, true, -1, func(t *testing.T, a *hardened.Allocator, bug bool) {
		m, err := unix.Mmap(-1, 0, 4096, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
		if err != nil {
			t.Fatal(err)
		}
		defer unix.Munmap(m)
		if bug {
			a.Free(m)
		}
	}},
	{"free of a PROT_NONE foreign mmap", hardened.InvalidFree, true, -1, func(t *testing.T, a *hardened.Allocator, bug bool) {
		m, err := unix.Mmap(-1, 0, 4096, unix.PROT_NONE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
		if err != nil {
			t.Fatal(err)
		}
		defer unix.Munmap(m)
		if bug {
			a.Free(m) // must not touch the memory: it would fault
		}
	}},
	{"free of a never-allocated slot", hardened.InvalidFree, true, -1, func(t *testing.T, a *hardened.Allocator, bug bool) {
		b1 := allocSite(t, a, 16)
		b2 := allocSite(t, a, 16)
		stride := int(addr(b2) - addr(b1))
		if bug {
			a.Free(raw(b2, stride, 16)) // the slot after b2: in a committed slab, never handed out
		}
		a.Free(b1)
		a.Free(b2)
	}},
	{"realloc of a freed block", hardened.UseAfterFree, true, 24, func(t *testing.T, a *hardened.Allocator, bug bool) {
		b := allocSite(t, a, 24)
		a.Free(b)
		if bug {
			if _, err := a.Realloc(b, 100); !errors.Is(err, hardened.UseAfterFree) {
				t.Errorf("Realloc of freed block: %v", err)
			}
		}
	}},
	{"header damage", hardened.HeaderCorruption, true, -1, func(t *testing.T, a *hardened.Allocator, bug bool) {
		b := allocSite(t, a, 56)
		if bug {
			flip(b, headerOffset()+1, 0x40)
		}
		a.Free(b)
	}},
	{"header swapped with a neighbour's", hardened.HeaderCorruption, true, -1, func(t *testing.T, a *hardened.Allocator, bug bool) {
		b := allocSite(t, a, 56)
		c := allocSite(t, a, 56)
		if bug {
			pokeBytes(b, headerOffset(), peekBytes(c, headerOffset(), 8))
		}
		a.Free(b)
		a.Free(c)
	}},
	{"leak at Close", hardened.Leak, true, 77, func(t *testing.T, a *hardened.Allocator, bug bool) {
		b := allocSite(t, a, 77)
		if !bug {
			a.Free(b)
		}
	}},
}

// TestMisuseCatalog runs every row twice: with the bug, expecting exactly
// one report of the row's kind naming the block; without, expecting none.
// skipPatterns is why tests of the canaries and poison skip under -asan.
const skipPatterns = "-asan builds write no canaries or poison: the shadow stops these writes at the access (TestAccessCatalog)"

// patternRow says whether the hardening layer's patterns are what catch
// row m (the rows whose accesses fault are caught by guard pages).
func patternRow(m misuse) bool {
	switch m.kind {
	case hardened.Overflow, hardened.Underflow, hardened.WriteAfterFree:
		return !strings.Contains(m.name, "faults")
	}
	return false
}

func TestMisuseCatalog(t *testing.T) {
	for _, m := range catalog {
		t.Run(m.name, func(t *testing.T) {
			if !hardened.Enabled && !m.release {
				t.Skip("needs -tags hardened")
			}
			if asanBuild && patternRow(m) {
				t.Skip(skipPatterns)
			}
			for _, bug := range []bool{false, true} {
				c := new(collector)
				a, err := hardened.New(hardened.Options{Seed: 11, OnReport: c.add, Redzone: 16})
				if err != nil {
					t.Fatal(err)
				}
				m.steps(t, a, bug)
				if err := a.Check(); err != nil && !bug {
					t.Errorf("Check after correct use: %v", err)
				}
				cerr := a.Close()
				reports := c.take()
				if !bug {
					for _, r := range reports {
						t.Errorf("correct use reported:\n%s", r)
					}
					if cerr != nil {
						t.Fatalf("Close after correct use: %v", cerr)
					}
					continue
				}
				if len(reports) == 0 {
					t.Fatalf("bug not detected (Close: %v)", cerr)
				}
				r := reports[0]
				if r.Kind != m.kind {
					t.Fatalf("got %v, want %v:\n%s", r.Kind, m.kind, r)
				}
				if m.size >= 0 && r.Size != m.size {
					t.Fatalf("report names a %d-byte block, want %d:\n%s", r.Size, m.size, r)
				}
				if m.kind != hardened.HeaderCorruption && len(reports) > 1 {
					t.Fatalf("%d reports, want 1; second:\n%s", len(reports), reports[1])
				}
				if hardened.Enabled && m.size >= 0 {
					if f := r.Alloc.TopFunction(); !strings.HasSuffix(f, ".allocSite") {
						t.Fatalf("allocation site %q, want allocSite:\n%s", f, r)
					}
				}
				if s := r.String(); !strings.Contains(s, m.kind.String()) || !strings.Contains(s, "SUMMARY") {
					t.Fatalf("report text lacks kind or summary:\n%s", s)
				}
			}
		})
	}
}

// TestRejectedBlockNeverReused: after a corrupted header is reported, the
// slot is withdrawn: no later allocation gets it.
func TestRejectedBlockNeverReused(t *testing.T) {
	c := new(collector)
	a, err := hardened.New(hardened.Options{Seed: 5, OnReport: c.add, Redzone: 16})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b := mustAlloc(t, a, 40)
	bad := addr(b)
	flip(b, headerOffset(), 1)
	a.Free(b)
	a.Free(b)
	if r := c.take(); len(r) != 2 || r[0].Kind != hardened.HeaderCorruption {
		t.Fatalf("reports: %v", r)
	}
	for range 5000 {
		x := mustAlloc(t, a, 40)
		if addr(x) == bad {
			t.Fatal("a slot whose free was rejected was handed out again")
		}
	}
	runtime.KeepAlive(b)
}

// TestFreeHeaderDamageReported: a free slot's header damaged while free
// (here one checksum bit, so its fields still match the next block's) is
// reported when the slot comes back, in every build: hardened builds
// verify the free header at Alloc and withdraw the slot; release builds
// re-seal a same-size slot's header from the free one (smallBorn), which
// keeps the damage for Free to find.
func TestFreeHeaderDamageReported(t *testing.T) {
	// One cache, so the slot comes straight back; no quarantine, so it
	// comes back at the next Alloc of its size in hardened builds too.
	a, c := newAllocWith(t, hardened.Options{QuarantineBytes: -1}, harness.Extra{Cache: func() int { return 0 }})
	b := mustAlloc(t, a, 56)
	bad := addr(b)
	a.Free(b)
	flip(b, headerOffset()+7, 0x01) // the checksum's top byte
	for range 4 {
		x := mustAlloc(t, a, 56)
		a.Free(x)
	}
	r := c.take()
	hdr := uintptr(int(bad) + headerOffset())
	if len(r) != 1 || r[0].Kind != hardened.HeaderCorruption || r[0].Addr != hdr {
		t.Fatalf("reports %v, want one header corruption at %#x", r, hdr)
	}
	// The slot is withdrawn, never handed out again; its header stays
	// damaged, and Close says so once more.
	if err := a.Close(); !errors.Is(err, hardened.HeaderCorruption) {
		t.Fatalf("Close: %v, want the header corruption again", err)
	}
	if r := c.take(); len(r) != 1 || r[0].Kind != hardened.HeaderCorruption || r[0].Addr != hdr {
		t.Fatalf("Close reported %v", r)
	}
	runtime.KeepAlive(b)
}
