//go:build race || asan

package hardened_test

const raceOrAsan = true
