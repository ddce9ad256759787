// Command suitetable prints scripts/arrow-suites.sh's tables from its
// output directory: per package, tests passed and failed with arrow's Go
// allocator and with hardalloc (release and hardened); the tests that
// fail only with hardalloc; every report other than a leak, by summary;
// and the leaks at Close grouped by allocation site; and, for each test
// that failed only with hardalloc, what its -asan run (hardened) says.
//
//	suitetable -pkgs "./arrow/memory ./arrow/array" DIR
//	suitetable -pkgs ... -plan FILE DIR   # the -asan runs to make: "pkg test" lines
package main

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

var variants = []string{"arrow", "hardalloc", "hardened"}

type event struct {
	Action, Package, Test, Output string
}

type frame struct{ Function, File string }

type site struct {
	Frames []frame `json:"frames"`
}

type report struct {
	Kind    string `json:"kind"`
	Size    *int   `json:"size"`
	Summary string `json:"summary"`
	Alloc   *site  `json:"alloc"`
}

// results of one variant's run of one package.
type results struct {
	pass, fail, skip int
	failed           map[string]bool
	buildFailed      bool
	// aborted is the test running when the test binary died (a fatal
	// error such as an unrecovered fault), with the error's first line.
	aborted, fatal string
	reports        []report
}

func key(v, pkg string) string {
	return v + "-" + strings.ReplaceAll(strings.TrimPrefix(pkg, "./"), "/", "_")
}

func load(dir, v, pkg string) (*results, error) {
	r := &results{failed: map[string]bool{}}
	f, err := os.Open(filepath.Join(dir, "test-"+key(v, pkg)+".json"))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<26)
	sawTest := false
	running := map[string]bool{}
	for sc.Scan() {
		var e event
		if json.Unmarshal(sc.Bytes(), &e) != nil {
			continue
		}
		if e.Action == "output" && r.fatal == "" && (strings.HasPrefix(e.Output, "fatal error:") || strings.HasPrefix(e.Output, "panic:")) {
			r.fatal = strings.TrimSpace(e.Output)
		}
		if e.Test != "" {
			switch e.Action {
			case "run":
				running[e.Test] = true
			case "pass", "fail", "skip":
				delete(running, e.Test)
			}
		}
		if e.Test == "" {
			if e.Action == "fail" && !sawTest {
				r.buildFailed = true
			}
			continue
		}
		sawTest = true
		switch e.Action {
		case "pass":
			r.pass++
		case "fail":
			r.fail++
			r.failed[e.Test] = true
		case "skip":
			r.skip++
		}
	}
	if r.fatal != "" {
		for t := range running { // the innermost test still running
			if r.aborted == "" || len(t) > len(r.aborted) {
				r.aborted = t
			}
		}
	}
	if rf, err := os.Open(filepath.Join(dir, "reports-"+key(v, pkg)+".jsonl")); err == nil {
		defer rf.Close()
		sc := bufio.NewScanner(rf)
		sc.Buffer(make([]byte, 1<<20), 1<<26)
		for sc.Scan() {
			var rep report
			if json.Unmarshal(sc.Bytes(), &rep) == nil {
				r.reports = append(r.reports, rep)
			}
		}
	}
	return r, sc.Err()
}

// top is a site's innermost frame, the function the report names.
func top(s *site) string {
	if s == nil || len(s.Frames) == 0 {
		return "(no site: release builds record none)"
	}
	return s.Frames[0].Function
}

