#!/usr/bin/env bash
# scripts/arrow-suites.sh: arrow-go's own test suites with their default
# allocator swapped for hardalloc (arrowalloc), beside the same suites
# with arrow's Go allocator, and a table of what differs (`make arrow-suites`).
#
# arrow-go's module source comes from the Go module proxy at a pinned
# version (go mod download) and is copied to a scratch directory three
# times: as it is ("arrow"), and with arrow/memory's GoAllocator (also
# memory.DefaultAllocator, and what CheckedAllocator wraps in arrow's
# tests) delegating to one process-wide arrowalloc allocator, run plain
# ("hardalloc") and with -tags hardened ("hardened"). In the swapped
# copies every report goes to a JSON-lines file as well as to the test's
# stderr, the allocator never panics on a report (the test goes on), and
# each test binary closes the allocator after m.Run, so what arrow never
# released is reported as leaks with their allocation sites.
#
#   scripts/arrow-suites.sh                      # every suite below
#   PKGS="./arrow/memory ./arrow/array" scripts/arrow-suites.sh
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
ARROW=${ARROW:-github.com/apache/arrow-go/v18@v18.8.0}
PKGS=${PKGS:-"./arrow/memory ./arrow/array ./arrow/ipc ./arrow/compute ./arrow/scalar ./parquet/file ./parquet/pqarrow"}
TIMEOUT=${TIMEOUT:-20m}
# parquet/file's TestBadReader dereferences the nil reader it gets without
# the parquet-testing data (a git submodule the module zip lacks), which
# ends the package's run: it is left out in every variant.
SKIP=${SKIP:-^TestBadReader\$}
work=${WORK:-$(mktemp -d)}
mkdir -p "$work/out"
src=$(cd "$root/arrowalloc/arrowtest" && go mod download -json "$ARROW" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
[ -d "$src" ] || { echo "arrow-suites: go mod download $ARROW failed" >&2; exit 1; }
echo "arrow-suites: $ARROW from $src, work in $work" >&2

copy() { # dir
	rm -rf "$1" && cp -r "$src" "$1" && chmod -R u+w "$1"
}

swap() { # dir: arrow/memory's GoAllocator backed by arrowalloc
	local d=$1
	(cd "$d" && go mod edit \
		-require=github.com/hardalloc/hardalloc@v0.0.0-00010101000000-000000000000 \
		-replace=github.com/hardalloc/hardalloc="$root")
	cat >"$d/arrow/memory/go_allocator.go" <<'GO'
package memory

// GoAllocator, swapped by hardalloc's scripts/arrow-suites.sh: every
// buffer comes from hardalloc (zz_hardalloc.go).
type GoAllocator struct{}

func NewGoAllocator() *GoAllocator { return &GoAllocator{} }

func (a *GoAllocator) Allocate(size int) []byte { return hardallocMem.Allocate(size) }

func (a *GoAllocator) Reallocate(size int, b []byte) []byte {
	return hardallocMem.Reallocate(size, b)
}

func (a *GoAllocator) Free(b []byte) { hardallocMem.Free(b) }

var _ Allocator = (*GoAllocator)(nil)
GO
	cat >"$d/arrow/memory/zz_hardalloc.go" <<'GO'
package memory

import (
	"encoding/json"
	"fmt"
	"os"
	"sync"

	"github.com/hardalloc/hardalloc/arrowalloc"
	"github.com/hardalloc/hardalloc/hardened"
)

var hardallocMem = func() *arrowalloc.Allocator {
	var mu sync.Mutex
	out, err := os.OpenFile(os.Getenv("HARDALLOC_REPORTS"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		panic(err)
	}
	mem, err := arrowalloc.Open(hardened.Options{OnReport: func(r *hardened.Report) {
		js, _ := json.Marshal(r)
		mu.Lock()
		out.Write(append(js, '\n'))
		mu.Unlock()
		fmt.Fprintf(os.Stderr, "%s\n", r)
	}})
	if err != nil {
		panic(err)
	}
	return mem
}()

// HardallocAtExit closes the allocator; what was never freed is reported.
func HardallocAtExit(code int) int {
	hardallocMem.Close()
	return code
}
GO
	local p name f
	for p in $PKGS; do
		name=$(cd "$d" && go list -mod=mod -f '{{.Name}}' "$p")
		f=$(grep -l 'func TestMain' "$d/$p"/*_test.go 2>/dev/null | head -1 || true)
		if [ -n "$f" ]; then
			sed -i 's/os\.Exit(m\.Run())/os.Exit(memory.HardallocAtExit(m.Run()))/' "$f"
			grep -q 'arrow-go/v18/arrow/memory"' "$f" || sed -i '0,/^import (/s//import (\n\t"github.com\/apache\/arrow-go\/v18\/arrow\/memory"/' "$f"
		else
			cat >"$d/$p/zz_hardalloc_test.go" <<GO
package ${name}_test

import (
	"os"
	"testing"

	"github.com/apache/arrow-go/v18/arrow/memory"
)

func TestMain(m *testing.M) { os.Exit(memory.HardallocAtExit(m.Run())) }
GO
		fi
	done
}

# The parquet and arrow test-data repositories are git submodules, not in
# the module zip: their tests get an empty directory and fail alike in
# every variant (instead of panicking, which would end the package's run).
# -vet=off: the swapped copy's go.mod goes to this module's go version,
# whose vet rejects printf verbs arrow's tests use.
mkdir -p "$work/no-test-data"
run() { # variant dir tags
	local v=$1 d=$2 tags=$3 p key
	for p in $PKGS; do
		key=$v-$(echo "${p#./}" | tr / _)
		echo "arrow-suites: $v $p" >&2
		(cd "$d" && HARDALLOC_REPORTS="$work/out/reports-$key.jsonl" GOFLAGS=-mod=mod \
			PARQUET_TEST_DATA="$work/no-test-data" ARROW_TEST_DATA="$work/no-test-data" \
			go test -json -short -vet=off -count=1 -timeout "$TIMEOUT" -skip "$SKIP" ${tags:+-tags "$tags"} "$p" \
			>"$work/out/test-$key.json" 2>"$work/out/stderr-$key.txt") || true
		touch "$work/out/reports-$key.jsonl"
	done
}

copy "$work/arrow"
copy "$work/swapped"
swap "$work/swapped"
run arrow "$work/arrow" ""
run hardalloc "$work/swapped" ""
run hardened "$work/swapped" hardened
# Each test that failed only with hardalloc, again under -asan -tags
# hardened (when a C compiler with ASan exists): a read of a released
# buffer is stopped at the read, with hardalloc's report of the block.
(cd "$root/arrowalloc/arrowtest" && go run ./internal/suitetable -pkgs "$PKGS" -plan "$work/asan-plan.txt" "$work/out")
if echo 'int main(void){return 0;}' | ${CC:-cc} -fsanitize=address -x c - -o /dev/null 2>/dev/null; then
	while read -r p t; do
		echo "arrow-suites: -asan $p $t" >&2
		(cd "$work/swapped" && HARDALLOC_REPORTS="$work/out/asan-reports.jsonl" GOFLAGS=-mod=mod GOMAXPROCS=2 \
			PARQUET_TEST_DATA="$work/no-test-data" ARROW_TEST_DATA="$work/no-test-data" \
			go test -asan -tags hardened -vet=off -count=1 -timeout "$TIMEOUT" -run "^$t\$" "$p" \
			>"$work/out/asan-$(echo "${p#./}" | tr / _):$t.txt" 2>&1) || true
	done <"$work/asan-plan.txt"
else
	echo "arrow-suites: no C compiler with AddressSanitizer: the -asan runs are skipped" >&2
fi
(cd "$root/arrowalloc/arrowtest" && go run ./internal/suitetable -pkgs "$PKGS" "$work/out")
