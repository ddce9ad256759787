package hardened_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/hardalloc/hardalloc/hardened"
)

// panicked runs fn and returns the *hardened.Error it panicked with, or nil.
func panicked(t *testing.T, fn func()) (e *hardened.Error) {
	t.Helper()
	defer func() {
		v := recover()
		if v == nil {
			return
		}
		var ok bool
		if e, ok = v.(*hardened.Error); !ok {
			t.Fatalf("panic with %T (%v), want *hardened.Error", v, v)
		}
	}()
	fn()
	return nil
}

// newPrinting returns an allocator with the default report handler, its
// output captured; the caller closes it.
func newPrinting(t *testing.T, seed uint64) (*hardened.Allocator, *bytes.Buffer) {
	t.Helper()
	out := new(bytes.Buffer)
	a, err := hardened.New(hardened.Options{Seed: seed, ReportOutput: out})
	if err != nil {
		t.Fatal(err)
	}
	return a, out
}

// With OnReport nil the whole report is printed before the panic, and
// the panic value is still the *Error of that report.
func TestDefaultHandlerPrintsReport(t *testing.T) {
	a, out := newPrinting(t, 3)
	defer a.Close()
	b := mustAlloc(t, a, 40)
	a.Free(b)
	e := panicked(t, func() { a.Free(b) })
	if e == nil || !errors.Is(e, hardened.DoubleFree) {
		t.Fatalf("second Free: panic %v, want a double-free *Error", e)
	}
	got := out.String()
	if got != e.Report.String() {
		t.Fatalf("printed:\n%s\nwant the report's String:\n%s", got, e.Report.String())
	}
	for _, want := range []string{"==hardalloc== ERROR: double-free", "40-byte block", "SUMMARY: hardalloc: double-free of "} {
		if !strings.Contains(got, want) {
			t.Errorf("printed report lacks %q:\n%s", want, got)
		}
	}
	if hardened.Enabled && !strings.Contains(got, "allocated by goroutine") {
		t.Errorf("hardened report lacks the allocation site:\n%s", got)
	}
	// The allocator is usable after the report.
	c, err := a.Alloc(40)
	if err != nil {
		t.Fatal(err)
	}
	a.Free(c)
}

// Close with OnReport nil prints each leak and a summary line, and still
// returns them; io.Discard-like outputs keep it quiet.
func TestClosePrintsLeaks(t *testing.T) {
	a, out := newPrinting(t, 4)
	for _, n := range []int{1, 100, 200 << 10} {
		if _, err := a.Alloc(n); err != nil {
			t.Fatal(err)
		}
	}
	err := a.Close()
	if !errors.Is(err, hardened.Leak) {
		t.Fatalf("Close: %v, want leaks", err)
	}
	got := out.String()
	if n := strings.Count(got, "==hardalloc== ERROR: memory-leak"); n != 3 {
		t.Errorf("printed %d leak reports, want 3:\n%s", n, got)
	}
	for _, want := range []string{"1 byte still allocated at Close", "100 bytes still allocated",
		"SUMMARY: hardalloc: 204901 bytes leaked in 3 allocations at Close"} {
		if !strings.Contains(got, want) {
			t.Errorf("Close output lacks %q:\n%s", want, got)
		}
	}
}

// A user-set OnReport receives the leaks instead: nothing is printed.
func TestCloseWithHandlerPrintsNothing(t *testing.T) {
	var out bytes.Buffer
	var n int
	a, err := hardened.New(hardened.Options{ReportOutput: &out, OnReport: func(*hardened.Report) { n++ }})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.Alloc(8); err != nil {
		t.Fatal(err)
	}
	if err := a.Close(); !errors.Is(err, hardened.Leak) {
		t.Fatalf("Close: %v, want a leak", err)
	}
	if n != 1 || out.Len() != 0 {
		t.Fatalf("OnReport got %d reports, output %q; want 1 and nothing printed", n, out.String())
	}
}

func TestOpErrorMessages(t *testing.T) {
	a, err := hardened.New(hardened.Options{ReportOutput: &bytes.Buffer{}})
	if err != nil {
		t.Fatal(err)
	}
	_, e1 := a.AllocAligned(100, 3)
	_, e2 := a.Alloc(-1)
	a.Close()
	e3 := a.Close()
	_, e4 := a.Alloc(4096)
	for _, c := range []struct {
		err  error
		want string
	}{
		{e1, "hardalloc: AllocAligned(100, 3): invalid alignment"},
		{e2, "hardalloc: Alloc(-1): invalid size"},
		{e3, "hardalloc: Close: allocator is closed"},
		{e4, "hardalloc: Alloc(4096): allocator is closed"},
	} {
		if c.err == nil || c.err.Error() != c.want {
			t.Errorf("got %v, want %q", c.err, c.want)
		}
	}
}

// A report marshals to the README's JSON schema.
func TestReportJSON(t *testing.T) {
	var got *hardened.Report
	a, err := hardened.New(hardened.Options{Seed: 6, OnReport: func(r *hardened.Report) { got = r }})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b := mustAlloc(t, a, 24)
	a.Free(b)
	a.Free(b)
	if got == nil {
		t.Fatal("no report")
	}
	data, err := json.Marshal(got)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(data, &m); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{"kind": "double-free", "op": "Free", "size": float64(24), "offset": float64(0),
		"summary": got.Summary(), "addr": fmt.Sprintf("%#x", got.Addr), "block": fmt.Sprintf("%#x", got.Block)}
	for k, v := range want {
		if m[k] != v {
			t.Errorf("%s = %v, want %v (%s)", k, m[k], v, data)
		}
	}
	if hardened.Enabled {
		for _, k := range []string{"alloc", "free"} {
			s, _ := m[k].(map[string]any)
			frames, _ := s["frames"].([]any)
			if len(frames) == 0 || s["seq"] == nil {
				t.Errorf("%s site missing or without frames: %s", k, data)
			}
		}
	} else if m["alloc"] != nil {
		t.Errorf("release report has an alloc site: %s", data)
	}
}

// Release builds record no stacks, so a live profile cannot exist there:
// New says so instead of leaving the profile silently empty.
func TestProfileNameNeedsHardened(t *testing.T) {
	if hardened.Enabled {
		t.Skip("hardened builds have the profile (TestLiveProfile)")
	}
	_, err := hardened.New(hardened.Options{ProfileName: "hardalloc.test.release"})
	if err == nil || !strings.Contains(err.Error(), "-tags hardened") {
		t.Fatalf("New with ProfileName in a release build: %v", err)
	}
}