func main() {
	pkgs := flag.String("pkgs", "", "the packages the script ran")
	plan := flag.String("plan", "", "write the -asan runs to make (failed only with hardalloc, top-level tests) here, and stop")
	flag.Parse()
	dir := flag.Arg(0)
	res := map[string]*results{}
	for _, p := range strings.Fields(*pkgs) {
		for _, v := range variants {
			r, err := load(dir, v, p)
			if err != nil {
				fmt.Fprintln(os.Stderr, err)
				os.Exit(1)
			}
			res[key(v, p)] = r
		}
	}
	if *plan != "" {
		var b strings.Builder
		for _, p := range strings.Fields(*pkgs) {
			seen := map[string]bool{}
			for _, v := range variants[1:] {
				r := res[key(v, p)]
				failed := maps.Clone(r.failed)
				if r.aborted != "" && res[key("arrow", p)].aborted == "" {
					failed[r.aborted] = true
				}
				for t := range failed {
					top, _, _ := strings.Cut(t, "/")
					if !res[key("arrow", p)].failed[t] && !seen[top] {
						seen[top] = true
						fmt.Fprintf(&b, "%s %s\n", p, top)
					}
				}
			}
		}
		if err := os.WriteFile(*plan, []byte(b.String()), 0o644); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		return
	}
	cell := func(r *results) string {
		if r.buildFailed {
			return "build failed"
		}
		if r.aborted != "" {
			return fmt.Sprintf("%d / %d, then died in %s (%s)", r.pass, r.fail, r.aborted, r.fatal)
		}
		return fmt.Sprintf("%d / %d", r.pass, r.fail)
	}
	fmt.Println("Tests passed / failed (go test -short; subtests counted), and hardalloc's reports (leaks at Close apart).")
	fmt.Println()
	fmt.Println("| package | arrow's allocator | hardalloc | hardalloc -tags hardened | reports (hardalloc / hardened) | leaked blocks (hardalloc / hardened) |")
	fmt.Println("|---|---:|---:|---:|---:|---:|")
	for _, p := range strings.Fields(*pkgs) {
		a, h, hh := res[key("arrow", p)], res[key("hardalloc", p)], res[key("hardened", p)]
		count := func(r *results, leak bool) int {
			n := 0
			for _, rep := range r.reports {
				if (rep.Kind == "memory-leak") == leak {
					n++
				}
			}
			return n
		}
		fmt.Printf("| %s | %s | %s | %s | %d / %d | %d / %d |\n", strings.TrimPrefix(p, "./"), cell(a), cell(h), cell(hh),
			count(h, false), count(hh, false), count(h, true), count(hh, true))
	}
	for _, v := range variants[1:] {
		fmt.Printf("\n### Tests that fail only with hardalloc (%s)\n\n", v)
		any := false
		for _, p := range strings.Fields(*pkgs) {
			var only []string
			for t := range res[key(v, p)].failed {
				if !res[key("arrow", p)].failed[t] {
					only = append(only, t)
				}
			}
			sort.Strings(only)
			for _, t := range only {
				fmt.Printf("- %s: %s\n", strings.TrimPrefix(p, "./"), t)
				any = true
			}
		}
		if !any {
			fmt.Println("none")
		}
	}
	for _, v := range variants[1:] {
		fmt.Printf("\n### Reports other than leaks (%s), by summary\n\n", v)
		n := map[string]int{}
		for _, p := range strings.Fields(*pkgs) {
			for _, rep := range res[key(v, p)].reports {
				if rep.Kind != "memory-leak" {
					n[strings.TrimPrefix(p, "./")+": "+rep.Summary]++
				}
			}
		}
		printCounts(n, 40)
	}
	for _, v := range variants[1:] {
		fmt.Printf("\n### Leaks at Close (%s), by allocation site\n\n", v)
		n, bytes := map[string]int{}, map[string]int{}
		for _, p := range strings.Fields(*pkgs) {
			for _, rep := range res[key(v, p)].reports {
				if rep.Kind == "memory-leak" {
					k := strings.TrimPrefix(p, "./") + ": " + top(rep.Alloc)
					n[k]++
					if rep.Size != nil {
						bytes[k] += *rep.Size
					}
				}
			}
		}
		type row struct {
			k    string
			n, b int
		}
		var rows []row
		for k := range n {
			rows = append(rows, row{k, n[k], bytes[k]})
		}
		sort.Slice(rows, func(i, j int) bool { return rows[i].b > rows[j].b || rows[i].b == rows[j].b && rows[i].k < rows[j].k })
		if len(rows) == 0 {
			fmt.Println("none")
			continue
		}
		fmt.Println("| package: allocation site | blocks | bytes |")
		fmt.Println("|---|---:|---:|")
		for i, r := range rows {
			if i == 25 {
				fmt.Printf("| (%d more sites) | | |\n", len(rows)-i)
				break
			}
			fmt.Printf("| %s | %d | %d |\n", r.k, r.n, r.b)
		}
	}
	asanRuns(dir)
}

// asanRuns prints, for each -asan run the script made, what ASan and
// hardalloc said: the access and the block's allocation site.
func asanRuns(dir string) {
	files, _ := filepath.Glob(filepath.Join(dir, "asan-*.txt"))
	if len(files) == 0 {
		return
	}
	sort.Strings(files)
	fmt.Println("\n### The tests that fail only with hardalloc, under -asan -tags hardened")
	fmt.Println()
	fmt.Println("| package: test | AddressSanitizer | hardalloc | the access |")
	fmt.Println("|---|---|---|---|")
	for _, f := range files {
		b, _ := os.ReadFile(f)
		lines := strings.Split(string(b), "\n")
		var asan, hard, access string
		for i, l := range lines {
			switch {
			case asan == "" && strings.HasPrefix(l, "SUMMARY: AddressSanitizer: "):
				asan, _, _ = strings.Cut(strings.TrimPrefix(l, "SUMMARY: AddressSanitizer: "), " (")
			case hard == "" && strings.HasPrefix(l, "SUMMARY: hardalloc: "):
				hard = strings.TrimPrefix(l, "SUMMARY: hardalloc: ")
			case access == "" && (strings.HasPrefix(l, "READ of size") || strings.HasPrefix(l, "WRITE of size")) &&
				strings.HasSuffix(l, "by:") && i+1 < len(lines):
				access = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(lines[i+1]), "#0"))
			}
		}
		name := strings.TrimSuffix(strings.TrimPrefix(filepath.Base(f), "asan-"), ".txt")
		if asan == "" {
			asan = "nothing (the test failed without a bad access, or passed)"
		}
		fmt.Printf("| %s | %s | %s | %s |\n", name, asan, hard, access)
	}
}

func printCounts(n map[string]int, limit int) {
	if len(n) == 0 {
		fmt.Println("none")
		return
	}
	var ks []string
	for k := range n {
		ks = append(ks, k)
	}
	sort.Slice(ks, func(i, j int) bool { return n[ks[i]] > n[ks[j]] || n[ks[i]] == n[ks[j]] && ks[i] < ks[j] })
	for i, k := range ks {
		if i == limit {
			fmt.Printf("- (%d more)\n", len(ks)-i)
			break
		}
		fmt.Printf("- %d× %s\n", n[k], k)
	}
}
