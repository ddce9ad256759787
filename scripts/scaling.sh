#!/usr/bin/env bash
# Two-goroutine scaling of the Alloc+Free pair, release and hardened,
# beside a compute loop's, a 64 KiB clear's and a 64 KiB verify, clear and
# poison over 4 MiB per goroutine (BenchmarkAllocFreeParallel,
# BenchmarkComputeParallel, BenchmarkClearParallel and
# BenchmarkPoisonStreamParallel, ./hardened).
#
#   scripts/scaling.sh                 # ROUNDS=4 BENCHTIME=150ms
#
# Each round runs each build's binary three times: one P pinned to CPU 0,
# one P pinned to CPU 1, and two Ps. The speed-up is the two-P rate over
# the mean of the two one-P rates, so 2.0 is ideal even when the two CPUs
# do not run at the same speed: on the 2-vCPU machines this runs on, one
# vCPU has run the same binary at half the other's speed for minutes at a
# time, and `-cpu 1,2` then compares two Ps against whichever CPU the one
# P landed on. Prints the median over rounds [min-max].
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-4}
BENCHTIME=${BENCHTIME:-150ms}
RX=${RX:-AllocFreeParallel|ComputeParallel|ClearParallel|PoisonStreamParallel}
command -v taskset >/dev/null || { echo "scaling: needs taskset (util-linux)" >&2; exit 1; }
[ "$(nproc)" -ge 2 ] || { echo "scaling: needs two CPUs" >&2; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
go test -c -o "$work/release.test" ./hardened
go test -c -tags hardened -o "$work/hardened.test" ./hardened
run() { # build cpu-spec label
	local pin=() cpus=1
	case $2 in 0 | 1) pin=(taskset -c "$2") ;; *) cpus=2 ;; esac
	"${pin[@]}" "$work/$1.test" -test.run '^$' -test.bench "$RX" -test.benchtime "$BENCHTIME" -test.cpu "$cpus" 2>/dev/null |
		awk -v r="$r" -v b="$1" -v m="$3" '/ns\/op/ { n = $1; sub(/-2$/, "", n); print r, b, m, n, $3 }' >>"$work/raw"
}
for ((r = 0; r < ROUNDS; r++)); do
	echo "scaling: round $((r + 1))/$ROUNDS" >&2
	for b in release hardened; do
		run "$b" 0 c0
		run "$b" 1 c1
		run "$b" both p2
	done
done
awk '
{ key = $2 " " $4; v[key, $1, $3] = $5; keys[key] = 1; rounds[$1] = 1 }
END {
	for (k in keys) {
		m = 0
		for (r in rounds) if ((k, r, "p2") in v && (k, r, "c0") in v && (k, r, "c1") in v) {
			c0[m] = v[k, r, "c0"]; c1[m] = v[k, r, "c1"]; p2[m] = v[k, r, "p2"]
			s[m] = (1 / p2[m]) / ((1 / c0[m] + 1 / c1[m]) / 2); m++
		}
		if (m == 0) continue
		split(k, f, " ")
		printf "| %s | %s | %.1f | %.1f | %.1f | %.2f [%.2f-%.2f] |\n", f[1], f[2], med(c0, m), med(c1, m), med(p2, m), med(s, m), lo(s, m), hi(s, m)
	}
}
function med(a, m,   t, i, j, x) { for (i = 0; i < m; i++) t[i] = a[i]; for (i = 1; i < m; i++) { x = t[i]; for (j = i - 1; j >= 0 && t[j] > x; j--) t[j + 1] = t[j]; t[j + 1] = x } return m % 2 ? t[int(m / 2)] : (t[m / 2 - 1] + t[m / 2]) / 2 }
function lo(a, m,   i, x) { x = a[0]; for (i = 1; i < m; i++) if (a[i] < x) x = a[i]; return x }
function hi(a, m,   i, x) { x = a[0]; for (i = 1; i < m; i++) if (a[i] > x) x = a[i]; return x }
' "$work/raw" | sort -t'|' -k2,2r -k3,3 >"$work/table"
echo "| build | benchmark | 1 P, CPU 0 (ns) | 1 P, CPU 1 (ns) | 2 Ps (ns) | speed-up |"
echo "|---|---|---:|---:|---:|---:|"
cat "$work/table"
