// Package bench compares hardalloc with its peers in one run: Go's heap
// (make, garbage collection included), sync.Pool, modernc.org/memory and C
// malloc through cgo. It is a nested module so the main go.mod keeps only
// its three declared dependencies.
//
//	cd bench && go test -bench . -count 6 | tee new.txt && benchstat new.txt
package bench
