package hardened_test

import (
	"os/exec"
	"regexp"
	"testing"

	"github.com/hardalloc/hardalloc/hardened"
)

// TestFastPathInlines holds the functions Alloc's and Free's fast paths
// call within the compiler's inlining budget: over it, each becomes a
// call on every operation, and nothing else would say so (locate: 3% of
// the release pair).
func TestFastPathInlines(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the package again")
	}
	gobin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go command")
	}
	tags := "" // release builds; hardened ones too when this test is one
	if hardened.Enabled {
		tags = "hardened"
	}
	out, err := exec.Command(gobin, "build", "-tags", tags, "-gcflags=-m", "-o", "/dev/null", ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	for _, fn := range []string{`\(\*Allocator\)\.locate`, `\(\*cache\)\.pop`, `\(\*cache\)\.push`, `\(\*Allocator\)\.checksum`, `sizeClass`, `restate`,
		`\(\*Allocator\)\.mirrored`, `\(\*Allocator\)\.freeWordOK`, `\(\*Allocator\)\.publishLive`} {
		if !regexp.MustCompile(`(?m)can inline ` + fn + `$`).Match(out) {
			t.Errorf("%s no longer inlines (go build -gcflags=-m=2 says why)", fn)
		}
	}
}
