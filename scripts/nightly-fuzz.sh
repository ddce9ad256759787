#!/usr/bin/env bash
# Nightly fuzz campaign: every target x {release, hardened, hardened+race,
# hardened+asan (AddressSanitizer: bad accesses stopped where they happen)},
# BUDGET each (default 10m), with a persistent corpus under CORPUS (go's
# fuzz cache directory per target and mode, so it survives between runs and
# can be cached by CI). Crashers are deduplicated by the one-line summary of
# their report and copied to CRASHERS/<key>/; a markdown summary goes to
# SUMMARY, with crashes.json and crashes.sarif beside it (one entry per
# unique crash). Exits non-zero if any target crashed.
set -uo pipefail
cd "$(dirname "$0")/.."
. scripts/fuzzlib.sh
BUDGET=${BUDGET:-10m}
CORPUS=${CORPUS:-.fuzzwork/corpus}
CRASHERS=${CRASHERS:-.fuzzwork/crashers}
SUMMARY=${SUMMARY:-.fuzzwork/summary.md}
PARALLEL=${PARALLEL:-2}
TARGETS=${TARGETS:-"FuzzAllocFree FuzzRealloc FuzzAligned FuzzThreadLifecycle FuzzMisuse"}
MODES=${MODES:-"release hardened hardened+race hardened+asan"}
mkdir -p "$CORPUS" "$CRASHERS" "$(dirname "$SUMMARY")"
declare -A seen=()
unique=0
failed=0
{
	echo "# hardalloc nightly fuzz — $(date -u +%Y-%m-%dT%H:%MZ), ${BUDGET} per run"
	echo
	echo "| target | mode | execs | execs/s | new corpus | result |"
	echo "|---|---|---:|---:|---:|---|"
} >"$SUMMARY"
for mode in $MODES; do
	flags=()
	case $mode in
	release) ;;
	hardened) flags=(-tags hardened) ;;
	hardened+race) flags=(-tags hardened -race) ;;
	asan) flags=("${ASANFLAGS[@]}") ;;
	hardened+asan) flags=(-tags hardened "${ASANFLAGS[@]}") ;;
	*) echo "unknown mode $mode" >&2; exit 2 ;;
	esac
	for t in $TARGETS; do
		echo "=== $t [$mode] for $BUDGET"
		cache="$CORPUS/$mode/$t"
		mkdir -p "$cache"
		before=$(ls "testdata/fuzz/$t" 2>/dev/null | sort)
		start=$(date +%s%N)
		out=$(go test "${flags[@]}" -run '^$' -fuzz "^${t}\$" -fuzztime "$BUDGET" -fuzzminimizetime 10x -parallel "$PARALLEL" \
			-test.fuzzcachedir="$cache" . 2>&1 | tee -a /dev/stderr)
		rc=$?
		ms=$(( ($(date +%s%N) - start) / 1000000 ))
		execs=$(grep -oE 'execs: [0-9]+' <<<"$out" | tail -1 | grep -oE '[0-9]+' || echo 0)
		newc=$(grep -oE 'new interesting: [0-9]+' <<<"$out" | tail -1 | grep -oE '[0-9]+' || echo 0)
		rate=$(( ${execs:-0} * 1000 / (ms > 0 ? ms : 1) ))
		result=ok
		# The crasher go test just wrote, if any.
		crasher=$(comm -13 <(echo "$before") <(ls "testdata/fuzz/$t" 2>/dev/null | sort) | head -1)
		if [ $rc -ne 0 ] && deadline_flake "$out" "$crasher"; then
			result="flake: Go's fuzztime race (go.dev/issue/75804), no failing input"
		elif [ $rc -ne 0 ]; then
			failed=1
			key=$(crash_key "$out") # the line that names the bug
			id=$(printf '%s' "$key" | sha1sum | cut -c1-12)
			if [ -z "${seen[$id]:-}" ]; then
				seen[$id]=1
				unique=$((unique + 1))
				mkdir -p "$CRASHERS/$id"
				printf '%s\n' "$key" >"$CRASHERS/$id/summary.txt"
				printf '%s\n' "$out" >"$CRASHERS/$id/report.txt"
				result="**crash** \`$id\`: $key"
			else
				result="crash (duplicate of \`$id\`)"
			fi
			[ -n "$crasher" ] && cp "testdata/fuzz/$t/$crasher" "$CRASHERS/$id/${t}-${mode}-${crasher}"
		fi
		echo "| $t | $mode | $execs | $rate | $newc | $result |" >>"$SUMMARY"
	done
done
echo >>"$SUMMARY"
echo "unique crashers: $unique" >>"$SUMMARY"
# One JSON entry and one SARIF result per unique crash, for CI systems and
# code-scanning views.
go run ./scripts/sarif -crashers "$CRASHERS" -sarif "$(dirname "$SUMMARY")/crashes.sarif" -json "$(dirname "$SUMMARY")/crashes.json"
cat "$SUMMARY"
exit $failed
