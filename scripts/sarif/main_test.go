package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
)

// A crash directory as nightly-fuzz.sh writes it becomes one SARIF result
// at the report's first source frame, keyed by the crash id.
func TestToSARIF(t *testing.T) {
	dir := t.TempDir()
	d := filepath.Join(dir, "0123abcd")
	os.MkdirAll(d, 0o755)
	os.WriteFile(filepath.Join(d, "summary.txt"), []byte("SUMMARY: hardalloc: double-free of block allocated in x.f\n"), 0o644)
	os.WriteFile(filepath.Join(d, "report.txt"), []byte("fuzz: op 2: ...\n    #0 runtime.x\n        /usr/local/go/src/runtime/x.go:1\n    #1 x.f\n        /src/x/f.go:17\n"), 0o644)
	os.Args = []string{"sarif", "-crashers", dir, "-sarif", filepath.Join(dir, "out.sarif"), "-root", "/src"}
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
}
