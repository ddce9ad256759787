#!/usr/bin/env bash
# Bounded fuzz campaign: runs each native fuzz target with `go test -fuzz`
# in each of MODES (default "release hardened": the release fast paths and
# the hardening layer are different code) for FUZZTIME each (default 20s:
# -fuzztime counts the replay of the corpus that gathers baseline
# coverage, which took 10s of a hardened target here), prints progress as
# it goes and a summary table at the end; a run that never got past that
# replay says "base". ASAN=1 builds every run with -asan, so a bad access
# is stopped where it happens; every -asan build has the hardening layer,
# so there MODES defaults to one mode, "hardened". A crasher is left in
# testdata/fuzz/<Target>/ (go test writes it there), its report is
# printed, and the script exits non-zero; each distinct crash (by its
# SUMMARY line) is also written as SARIF and JSON, to $SARIF and $JSON
# (default fuzz-crashes.sarif and fuzz-crashes.json), for code-scanning
# views and CI systems (scripts/sarif).
set -uo pipefail
cd "$(dirname "$0")/.."
. scripts/fuzzlib.sh
FUZZTIME=${FUZZTIME:-20s}
MODES=${MODES:-${TAGS:+${TAGS}}}
# ASAN=1 (or any value but empty, 0, false and no) turns -asan on.
case ${ASAN:-} in '' | 0 | false | no) ASAN= ;; *) ASAN=1 ;; esac
if [ -n "$ASAN" ]; then MODES=${MODES:-hardened}; fi
MODES=${MODES:-release hardened}
PARALLEL=${PARALLEL:-2}
# Each of the PARALLEL worker processes gets its share of the CPUs, not all
# of them: Go's default (GOMAXPROCS = every CPU in each worker) runs 2x2 Ps
# and the coordinator on 2 cores, and measured here 13.8k FuzzAllocFree
# execs/s against 20.5k with GOMAXPROCS=1 (the trivial FuzzBaseline: 61k
# against 110k). Targets still run their goroutines concurrently, and the
# seeded thread bugs are found as fast; set FUZZPROCS to override. Under
# -asan a worker gets a second P, so that hardalloc's part of an ASan
# report comes from the watcher goroutine at once, through OnReport too
# (with one P the reporter process prints it after a 500 ms wait).
FUZZPROCS=${FUZZPROCS:-$(( $(nproc) / PARALLEL > 1 ? $(nproc) / PARALLEL : 1 ))}
asanflag=()
if [ -n "$ASAN" ]; then
	asanflag=("${ASANFLAGS[@]}")
	[ "$FUZZPROCS" -ge 2 ] || FUZZPROCS=2
