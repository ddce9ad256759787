package hardened_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/hardalloc/hardalloc/internal/asangen"
)

// The -asan copies of the hardening layer's and the quarantine's files
// are what internal/asangen makes of the originals (go generate).
func TestAsanCopiesUpToDate(t *testing.T) {
	for _, dir := range []string{".", "../quarantine"} {
		copies, err := filepath.Glob(filepath.Join(dir, asangen.Prefix+"*.go"))
		if err != nil || len(copies) == 0 {
			t.Fatalf("no -asan copies in %s (%v)", dir, err)
		}
		for _, cp := range copies {
			name := filepath.Base(cp)[len(asangen.Prefix):]
			src, err := os.ReadFile(filepath.Join(dir, name))
			if err != nil {
				t.Fatal(err)
			}
			got, err := os.ReadFile(cp)
			if err != nil {
				t.Fatal(err)
			}
			if ok, err := asangen.Same(src, got, name); err != nil || !ok {
				t.Errorf("%s is not what asangen makes of %s (%v): run go generate ./hardened ./quarantine", cp, name, err)
			}
		}
	}
}
