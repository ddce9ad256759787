// Command sarif turns the nightly fuzz campaign's unique crashes into a
// SARIF 2.1.0 log (for code-scanning views) and a JSON list, one entry per
// crash id, each with the failure as go test printed it. It reads
// CRASHERS/<id>/{summary.txt,report.txt} as scripts/nightly-fuzz.sh and
// scripts/fuzz.sh write them.
//
//	go run ./scripts/sarif -crashers .fuzzwork/crashers -sarif crashes.sarif -json crashes.json
package main

import (
	"encoding/json"
	"flag"
	"log"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
)

type crash struct {
	ID      string   `json:"id"`
	Summary string   `json:"summary"`
	Kind    string   `json:"kind"`
	File    string   `json:"file,omitempty"` // the first frame of the report with a source line
	Line    int      `json:"line,omitempty"`
	Inputs  []string `json:"inputs"`
	// Report is the failure as go test printed it (excerpt): the
	// summary names the crash, this is what a reader acts on.
	Report string `json:"report,omitempty"`
}

// maxReport bounds a crash's report excerpt.
const maxReport = 16 << 10

// excerpt returns the failure out of a run's output: from the first
// "--- FAIL" line to the "FAIL" that ends it, or the last 60 lines when
// there is none (a crash that killed the process), at most maxReport
// bytes.
func excerpt(out string) string {
	lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
	from, to := -1, len(lines)
	for i, l := range lines {
		if from < 0 && strings.HasPrefix(strings.TrimSpace(l), "--- FAIL") {
			from = i
		} else if from >= 0 && l == "FAIL" {
			to = i + 1
			break
		}
	}
	if from < 0 {
		from = max(0, len(lines)-60)
	}
	r := strings.Join(lines[from:to], "\n")
	if len(r) > maxReport {
		r = r[:maxReport] + "\n[...]"
	}
	return r
}

var (
	frameRE = regexp.MustCompile(`^\s+(\S+\.go):(\d+)`)
	kindRE  = regexp.MustCompile(`SUMMARY: hardalloc: ([a-z-]+)`)
)

func main() {
	dir := flag.String("crashers", ".fuzzwork/crashers", "the nightly script's crasher directory")
	sarifOut := flag.String("sarif", "", "write a SARIF log here")
	jsonOut := flag.String("json", "", "write the crash list as JSON here")
	root := flag.String("root", ".", "source root that file paths are made relative to")
	flag.Parse()
	ids, _ := filepath.Glob(filepath.Join(*dir, "*", "summary.txt"))
	sort.Strings(ids)
	absRoot, _ := filepath.Abs(*root)
	var crashes []crash
	for _, s := range ids {
		d := filepath.Dir(s)
		sum, _ := os.ReadFile(s)
		c := crash{ID: filepath.Base(d), Summary: strings.TrimSpace(string(sum)), Kind: "fuzz-failure", Inputs: []string{}}
		if m := kindRE.FindStringSubmatch(c.Summary); m != nil {
			c.Kind = m[1]
		}
		if out, err := os.ReadFile(filepath.Join(d, "report.txt")); err == nil {
			c.Report = excerpt(string(out))
			for _, l := range strings.Split(string(out), "\n") {
				if m := frameRE.FindStringSubmatch(l); m != nil && !strings.Contains(m[1], "/usr/local/go/") {
					c.File, _ = filepath.Rel(absRoot, m[1])
					if strings.HasPrefix(c.File, "..") {
						c.File = m[1]
					}
					c.Line, _ = strconv.Atoi(m[2])
					break
				}
			}
		}
		ins, _ := filepath.Glob(filepath.Join(d, "Fuzz*"))
		for _, in := range ins {
			c.Inputs = append(c.Inputs, filepath.Base(in))
		}
		crashes = append(crashes, c)
	}
	if *jsonOut != "" {
		write(*jsonOut, crashes)
	}
	if *sarifOut != "" {
		write(*sarifOut, toSARIF(crashes))
	}
	log.Printf("%d unique crashes", len(crashes))
}

func toSARIF(crashes []crash) any {
	type obj = map[string]any
	rules := map[string]bool{}
	var ruleList, results []obj
	for _, c := range crashes {
		if !rules[c.Kind] {
			rules[c.Kind] = true
			ruleList = append(ruleList, obj{"id": c.Kind, "shortDescription": obj{"text": "hardalloc: " + c.Kind}})
		}
		msg := obj{"text": c.Summary + " (crash " + c.ID + ")"}
		if c.Report != "" {
			msg["markdown"] = c.Summary + " (crash " + c.ID + ")\n\n```\n" + c.Report + "\n```"
		}
		r := obj{"ruleId": c.Kind, "level": "error", "message": msg,
			"partialFingerprints": obj{"hardallocCrash/v1": c.ID}}
		if c.File != "" {
			r["locations"] = []obj{{"physicalLocation": obj{
				"artifactLocation": obj{"uri": filepath.ToSlash(c.File)},
				"region":           obj{"startLine": c.Line},
			}}}
		}
		results = append(results, r)
	}
	if results == nil {
		results = []obj{}
	}
	return obj{
		"version": "2.1.0",
		"$schema": "https://json.schemastore.org/sarif-2.1.0.json",
		"runs": []obj{{
			"tool":    obj{"driver": obj{"name": "hardalloc-fuzz", "informationUri": "https://github.com/hardalloc/hardalloc", "rules": ruleList}},
			"results": results,
		}},
	}
}

func write(path string, v any) {
	data, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		log.Fatal(err)
	}
	if err := os.WriteFile(path, append(data, '\n'), 0o644); err != nil {
		log.Fatal(err)
	}
}
