#!/usr/bin/env bash
# Runs a dvyukov/go-fuzz coordinator and WORKERS workers on loopback for
# DURATION seconds (go-fuzz's way of spreading a campaign over machines:
# run the workers elsewhere with -worker <coordinator address>), then
# checks that the corpus grew and execs were counted. FUNC picks the entry
# point in package fuzz (default FuzzAllocFree), TAGS the build tags
# (hardened fuzzes the debug layer), LISTEN the coordinator's address
# (default 127.0.0.1 and a random port; 0.0.0.0:PORT to take workers from
# other machines, which run: go-fuzz -bin fuzz.zip -worker HOST:PORT).
# WORKDIR keeps the corpus and crashers; without it a temporary directory
# is used and removed, unless a crasher is in it.
# Needs go-fuzz and go-fuzz-build on PATH: make builds them (tools/go.mod).
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${DURATION:-10}
WORKERS=${WORKERS:-2}
FUNC=${FUNC:-FuzzAllocFree}
TAGS=${TAGS:-}
PORT=${PORT:-$((20000 + RANDOM % 20000))}
LISTEN=${LISTEN:-127.0.0.1:$PORT}
connect=${LISTEN/#0.0.0.0:/127.0.0.1:}
for tool in go-fuzz go-fuzz-build; do
	command -v "$tool" >/dev/null || { echo "gofuzz-cluster.sh needs $tool on PATH: run it through make (tools/go.mod)" >&2; exit 2; }
done
keep=${WORKDIR:-}
work=${WORKDIR:-$(mktemp -d)}
cleanup() {
	if [ -z "$keep" ] && ! ls "$work/gofuzz/crashers" 2>/dev/null | grep -q .; then rm -rf "$work"; fi
}
trap cleanup EXIT
mkdir -p "$work/gofuzz"
echo "go-fuzz cluster: $FUNC${TAGS:+ (tags $TAGS)}, coordinator $LISTEN, $WORKERS workers, ${DURATION}s, workdir $work"
go-fuzz-build ${TAGS:+-tags "$TAGS"} -o "$work/fuzz.zip" -func "$FUNC" ./fuzz
timeout $((DURATION + 2)) go-fuzz -workdir "$work/gofuzz" -coordinator "$LISTEN" >"$work/coordinator.log" 2>&1 &
coord=$!
sleep 1
pids=()
for i in $(seq "$WORKERS"); do
	timeout "$DURATION" go-fuzz -bin "$work/fuzz.zip" -worker "$connect" -procs 1 >"$work/worker$i.log" 2>&1 &
	pids+=($!)
done
wait "${pids[@]}" 2>/dev/null || true
wait "$coord" 2>/dev/null || true
cat "$work/coordinator.log"
first=$(grep -oE 'corpus: [0-9]+' "$work/coordinator.log" | head -1 | grep -oE '[0-9]+')
last=$(grep -oE 'corpus: [0-9]+' "$work/coordinator.log" | tail -1 | grep -oE '[0-9]+')
execs=$(grep -oE 'execs: [0-9]+' "$work/coordinator.log" | tail -1 | grep -oE '[0-9]+')
workers=$(grep -oE 'workers: [0-9]+' "$work/coordinator.log" | tail -1 | grep -oE '[0-9]+')
crashers=$(ls "$work/gofuzz/crashers" 2>/dev/null | grep -c '\.quoted$' || true)
echo "summary: workers ${workers:-0}, corpus ${first:-0} -> ${last:-0}, execs ${execs:-0}, crashers ${crashers:-0}"
if [ "${workers:-0}" -lt "$WORKERS" ] || [ "${execs:-0}" -le 0 ] || [ "${last:-0}" -le "${first:-0}" ]; then
	echo "go-fuzz cluster did not make progress" >&2
	exit 1
fi
if [ "${crashers:-0}" -gt 0 ]; then
	echo "go-fuzz found crashers: see $work/gofuzz/crashers" >&2
	exit 1
fi
