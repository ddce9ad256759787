#!/usr/bin/env bash
# scripts/clients.sh: other people's test suites on hardalloc through
# cmd/hardalloc's overlay (`make clients`): ristretto's z, badger's skl, y,
# table and root packages, pebble's internal/cache and sstable (its
# internal/manual, the seam, has no tests), at pinned versions from the Go module proxy. Each suite runs as
# published ("plain") and through the overlay in release, hardened and
# -asan builds; the table gives the tests passed and failed and the
# hardtest verdict (reports, leaks) of each run. Logs stay in $WORK.
#
#   scripts/clients.sh                  # every client
#   CLIENTS="ristretto" scripts/clients.sh
#   MODES="release hardened" scripts/clients.sh
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
CLIENTS=${CLIENTS:-"ristretto badger pebble"}
MODES=${MODES:-"plain release hardened asan"}
TIMEOUT=${TIMEOUT:-30m}
work=${WORK:-$(mktemp -d)}
mkdir -p "$work"
echo "clients: work in $work" >&2

pkgs_of() {
	case $1 in
	ristretto) echo "github.com/dgraph-io/ristretto/v2/z" ;;
	badger) echo "github.com/dgraph-io/badger/v4/skl github.com/dgraph-io/badger/v4/y github.com/dgraph-io/badger/v4/table github.com/dgraph-io/badger/v4" ;;
	pebble) echo "github.com/cockroachdb/pebble/v2/internal/cache github.com/cockroachdb/pebble/v2/sstable" ;;
	esac
}
seam_of() { case $1 in badger) echo ristretto ;; *) echo "$1" ;; esac; }
mods_of() {
	case $1 in
	ristretto) echo "github.com/dgraph-io/ristretto/v2@v2.4.2" ;;
	badger) echo "github.com/dgraph-io/ristretto/v2@v2.4.2 github.com/dgraph-io/badger/v4@v4.9.6" ;;
	pebble) echo "github.com/cockroachdb/pebble/v2@v2.1.7" ;;
	esac
}

printf '| client | package | build | passed | failed | hardtest |\n| --- | --- | --- | ---: | ---: | --- |\n' >"$work/table.md"
for c in $CLIENTS; do
	m="$work/$c"
	mkdir -p "$m"
	cat >"$m/go.mod" <<EOF
module clients/$c

go 1.26

replace github.com/hardalloc/hardalloc => $root
EOF
	echo "package $c" >"$m/doc.go"
	pkgs=$(pkgs_of "$c")
	(
		cd "$m"
		go get github.com/hardalloc/hardalloc@v0.0.0-00010101000000-000000000000 >/dev/null 2>&1
		for mod in $(mods_of "$c"); do go get -t "$mod" >/dev/null 2>&1; done
		# shellcheck disable=SC2086
		go get -t $pkgs >/dev/null 2>&1 || true
		# shellcheck disable=SC2086
		go run github.com/hardalloc/hardalloc/cmd/hardalloc overlay "$(seam_of "$c")" $pkgs
	)
	for mode in $MODES; do
		args=(-count=1 -short -v -timeout "$TIMEOUT")
		case $mode in
		plain) ;;
		release) args+=(-overlay hardalloc-overlay.json) ;;
		hardened) args+=(-overlay hardalloc-overlay.json -tags hardened) ;;
		asan) args+=(-overlay hardalloc-overlay.json -asan) ;;
		esac
		for p in $pkgs; do
			log="$work/$c.$mode.$(echo "$p" | tr / _).log"
			echo "clients: $c $mode $p" >&2
			(cd "$m" && go test "${args[@]}" "$p" >"$log" 2>&1) || true
			pass=$(grep -c '^--- PASS' "$log" || true)
			fail=$(grep -c '^--- FAIL' "$log" || true)
			verdict=$(grep -E '^hardtest: (LEAK|[0-9]+ report)' "$log" | head -3 | tr '\n' ';' || true)
			[ "$mode" = plain ] && verdict="(no hardalloc)"
			grep -q '^ok ' "$log" && [ -z "$verdict" ] && verdict="clean"
			grep -qE '^(FAIL|panic:)' "$log" && verdict="${verdict:+$verdict }FAIL"
			printf '| %s | %s | %s | %s | %s | %s |\n' "$c" "${p#github.com/}" "$mode" "$pass" "$fail" "$verdict" >>"$work/table.md"
		done
	done
done
cat "$work/table.md"
