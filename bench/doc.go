// Package bench compares hardalloc with its peers in one run: Go's heap
// (make, garbage collection included), sync.Pool, modernc.org/memory and C
// malloc through cgo. It is a nested module so the main go.mod keeps only
// its three declared dependencies.
//
//	cd bench && go test -bench . -count 6 | tee new.txt && benchstat new.txt
//
// bench/anchor times hardalloc against C allocators (glibc, Scudo,
// jemalloc, mimalloc, hardened_malloc) on identical C and Go workloads,
// each in its own process, interleaved over rounds, and prints medians and
// per-round ratios: `make anchor` at the repository root.
package bench
