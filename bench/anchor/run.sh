#!/usr/bin/env bash
# bench/anchor/run.sh: hardalloc against the C allocators on identical
# workloads (c/workload.c, cmd/goside), every allocator in its own
# process, interleaved over ROUNDS rounds (the order rotates each round, so
# drifting machine load spreads over all rows), then one table of medians
# and one of per-round ratios (cmd/table).
#
#   bench/anchor/run.sh                  # ROUNDS=5 PAIR_MS=150 STEPS=200000
#   ROUNDS=3 PAIR_MS=50 bench/anchor/run.sh
#   BEFORE=/path/to/older/checkout bench/anchor/run.sh   # adds its hardened rows
#   PIN=0 bench/anchor/run.sh            # run every job on CPU 0 (default: the
#                                        # last CPU; PIN= runs unpinned)
#   ASAN=1 bench/anchor/run.sh           # the AddressSanitizer rows instead:
#                                        # gcc's ASan allocator in C, hardalloc
#                                        # and Go's make under go build -asan
#
# Every job runs on one CPU (taskset), so a round's ratios compare
# allocators on the same core: on the 2-vCPU machines this runs on, one
# vCPU has been measured running the same binary at half the other's
# speed (glibc's 16-byte pair: 7.9 ns on one, 14.9 ns on the other, for
# minutes at a time), which an unpinned job lands on at random.
#
# C allocators: glibc, and each of these that is installed (Debian
# packages: libclang-rt-<v>-dev or libclang-rt-dev for Scudo, libjemalloc2,
# libmimalloc2.0), loaded with LD_PRELOAD. hardened_malloc is built (clang
# 19, as its Makefile wants for -std=c23) from HM_SRC, by default the
# snapshot in ../shared/anchors/hm beside the repository, when present:
# its source is copied to a scratch directory and built there, default
# and light configurations as shipped. Rows whose allocator is missing are
# left out and named on stderr.
set -euo pipefail
cd "$(dirname "$0")"
here=$PWD
root=$(cd ../.. && pwd)
ROUNDS=${ROUNDS:-5}
PAIR_MS=${PAIR_MS:-150}
STEPS=${STEPS:-200000}
HM_SRC=${HM_SRC:-$root/../shared/anchors/hm}
work=${WORK:-$(mktemp -d)}
PIN=${PIN-$(($(nproc) - 1))}
pin=()
if [ -n "$PIN" ] && command -v taskset >/dev/null; then pin=(taskset -c "$PIN"); fi
mkdir -p "$work/bin"
raw=$work/raw.txt
: >"$raw"

gcc -O2 -Wall -Wextra -fno-builtin c/workload.c -o "$work/bin/workload"
(cd .. && go build -o "$work/bin/table" ./anchor/cmd/table)
base=hardened_malloc
if [ "${ASAN:-0}" = 1 ]; then
	# ASan's allocator as a C program gets it: the same workload built
	# with -fsanitize=address (malloc and free are then ASan's, with its
	# redzones, quarantine and a stack for every malloc and free).
	gcc -O2 -Wall -Wextra -fno-builtin -fsanitize=address c/workload.c -o "$work/bin/workload-asan"
	(cd .. && CC=gcc go build -asan -o "$work/bin/goside-asan" ./anchor/cmd/goside)
	# Defaults, but no leak check at exit (the workloads free everything;
	# the check would only add its scan to the last job's time, which is
	# not measured anyway) and one quarantine as large as hardalloc's.
	C=("asan:asan:" "asan-q4m:asan:quarantine_size_mb=4")
	G=("hardalloc-asan:asan:hardalloc" "hardalloc-asan-stacks:asan:hardalloc-stacks" "go-make-asan:asan:gomake")
	base=go-make-asan
