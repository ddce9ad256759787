package quarantine

// The -asan copies of the package's files (internal/asangen): the queue's
// bookkeeping is hardalloc's, not the program's, and is not instrumented.
//go:generate go run ../internal/cmd/asangen quarantine.go shards.go
