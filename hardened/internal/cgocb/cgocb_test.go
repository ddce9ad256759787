//go:build cgo && amd64

package cgocb_test

import (
	"testing"

	"github.com/hardalloc/hardalloc/hardened"
	"github.com/hardalloc/hardalloc/hardened/internal/cgocb"
)

// TestAllocFromCgoCallback: allocations and frees made from a cgo callback
// record their sites (hardened builds, 64 frames: more than the Go stack
// holds) without following the C frame pointer below the callback.
func TestAllocFromCgoCallback(t *testing.T) {
	a, err := hardened.New(hardened.Options{Seed: 1, StackDepth: 64})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	cgocb.Run(func() {
		for n := range 64 {
			b, err := a.Alloc(n * 16)
			if err != nil {
				t.Error(err)
				return
			}
			a.Free(b)
		}
	})
	if s := a.Stats(); s.LiveBlocks != 0 {
		t.Fatalf("%d live blocks", s.LiveBlocks)
	}
}
