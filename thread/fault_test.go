//go:build faultinject

package thread_test

import (
	"strings"
	"testing"

	"github.com/hardalloc/hardalloc/hardened"
	"github.com/hardalloc/hardalloc/thread"
)

// The seed's bug, reintroduced three ways, must be reported with the right
// kind and with the capsule's sites naming this package's functions.
func TestInjectedCapsuleBugsAreCaught(t *testing.T) {
	tests := []struct {
		fault   thread.Fault
		kind    hardened.Kind
		release bool // caught by the always-on checks too
		detach  bool // owner detaches before the worker ends
	}{
		{thread.FaultWorkerFrees, hardened.WriteAfterFree, false, false},
		{thread.FaultDoubleFree, hardened.DoubleFree, true, false},
		{thread.FaultLateUnlock, hardened.WriteAfterFree, false, true},
	}
	defer thread.SetFault(thread.FaultNone)
	for _, tt := range tests {
		t.Run(strings.TrimPrefix(tt.kind.String(), ""), func(t *testing.T) {
			if !hardened.Enabled && !tt.release {
				t.Skip("needs -tags hardened")
			}
			thread.SetFault(tt.fault)
			a, c := newAlloc(t, hardened.Options{})
			defer a.Close()
			exited := make(chan struct{})
			release := make(chan struct{})
			th, err := thread.Start(a, func() error { <-release; return nil }, thread.OnExit(func() { close(exited) }))
			if err != nil {
				t.Fatal(err)
			}
			if tt.detach {
				th.Detach()
				close(release)
				<-exited
			} else {
				close(release)
				<-exited // the worker is done (and, with the bug, has freed)
				th.Join()
			}
			a.Check()
			got := c.take()
			if len(got) == 0 {
				t.Fatalf("fault %d not detected", tt.fault)
			}
			r := got[0]
			if r.Kind != tt.kind {
				t.Fatalf("got %v, want %v:\n%s", r.Kind, tt.kind, r)
			}
			if hardened.Enabled {
				if f := r.Alloc.TopFunction(); !strings.Contains(f, "/thread.") {
					t.Fatalf("allocation site %q is not in package thread:\n%s", f, r)
				}
				if f := r.Free.TopFunction(); !strings.Contains(f, "/thread.") {
					t.Fatalf("first free site %q is not in package thread:\n%s", f, r)
				}
			}
			t.Logf("detected:\n%s", r)
		})
	}
}
