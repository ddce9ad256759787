#!/usr/bin/env bash
# Builds the root package's native Go fuzz targets the way OSS-Fuzz and
# ClusterFuzzLite do (compile_native_go_fuzzer: go-118-fuzz-build, then
# clang -fsanitize=fuzzer), in a scratch copy of the tree, runs each for
# DURATION seconds (default 3) and checks that its exec count grew. MODES
# picks the builds ("release hardened"), TARGETS the targets (default
# FuzzAllocFree). With SEEDED=1 it also builds FuzzThreadLifecycle with
# -tags hardened,faultinject and the seed's late unlock reintroduced
# (HARDALLOC_FAULT=3), which libFuzzer must report as a crash. OUT keeps
# the binaries (default: a temporary directory, removed).
#
# Needs go-118-fuzz-build on PATH (make builds it from tools/go.mod) and
# clang with libFuzzer (Debian: apt-get install clang); without clang it
# says so and exits 2. The scratch copy gets the testing shim
# (github.com/AdamKorcz/go-118-fuzz-build/testing) in its go.mod, and the
# root's _test.go fuzz files renamed, as OSS-Fuzz does: the main module
# is never touched.
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${DURATION:-3}
MODES=${MODES:-release hardened}
TARGETS=${TARGETS:-FuzzAllocFree}
SEEDED=${SEEDED:-}
for tool in clang go-118-fuzz-build; do
	if ! command -v "$tool" >/dev/null; then
		echo "native-libfuzzer.sh needs $tool on PATH: clang from your OS (Debian: apt-get install clang), go-118-fuzz-build through make (tools/go.mod)" >&2
		exit 2
	fi
done
shim=$(cd tools && go list -m -f '{{.Version}}' github.com/AdamKorcz/go-118-fuzz-build)
work=$(mktemp -d)
out=${OUT:-$work/out}
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/src" "$out"
git ls-files --cached --others --exclude-standard | grep -v '^testdata/fuzz/\|^tools/\|^bench/' | tar -cf - -T - | tar -xf - -C "$work/src"
cd "$work/src"
# The native targets live in _test.go files of an external test package;
# go-118-fuzz-build builds ordinary files only.
for f in fuzz_test.go fault_test.go; do
	sed 's/^package hardalloc_test$/package hardalloc/' "$f" >"${f%_test.go}_libfuzzer.go"
	rm "$f"
done
go get "github.com/AdamKorcz/go-118-fuzz-build/testing@$shim" >/dev/null 2>&1
build() { # name tags target
	go-118-fuzz-build -tags "$2" -func "$3" -o "$work/$1.a" . && clang -fsanitize=fuzzer "$work/$1.a" -o "$out/$1"
}
run() { # name [env]
	local log="$work/$1.log"
	env ${2:-} "$out/$1" -max_total_time="$DURATION" -print_final_stats=1 -rss_limit_mb=4096 >"$log" 2>&1 || true
	execs=$(grep -oE 'number_of_executed_units: *[0-9]+' "$log" | grep -oE '[0-9]+$' || echo 0)
	crashed=$(grep -c 'ERROR: libFuzzer\|panic: \|==ERROR' "$log" || true)
}
failed=0
for mode in $MODES; do
	case $mode in
	release) tags= ;;
	hardened) tags=hardened ;;
	*) echo "unknown mode $mode" >&2; exit 2 ;;
	esac
	for t in $TARGETS; do
		name="$t-$mode"
		build "$name" "$tags" "$t"
		run "$name"
		echo "libFuzzer $name: $execs execs in ${DURATION}s, crashes $crashed"
		if [ "$crashed" -gt 0 ] || [ "${execs:-0}" -le 0 ]; then
			tail -30 "$work/$name.log" >&2
			failed=1
		fi
	done
done
if [ -n "$SEEDED" ]; then
	name=FuzzThreadLifecycle-seeded
	build "$name" hardened,faultinject FuzzThreadLifecycle
	DURATION=$((DURATION * 10)) run "$name" HARDALLOC_FAULT=3
	if [ "$crashed" -gt 0 ]; then
		echo "libFuzzer $name: the late unlock found after $execs execs: $(grep -m1 -oE 'fuzz: op -?[0-9]+: .{0,80}|SUMMARY: hardalloc: .*' "$work/$name.log" || echo crash)"
	else
		echo "libFuzzer $name: the late unlock was NOT found in $execs execs" >&2
		failed=1
	fi
fi
exit $failed
