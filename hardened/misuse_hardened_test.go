//go:build hardened || asan

package hardened_test

import (
	"testing"

	"github.com/hardalloc/hardalloc/hardened"
)

var sink byte

// The catalog rows only the hardening layer detects.
func init() {
	catalog = append(catalog,
		overflowBy1("overflow by 1 small", 40),
		misuse{"overflow by 8 small", hardened.Overflow, false, 40, func(t *testing.T, a *hardened.Allocator, bug bool) {
			b := allocSite(t, a, 40)
			if bug {
				pokeBytes(b, 40, []byte("overflow"))
			}
			a.Free(b)
		}},
		misuse{"overflow inside size-class slack", hardened.Overflow, false, 33, func(t *testing.T, a *hardened.Allocator, bug bool) {
			b := allocSite(t, a, 33) // the class holds more: the slack is canary too
			if bug {
				flip(b, 60, 0xff)
			}
			a.Free(b)
		}},
		misuse{"overflow found by Check", hardened.Overflow, false, 100, func(t *testing.T, a *hardened.Allocator, bug bool) {
			b := allocSite(t, a, 100)
			if bug {
				flip(b, 101, 0xff)
				a.Check()
				return // the block is left live (a leak is not the point here)
			}
			a.Free(b)
		}},
		overflowBy1("overflow by 1 of a 64 KiB block (small)", 64<<10),
		overflowBy1("overflow by 1 of a 128 KiB block (small)", 128<<10),
		misuse{"overflow by 1 large (page slack)", hardened.Overflow, false, 200_000, func(t *testing.T, a *hardened.Allocator, bug bool) {
			b := allocSite(t, a, 200_000)
			if bug {
				flip(b, 200_000, 0xff)
			}
			a.Free(b)
		}},
		misuse{"overflow into a large block's guard page (faults)", hardened.Overflow, false, 200_000, func(t *testing.T, a *hardened.Allocator, bug bool) {
			b := allocSite(t, a, 200_000)
			if bug {
				guard := (200_000 + 16 + 4095) &^ 4095
				a.CatchFault(func() { poke(b, guard, 1) })
			}
			a.Free(b)
		}},
		misuse{"underflow large (guard page faults)", hardened.Underflow, false, 170_000, func(t *testing.T, a *hardened.Allocator, bug bool) {
			b := allocSite(t, a, 170_000)
			if bug {
				a.CatchFault(func() { sink = peek(b, -1) })
			}
			a.Free(b)
		}},
		misuse{"write after free small, found at reuse", hardened.WriteAfterFree, false, 48, func(t *testing.T, a *hardened.Allocator, bug bool) {
			b := allocSite(t, a, 48)
			a.Free(b)
			if bug {
				flip(b, 3, 1)
			}
			for range 100_000 { // other alloc/free pairs push it out of quarantine
				x := mustAlloc(t, a, 48)
				a.Free(x)
			}
		}},
		misuse{"write after free of a 64 KiB block, found at reuse", hardened.WriteAfterFree, false, 64 << 10, func(t *testing.T, a *hardened.Allocator, bug bool) {
			b := allocSite(t, a, 64<<10)
			a.Free(b)
			if bug {
				flip(b, 40_000, 1)
			}
			for range 200 { // 4 MiB of quarantine holds 56 such blocks
				x := mustAlloc(t, a, 64<<10)
				a.Free(x)
			}
		}},
		misuse{"write after free of a 128 KiB block, found by Check", hardened.WriteAfterFree, false, 128 << 10, func(t *testing.T, a *hardened.Allocator, bug bool) {
			b := allocSite(t, a, 128<<10)
			a.Free(b)
			if bug {
				flip(b, 128<<10-1, 1)
			}
			a.Check()
		}},
		misuse{"write after free small, found by Check", hardened.WriteAfterFree, false, 200, func(t *testing.T, a *hardened.Allocator, bug bool) {
			b := allocSite(t, a, 200)
			a.Free(b)
			if bug {
				flip(b, 199, 1)
			}
			a.Check()
		}},
		misuse{"write after free large (faults)", hardened.UseAfterFree, false, 300_000, func(t *testing.T, a *hardened.Allocator, bug bool) {
			b := allocSite(t, a, 300_000)
			a.Free(b)
			if bug {
				a.CatchFault(func() { poke(b, 5, 1) })
			}
		}},
		misuse{"read after free large (faults)", hardened.UseAfterFree, false, 300_000, func(t *testing.T, a *hardened.Allocator, bug bool) {
			b := allocSite(t, a, 300_000)
			a.Free(b)
			if bug {
				a.CatchFault(func() { sink = peek(b, 5000) })
			}
		}},
		misuse{"access through Alloc(0) faults", hardened.Overflow, false, 0, func(t *testing.T, a *hardened.Allocator, bug bool) {
			b := allocSite(t, a, 0)
			if bug {
				a.CatchFault(func() { sink = peek(b, 0) })
			}
			a.Free(b)
		}},
		misuse{"leak of Alloc(0) at Close", hardened.Leak, false, 0, func(t *testing.T, a *hardened.Allocator, bug bool) {
			b := allocSite(t, a, 0)
			if !bug {
				a.Free(b)
			}
		}},
		misuse{"realloc of a freed Alloc(0)", hardened.UseAfterFree, false, 0, func(t *testing.T, a *hardened.Allocator, bug bool) {
			b := allocSite(t, a, 0)
			a.Free(b)
			if bug {
				a.Realloc(b, 10)
			}
		}},
		misuse{"double free of Alloc(0)", hardened.DoubleFree, false, 0, func(t *testing.T, a *hardened.Allocator, bug bool) {
			b := allocSite(t, a, 0)
			a.Free(b)
			if bug {
				a.Free(b)
			}
		}},
	)
}

// overflowBy1 is the catalog row of a NUL written one byte past an
// n-byte block.
func overflowBy1(name string, n int) misuse {
	return misuse{name, hardened.Overflow, false, n, func(t *testing.T, a *hardened.Allocator, bug bool) {
		b := allocSite(t, a, n)
		if bug {
			poke(b, n, 0)
		}
		a.Free(b)
	}}
}
