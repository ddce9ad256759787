#!/usr/bin/env bash
# Builds a libFuzzer binary of a package-fuzz entry point with
# go-fuzz-build -libfuzzer and Debian's clang (installed if missing), then
# runs it for DURATION seconds (default 20) on CORPUS and checks that it executed
# inputs and grew the corpus. FUNC picks the entry point (default
# FuzzAllocFree). Extra arguments go to the libFuzzer binary.
set -euo pipefail
cd "$(dirname "$0")/.."
FUNC=${FUNC:-FuzzAllocFree}
DURATION=${DURATION:-20}
out=${OUT:-$(mktemp -d)}
corpus=${CORPUS:-$out/corpus}
export PATH="$PATH:$(go env GOPATH)/bin"
if ! command -v clang >/dev/null; then
	apt-get update -qq && apt-get install -y -qq clang >/dev/null
fi
if ! command -v go-fuzz-build >/dev/null; then
	go install "github.com/dvyukov/go-fuzz/go-fuzz-build@$(go list -m -f '{{.Version}}' github.com/dvyukov/go-fuzz)"
fi
mkdir -p "$corpus"
go-fuzz-build -libfuzzer -func "$FUNC" -o "$out/$FUNC.a" ./fuzz
clang -fsanitize=fuzzer "$out/$FUNC.a" -o "$out/$FUNC-libfuzzer"
"$out/$FUNC-libfuzzer" -max_total_time="$DURATION" -print_final_stats=1 "$@" "$corpus" 2>&1 | tee "$out/run.log" | grep -E '^#[0-9]+.*(pulse|DONE)|stat::|ERROR|SUMMARY' || true
execs=$(grep -oE 'number_of_executed_units: *[0-9]+' "$out/run.log" | grep -oE '[0-9]+$' || echo 0)
added=$(grep -oE 'new_units_added: *[0-9]+' "$out/run.log" | grep -oE '[0-9]+$' || echo 0)
echo "libFuzzer $FUNC: ${execs} execs, ${added} new units, binary $out/$FUNC-libfuzzer"
if grep -q 'ERROR: libFuzzer' "$out/run.log"; then
	echo "libFuzzer found a crash: see $out/run.log and the crash-* file" >&2
	exit 1
fi
[ "${execs:-0}" -gt 0 ] && [ "${added:-0}" -gt 0 ]
