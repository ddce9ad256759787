package hardened_test

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/hardalloc/hardalloc/hardened"
)

//go:noinline
func freeAgain(a *hardened.Allocator, b []byte) { a.Free(b) }

// Every report names the call that caught the bug, with OnReport set too:
// a double free's second Free, in every build.
func TestReportCaught(t *testing.T) {
	a, col := newAlloc(t, hardened.Options{})
	b := mustAlloc(t, a, 40)
	a.Free(b)
	freeAgain(a, b)
	rs := col.take()
	if len(rs) != 1 || rs[0].Kind != hardened.DoubleFree {
		t.Fatalf("reports: %v", rs)
	}
	r := rs[0]
	if top := r.Caught.TopFunction(); !strings.HasSuffix(top, "hardened_test.freeAgain") {
		t.Errorf("Caught's top frame is %q, want freeAgain\n%s", top, r)
	}
	if s := r.String(); !strings.Contains(s, "freed again (Free) by goroutine") || !strings.Contains(s, "caught_test.go") {
		t.Errorf("the report does not show the second Free:\n%s", s)
	}
	var j struct {
		Caught struct{ Frames []struct{ Function string } }
	}
	raw, _ := json.Marshal(r)
	if json.Unmarshal(raw, &j) != nil || len(j.Caught.Frames) == 0 || !strings.HasSuffix(j.Caught.Frames[0].Function, "freeAgain") {
		t.Errorf("JSON has no caught site: %s", raw)
	}
}
