// Module tools pins the developer tools that `make test` runs (through
// `go tool -modfile=tools/go.mod`), so a fresh clone needs nothing on PATH
// but Go: staticcheck, actionlint, and dvyukov/go-fuzz's builder and
// driver (at the version the main module requires). Keeping them here
// keeps the main go.mod at its three dependencies.
package tools
