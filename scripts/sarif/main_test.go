package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// A crash directory as nightly-fuzz.sh writes it becomes one SARIF result
// at the report's first source frame, keyed by the crash id.
func TestToSARIF(t *testing.T) {
	dir := t.TempDir()
	d := filepath.Join(dir, "0123abcd")
	os.MkdirAll(d, 0o755)
	os.WriteFile(filepath.Join(d, "summary.txt"), []byte("SUMMARY: hardalloc: double-free of block allocated in x.f\n"), 0o644)
	os.WriteFile(filepath.Join(d, "report.txt"), []byte("fuzz: elapsed: 3s\n--- FAIL: FuzzX (3.00s)\n    fuzz: op 2: ...\n    #0 runtime.x\n        /usr/local/go/src/runtime/x.go:1\n    #1 x.f\n        /src/x/f.go:17\nFAIL\nexit status 1\n"), 0o644)
	os.Args = []string{"sarif", "-crashers", dir, "-sarif", filepath.Join(dir, "out.sarif"), "-json", filepath.Join(dir, "out.json"), "-root", "/src"}
	main()
	raw, err := os.ReadFile(filepath.Join(dir, "out.sarif"))
	if err != nil {
		t.Fatal(err)
	}
	var log struct {
		Runs []struct {
			Results []struct {
				RuleID    string `json:"ruleId"`
				Locations []struct {
					PhysicalLocation struct {
						ArtifactLocation struct{ URI string }    `json:"artifactLocation"`
						Region           struct{ StartLine int } `json:"region"`
					} `json:"physicalLocation"`
				} `json:"locations"`
				Fingerprints map[string]string `json:"partialFingerprints"`
			} `json:"results"`
		} `json:"runs"`
	}
	if err := json.Unmarshal(raw, &log); err != nil {
		t.Fatal(err)
	}
	r := log.Runs[0].Results
	if len(r) != 1 || r[0].RuleID != "double-free" || r[0].Fingerprints["hardallocCrash/v1"] != "0123abcd" ||
		r[0].Locations[0].PhysicalLocation.ArtifactLocation.URI != "x/f.go" || r[0].Locations[0].PhysicalLocation.Region.StartLine != 17 {
		t.Fatalf("SARIF:\n%s", raw)
	}
	// The failure itself travels with it, from --- FAIL to FAIL.
	raw, err = os.ReadFile(filepath.Join(dir, "out.json"))
	if err != nil {
		t.Fatal(err)
	}
	var list []struct{ Report string }
	if err := json.Unmarshal(raw, &list); err != nil {
		t.Fatal(err)
	}
	if want := "--- FAIL: FuzzX (3.00s)\n    fuzz: op 2: ...\n    #0 runtime.x\n        /usr/local/go/src/runtime/x.go:1\n    #1 x.f\n        /src/x/f.go:17\nFAIL"; len(list) != 1 || list[0].Report != want {
		t.Fatalf("JSON report %q, want %q", list, want)
	}
}

// A run that died without go test's FAIL block (a fatal error, an ASan
// abort) keeps its last 60 lines; a huge report is cut at maxReport.
func TestExcerptFallback(t *testing.T) {
	var out []string
	for i := range 100 {
		out = append(out, fmt.Sprint("line ", i))
	}
	got := excerpt(strings.Join(out, "\n") + "\n")
	if want := strings.Join(out[40:], "\n"); got != want {
		t.Fatalf("excerpt:\n%s\nwant the last 60 lines", got)
	}
	if got := excerpt("--- FAIL: x\n" + strings.Repeat("y", 2*maxReport)); len(got) != maxReport+len("\n[...]") {
		t.Fatalf("excerpt of a huge report is %d bytes", len(got))
	}
}
