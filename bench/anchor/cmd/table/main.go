// Command table prints bench/anchor's tables from its raw results: the
// median over rounds of every allocator's CPU ns per pair and per mixed
// step and its RSS over live bytes, then every row's ratio to a base
// allocator, computed within each round (both ran minutes apart at most,
// under the same load) and summarised as the median and range over
// rounds.
//
//	table [-base hardened_malloc] raw.txt
//
// Raw lines: "R LABEL ROUND pair N NS" and "R LABEL ROUND mixed NS RSS".
package main

import (
	"bufio"
	"flag"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
)

var cols = []string{"16", "64", "256", "4096", "65536", "mixed", "rss"}

var heads = []string{"16 B", "64 B", "256 B", "4 KiB", "64 KiB", "mixed step", "RSS/live"}

// results[label][col][round] = value
type results map[string]map[string]map[int]float64

func parse(path string) (results, []string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, err
	}
	defer f.Close()
	res := results{}
	var order []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fs := strings.Fields(sc.Text())
		if len(fs) != 6 || fs[0] != "R" {
			continue
		}
		label, wl := fs[1], fs[3]
		round, err1 := strconv.Atoi(fs[2])
		a, err2 := strconv.ParseFloat(fs[4], 64)
		b, err3 := strconv.ParseFloat(fs[5], 64)
		if err1 != nil || err2 != nil || err3 != nil {
			return nil, nil, fmt.Errorf("bad line %q", sc.Text())
		}
		if res[label] == nil {
			res[label] = map[string]map[int]float64{}
			order = append(order, label)
		}
		set := func(col string, v float64) {
			if res[label][col] == nil {
				res[label][col] = map[int]float64{}
			}
			res[label][col][round] = v
		}
		switch wl {
		case "pair":
			set(fs[4], b)
		case "mixed":
			set("mixed", a)
			set("rss", b)
		}
	}
	return res, order, sc.Err()
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func values(m map[int]float64) []float64 {
	var v []float64
	for _, x := range m {
		v = append(v, x)
	}
	return v
}

func num(x float64) string {
	switch {
	case x >= 1000:
		return strconv.FormatFloat(x, 'f', 0, 64)
	case x >= 10:
		return strconv.FormatFloat(x, 'f', 1, 64)
	}
	return strconv.FormatFloat(x, 'f', 2, 64)
}

func main() {
	base := flag.String("base", "hardened_malloc", "the allocator ratios are taken against")
	flag.Parse()
	if flag.NArg() != 1 {
		fmt.Fprintln(os.Stderr, "usage: table [-base LABEL] raw.txt")
		os.Exit(2)
	}
	res, order, err := parse(flag.Arg(0))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Println("CPU ns per alloc+free pair and per mixed step; RSS/live: the peak resident set less the one before the workload, over the peak live bytes (medians over rounds).")
	fmt.Println()
	fmt.Printf("| allocator | %s |\n", strings.Join(heads, " | "))
	fmt.Printf("|---|%s\n", strings.Repeat("---:|", len(heads)))
	for _, l := range order {
		row := []string{l}
		for _, c := range cols {
			row = append(row, num(median(values(res[l][c]))))
		}
		fmt.Printf("| %s |\n", strings.Join(row, " | "))
	}
	b := res[*base]
	if b == nil {
		fmt.Printf("\n(no %s rows: no ratio table)\n", *base)
		return
	}
	fmt.Printf("\nRatio to %s, per round, then the median [min–max] over rounds (above 1: slower, or more memory).\n\n", *base)
	fmt.Printf("| A / %s | %s |\n", *base, strings.Join(heads, " | "))
	fmt.Printf("|---|%s\n", strings.Repeat("---:|", len(heads)))
	for _, l := range order {
		if l == *base {
			continue
		}
		row := []string{l}
		for _, c := range cols {
			var rs []float64
			for round, v := range res[l][c] {
				if bv, ok := b[c][round]; ok && bv > 0 {
					rs = append(rs, v/bv)
				}
			}
			if len(rs) == 0 {
				row = append(row, "–")
				continue
			}
			row = append(row, fmt.Sprintf("%.2f [%.2f–%.2f]", median(rs), slices.Min(rs), slices.Max(rs)))
		}
		fmt.Printf("| %s |\n", strings.Join(row, " | "))
	}
}
