#!/usr/bin/env bash
# Runs a dvyukov/go-fuzz coordinator and WORKERS workers on loopback for
# DURATION seconds (go-fuzz's way of spreading a campaign over machines:
# run the workers elsewhere with -worker <coordinator address>), then
# checks that the corpus grew and execs were counted. FUNC picks the entry
# point in package fuzz (default FuzzAllocFree).
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${DURATION:-10}
WORKERS=${WORKERS:-2}
FUNC=${FUNC:-FuzzAllocFree}
PORT=${PORT:-$((20000 + RANDOM % 20000))}
export PATH="$PATH:$(go env GOPATH)/bin"
work=${WORKDIR:-$(mktemp -d)}
mkdir -p "$work/gofuzz"
echo "go-fuzz cluster: $FUNC, coordinator 127.0.0.1:$PORT, $WORKERS workers, ${DURATION}s, workdir $work"
go-fuzz-build -o "$work/fuzz.zip" -func "$FUNC" ./fuzz
timeout $((DURATION + 2)) go-fuzz -workdir "$work/gofuzz" -coordinator "127.0.0.1:$PORT" >"$work/coordinator.log" 2>&1 &
coord=$!
sleep 1
pids=()
for i in $(seq "$WORKERS"); do
	timeout "$DURATION" go-fuzz -bin "$work/fuzz.zip" -worker "127.0.0.1:$PORT" -procs 1 >"$work/worker$i.log" 2>&1 &
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
