//go:build !hardened

package hardened

// Enabled reports whether the hardening layer is compiled in (-tags hardened).
// Like internal/race, this file and enabled_on.go are the only two places
// that know the build tag; everything else writes `if Enabled { ... }` and a
// release build compiles those branches away.
const Enabled = false
