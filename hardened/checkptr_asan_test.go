//go:build asan

package hardened_test

import (
	"bufio"
	"bytes"
	"os/exec"
	"regexp"
	"strings"
	"testing"
)

// TestAsanPairUninstrumented compiles this package as an -asan build does
// and reads its assembly. checkptr is on in every -asan build and costs a
// lookup in Go's heap per converted pointer; //go:nocheckptr turns it off
// but also makes a function impossible to inline while checkptr is on.
// So the functions of the Alloc+Free pair must not call checkptr (each
// that converts a pointer carries the pragma), and the small helpers they
// call on every pair must not be calls (none carries it). Either mistake
// slows the -asan pair without failing any other test.
func TestAsanPairUninstrumented(t *testing.T) {
	if testing.Short() {
		t.Skip("compiles the package")
	}
	const pkg = "github.com/hardalloc/hardalloc/hardened"
	out, err := exec.Command("go", "build", "-asan", "-gcflags="+pkg+"=-S", "-o", "/dev/null", pkg).CombinedOutput()
	if err != nil {
		t.Fatalf("go build -asan: %v\n%.2000s", err, out)
	}
	hot := regexp.MustCompile(`^` + regexp.QuoteMeta(pkg) + `\.(\(\*Allocator\)\.(Alloc|Free|smallBorn|smallDies|popFast|pushFast|popSlot|pushSlot|quarantineSmall|quarantineBatch|evict|armSmall|prefetchSlot|allocSeq)|asanSlotLive|asanSlotDead)$`)
	inlined := regexp.MustCompile(`\.(\(\*Allocator\)\.(checksum|regionSize|classRegion|pads|takeSeq|locate|slotAt|rec|releaseSlot)|restate|fields|sizeClass|loadHeader|hdrWord|publish)\(SB\)`)
	seen := map[string]bool{}
	var fn string
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		l := sc.Text()
		if f := strings.Fields(l); len(f) > 1 && f[1] == "STEXT" {
			fn = f[0]
			if hot.MatchString(fn) {
				seen[fn] = true
			}
			continue
		}
		if !hot.MatchString(fn) || !strings.Contains(l, "\tCALL\t") {
			continue
		}
		if strings.Contains(l, "runtime.checkptr") {
			t.Errorf("%s calls checkptr: %s", fn, strings.TrimSpace(l))
		}
		if inlined.MatchString(l) {
			t.Errorf("%s calls a helper that must inline: %s", fn, strings.TrimSpace(l))
		}
	}
	if len(seen) < 14 {
		t.Errorf("the assembly shows %d of the pair's 16 functions (%v): the listing changed shape", len(seen), seen)
	}
}