else
	(cd .. && go build -o "$work/bin/goside-release" ./anchor/cmd/goside &&
		go build -tags hardened -o "$work/bin/goside-hardened" ./anchor/cmd/goside)

	# label:preload ("" = none)
	# glibc-calloc: glibc's calloc for malloc, which zeroes as hardalloc's
	# Alloc does (the -calloc suffix on any label does that).
	declare -a C=("glibc:" "glibc-calloc:")
	have() { # label lib
		if [ -f "$2" ]; then C+=("$1:$2"); else echo "anchor: no $1 ($2)" >&2; fi
	}
	scudo=$(ls /usr/lib/llvm-*/lib/clang/*/lib/linux/libclang_rt.scudo_standalone-x86_64.so 2>/dev/null | sort -V | tail -1 || true)
	have scudo "${scudo:-/nonexistent/libclang_rt.scudo_standalone.so}"
	have jemalloc /usr/lib/x86_64-linux-gnu/libjemalloc.so.2
	have mimalloc /usr/lib/x86_64-linux-gnu/libmimalloc.so.2
	if [ -d "$HM_SRC" ] && command -v clang-19 >/dev/null; then
		rm -rf "$work/hm" && cp -r "$HM_SRC" "$work/hm"
		make -C "$work/hm" -j2 CC=clang-19 CXX=clang++-19 >"$work/hm-default.log" 2>&1 &&
			make -C "$work/hm" -j2 CC=clang-19 CXX=clang++-19 VARIANT=light >"$work/hm-light.log" 2>&1 || true
		have hardened_malloc "$work/hm/out/libhardened_malloc.so"
		have hardened_malloc-light "$work/hm/out-light/libhardened_malloc-light.so"
	else
		echo "anchor: no hardened_malloc (needs $HM_SRC and clang-19)" >&2
	fi
	declare -a G=("hardalloc-release:release:hardalloc" "hardalloc-hardened:hardened:hardalloc"
		"hardalloc-hardened-stacks:hardened:hardalloc-stacks" "hardalloc-hardened-q256k:hardened:hardalloc-q256k"
		"go-make:release:gomake")
	if [ -n "${BEFORE:-}" ]; then
		# The same Go side built against another checkout of hardalloc: a copy
		# of this module whose replace directive points there.
		rm -rf "$work/before" && mkdir -p "$work/before" && cp -r ../go.mod ../go.sum "$here" "$work/before/"
		(cd "$work/before" && go mod edit -replace "github.com/hardalloc/hardalloc=$(cd "$BEFORE" && pwd)" &&
			go build -o "$work/bin/goside-before" ./anchor/cmd/goside &&
			go build -tags hardened -o "$work/bin/goside-before-hardened" ./anchor/cmd/goside)
		G+=("before-release:before:hardalloc" "before-hardened:before-hardened:hardalloc"
			"before-hardened-stacks:before-hardened:hardalloc-stacks")
	fi
fi

job() { # kind spec workload arg
	local kind=$1 spec=$2 wl=$3 arg=$4 label lib build cfg
	label=${spec%%:*}
	if [ "$kind" = c ]; then
		lib=${spec#*:}
		if [ "${lib%%:*}" = asan ]; then
			ASAN_OPTIONS="detect_leaks=0:${lib#asan:}" "${pin[@]}" "$work/bin/workload-asan" "$wl" "$arg"
		else
			local z=()
			[ "${label%-calloc}" = "$label" ] || z=(calloc)
			LD_PRELOAD=$lib "${pin[@]}" "$work/bin/workload" "$wl" "$arg" "${z[@]}"
		fi
	else
		IFS=: read -r label build cfg <<<"$spec"
		"${pin[@]}" "$work/bin/goside-$build" "$wl" "$cfg" "$arg"
	fi | sed "s/^/R $label $r /" >>"$raw"
}

declare -a jobs=()
for s in "${C[@]}"; do jobs+=("c|$s|pair|$PAIR_MS" "c|$s|mixed|$STEPS"); done
for s in "${G[@]}"; do jobs+=("go|$s|pair|$PAIR_MS" "go|$s|mixed|$STEPS"); done
n=${#jobs[@]}
for ((r = 0; r < ROUNDS; r++)); do
	echo "anchor: round $((r + 1))/$ROUNDS ($n jobs)" >&2
	for ((i = 0; i < n; i++)); do
		IFS='|' read -r kind spec wl arg <<<"${jobs[$(((i + r * 5) % n))]}"
		job "$kind" "$spec" "$wl" "$arg"
	done
done
echo "anchor: raw results in $raw" >&2
"$work/bin/table" -base "$base" "$raw"
