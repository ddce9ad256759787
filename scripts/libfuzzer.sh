#!/usr/bin/env bash
# Builds a libFuzzer binary of a package-fuzz entry point with
# go-fuzz-build -libfuzzer (from tools/go.mod: run it through `make
# libfuzzer`) and clang (Debian: apt-get install clang), then
# runs it for DURATION seconds (default 20) on CORPUS and checks that it executed
# inputs and grew the corpus. FUNC picks the entry point (default
# FuzzAllocFree), TAGS the build tags (hardened: the debug layer). Extra
# arguments go to the libFuzzer binary. (No -asan: go-fuzz-build links no
# ASan runtime for Go code; see scripts/native-libfuzzer.sh for the
# OSS-Fuzz build of the native targets.)
set -euo pipefail
cd "$(dirname "$0")/.."
FUNC=${FUNC:-FuzzAllocFree}
DURATION=${DURATION:-20}
out=${OUT:-$(mktemp -d)}
corpus=${CORPUS:-$out/corpus}
for tool in clang go-fuzz-build; do
	if ! command -v "$tool" >/dev/null; then
		echo "libfuzzer.sh needs $tool on PATH: clang from your OS (Debian: apt-get install clang), go-fuzz-build through 'make libfuzzer' (tools/go.mod)" >&2
		exit 2
	fi
done
mkdir -p "$corpus"
go-fuzz-build -libfuzzer ${TAGS:+-tags "$TAGS"} -func "$FUNC" -o "$out/$FUNC.a" ./fuzz
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
