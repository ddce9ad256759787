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
