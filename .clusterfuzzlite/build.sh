#!/bin/bash -eu
# Builds every root fuzz target twice, release and -tags hardened, the way
# OSS-Fuzz builds native Go fuzzers. scripts/native-libfuzzer.sh does the
# same without Docker (and is what `make test` runs as a smoke).
cd "$SRC/hardalloc"
# The shim go-118-fuzz-build swaps in for package testing.
printf 'package hardalloc\n\nimport _ "github.com/AdamKorcz/go-118-fuzz-build/testing"\n' >register_libfuzzer.go
go get github.com/AdamKorcz/go-118-fuzz-build/testing
for t in FuzzAllocFree FuzzRealloc FuzzAligned FuzzThreadLifecycle FuzzMisuse; do
	compile_native_go_fuzzer github.com/hardalloc/hardalloc "$t" "${t}_release"
	compile_native_go_fuzzer github.com/hardalloc/hardalloc "$t" "${t}_hardened" hardened
done