fi
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(FuzzAllocFree FuzzRealloc FuzzAligned FuzzThreadLifecycle FuzzMisuse)
log=$(mktemp -d)
failed=0
baseline=0
rows=()
read -r -a modes <<<"$MODES"
echo "fuzz campaign: ${#targets[@]} targets x ${#modes[@]} modes (${MODES})${ASAN:+ under -asan}, ${FUZZTIME} each, ${PARALLEL} workers (GOMAXPROCS=${FUZZPROCS} each)"
for mode in "${modes[@]}"; do
	case $mode in
	release) tags=() ;;
	hardened) tags=(-tags hardened) ;;
	*) echo "unknown mode $mode (release or hardened)" >&2; exit 2 ;;
	esac
	for t in "${targets[@]}"; do
		echo "--- $t [$mode${ASAN:++asan}]"
		before=$(ls "testdata/fuzz/$t" 2>/dev/null | sort)
		# One log per target and mode, made before the run starts, so the
		# live progress below is this run's from its first line.
		out="$log/$t.$mode.out"
		: >"$out"
		GOMAXPROCS=$FUZZPROCS go test "${tags[@]}" "${asanflag[@]}" -run '^$' -fuzz "^${t}\$" -fuzztime "$FUZZTIME" -fuzzminimizetime 5x -parallel "$PARALLEL" . >"$out" 2>&1 &
		pid=$!
		tail -n +1 -f --pid=$pid "$out" 2>/dev/null | grep --line-buffered -E '^fuzz: elapsed|FAIL|panic|failing input|ERROR: AddressSanitizer'
		wait $pid
		rc=$?
		# The rate is the fuzzer's own: execs over its elapsed time, which
		# starts once the test binary is built (not the wall time of the
		# whole go test, compile included).
		last=$(grep -E '^fuzz: elapsed: [0-9]+s, execs: [0-9]+' "$out" | tail -1)
		execs=$(echo "$last" | grep -oE 'execs: [0-9]+' | grep -oE '[0-9]+' || true)
		secs=$(echo "$last" | grep -oE 'elapsed: [0-9]+s' | grep -oE '[0-9]+' || true)
		execs=${execs:-0}
		ms=$(( ${secs:-0} * 1000 ))
		newc=$(grep -oE 'new interesting: [0-9]+' "$out" | tail -1 | grep -oE '[0-9]+' || echo 0)
		crasher=$(comm -13 <(echo "$before") <(ls "testdata/fuzz/$t" 2>/dev/null | sort) | head -1)
		status=ok
		if [ "$rc" -eq 0 ] && [ "$execs" -eq 0 ] && grep -q 'gathering baseline coverage' "$out"; then
			status=base
			baseline=$((baseline + 1))
		fi
		if [ "$rc" -ne 0 ] && deadline_flake "$(cat "$out")" "$crasher"; then
			status=flake
			echo "=== $t: 'context deadline exceeded' with no failing input: Go's fuzztime race (go.dev/issue/75804), not a crash"
		elif [ "$rc" -ne 0 ]; then
			status=FAIL
			failed=1
			echo "=== $t [$mode] failed; report:"
			sed -n '/--- FAIL/,/^FAIL/p' "$out" | head -80
			key=$(crash_key "$(cat "$out")")
			id=$(printf '%s' "$key" | sha1sum | cut -c1-12)
			mkdir -p "$log/crashers/$id"
			printf '%s\n' "$key" >"$log/crashers/$id/summary.txt"
			cat "$out" >>"$log/crashers/$id/report.txt"
			if [ -n "$crasher" ]; then
				cp "testdata/fuzz/$t/$crasher" "$log/crashers/$id/${t}-${mode}-${crasher}"
				echo "crasher: testdata/fuzz/$t/$crasher (replay: go test ${tags[*]} ${asanflag[*]} -run '$t/$crasher' .)"
			else
				echo "no crasher was written (the full log follows)"
				tail -40 "$out"
			fi
		fi
		rate=$(( execs * 1000 / (ms > 0 ? ms : 1) ))
		rows+=("$(printf '| %-20s | %-13s | %10s | %8s | %4s | %-5s | %s' "$t" "$mode${ASAN:++asan}" "$execs" "$rate" "$newc" "$status" "${crasher:+testdata/fuzz/$t/$crasher}")")
	done
done
echo
echo "(execs/s: the fuzzer's execs over its own elapsed time, build excluded)"
echo "| target               | mode          |      execs |  execs/s |  new | status | crasher"
echo "|----------------------|---------------|------------|----------|------|--------|--------"
printf '%s\n' "${rows[@]}"
if [ "$baseline" -gt 0 ]; then
	echo "status base: $baseline run(s) spent all of FUZZTIME=$FUZZTIME replaying the corpus (gathering baseline coverage) and fuzzed nothing new; give them a longer FUZZTIME"
fi
if [ -d "$log/crashers" ]; then
	go run ./scripts/sarif -crashers "$log/crashers" -sarif "${SARIF:-fuzz-crashes.sarif}" -json "${JSON:-fuzz-crashes.json}" &&
		echo "crashes: ${SARIF:-fuzz-crashes.sarif} (SARIF), ${JSON:-fuzz-crashes.json}"
fi
rm -rf "$log"
exit $failed
