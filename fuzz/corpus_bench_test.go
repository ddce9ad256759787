package fuzz

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// BenchmarkCorpus runs every input of a go test -fuzz corpus directory
// (HARDALLOC_CORPUS) once per iteration: the per-exec cost on inputs the
// fuzzer actually keeps, not a synthetic program.
func BenchmarkCorpus(b *testing.B) {
	dir := os.Getenv("HARDALLOC_CORPUS")
	if dir == "" {
		b.Skip("set HARDALLOC_CORPUS to a fuzz corpus directory")
	}
	files, _ := filepath.Glob(filepath.Join(dir, "*"))
	var progs []Program
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			b.Fatal(err)
		}
		lines := strings.Split(string(raw), "\n")
		if len(lines) < 2 || !strings.HasPrefix(lines[1], "[]byte(") {
			continue
		}
		s, err := strconv.Unquote(strings.TrimSuffix(strings.TrimPrefix(lines[1], "[]byte("), ")"))
		if err != nil {
			continue
		}
		p := Decode([]byte(s), MixAllocFree)
		progs = append(progs, p)
	}
	b.ReportMetric(float64(len(progs)), "inputs")
	for b.Loop() {
		for _, p := range progs {
			if err := Run(p, Options(p)); err != nil {
				b.Fatal(err)
			}
		}
	}
}
