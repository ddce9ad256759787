# Shared by the fuzz scripts (sourced, not run).

# deadline_flake OUTPUT NEW_CRASHER succeeds when a failed `go test -fuzz`
# run found nothing: Go up to 1.26 can end a -fuzztime run with "context
# deadline exceeded" and no failing input, a race in its own coordinator
# (go.dev/issue/75804, fixed in Go 1.27). A real failure always writes its
# input to testdata/fuzz/<Target>/, so a run with no new file and that
# message is reported as a flake, not a crash.
deadline_flake() {
	[ -z "$2" ] && grep -q 'context deadline exceeded' <<<"$1"
}

# crash_key OUTPUT prints the line a crash is known by, its dedup key:
# hardalloc's SUMMARY line or the harness's first failure (without its op
# number), else ASan's SUMMARY, else the panic. A failure that only a
# pooled allocator showed wraps the failure it saw: the key is that one,
# so two different failures of that kind stay two crashes.
crash_key() {
	local key
	key=$(grep -oE 'SUMMARY: hardalloc: .*|fuzz: op -?[0-9]+: .*' <<<"$1" | sed 's/fuzz: op -\?[0-9]*: //' |
		awk 'NR == 1 { k = $0; if (k !~ /^fails only on a pooled allocator/) { print; done = 1; exit } next }
			{ print "on a pooled allocator only: " $0; done = 1; exit }
			END { if (!done && NR > 0) print k }')
	[ -n "$key" ] || key=$(grep -m1 -oE 'SUMMARY: AddressSanitizer: [a-z-]+' <<<"$1")
	[ -n "$key" ] || key=$(grep -m1 -E 'panic:|fatal error:' <<<"$1" || echo "unknown failure")
	printf '%s\n' "$key"
}

# ASANFLAGS: the flags of every -asan fuzz build. Go builds every package
# of an -asan binary with ASan's instrumentation, its fuzzing engine too,
# and the engine walks its coverage counters a byte at a time after every
# exec (internal/fuzz SnapshotCoverage and diffCoverage, inlined into
# testing/internal/testdeps) and passes them to the coordinator as JSON
# (encoding/json, encoding/base64): three calls into ASan's runtime per
# counter, tens of thousands of counters. Measured here, the trivial
# FuzzBaseline ran 1,771 execs/s under -asan against 52,393 without;
# with these four packages built uninstrumented, 37,678. They are Go's
# engine and codecs, not code under test; so is go-fuzz-headers, which
# decodes each input into operations (its GetNBytes was a quarter of the
# instrumented loads left in a FuzzAllocFree worker under -asan). The
# fuzz layer (package fuzz) is built uninstrumented too: under -asan it
# makes no bad access of its own (its misuses are Free and Realloc calls
# there), and what ASan's checks of its reads and writes of live blocks
# would say (a live block poisoned), its shadow oracle
# (fuzz/shadow_asan.go) checks directly: each op's new blocks whole and
# every live block's edges after every op, every byte of every block
# every 16 ops and at the end.
# FuzzAllocFree ran 16-25% more steady-state execs so.
# hardalloc itself keeps every check.
ASANFLAGS=(-asan
	-gcflags=internal/fuzz=-asan=false
	-gcflags=testing/internal/testdeps=-asan=false
	-gcflags=encoding/json=-asan=false
	-gcflags=encoding/base64=-asan=false
	-gcflags=github.com/AdaLogics/go-fuzz-headers=-asan=false
	-gcflags=github.com/hardalloc/hardalloc/fuzz=-asan=false)
