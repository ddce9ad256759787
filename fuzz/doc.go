// Package fuzz checks package hardened against a shadow model: it decodes
// fuzz input into a program of allocator operations (program.go: Op,
// Program, Decode, Encode), runs it on a pooled allocator (pool.go) while
// a model of every block the program holds predicts each result
// (model.go), and returns a *Failure at the first disagreement (Run,
// exec.go).
//
// What a run checks, after every op or at the program's end:
//
//   - every live block holds exactly the bytes the program wrote, and new
//     blocks are zeroed, aligned and overlap no live block (overlap.go);
//   - Stats agree with the model, class by class, and Audit's invariants
//     hold (every slot in exactly one place, Stats.Mapped adds up);
//   - freed blocks stay in the quarantine for its budget and order
//     (residency.go, hardened builds);
//   - under -asan, ASan's shadow: a live block addressable for exactly its
//     length, a freed or quarantined one poisoned (shadow_asan.go);
//   - misuse (FuzzMisuse: double and invalid frees, overflows, writes
//     after free found in the quarantine or when the slot is handed out
//     again, or as a fault on a large block in its quarantine, forged
//     headers, writes to a protected site record; and on sampled blocks
//     writes after free and into the guard pages, which must fault;
//     misuse.go) is reported,
//     with the right kind and block, and the allocator goes on working;
//   - threads (package thread) start, join, detach, fail and panic as
//     fated, and Reset, as Close, waits for detached ones still in their
//     panic path, which must have freed their capsules (threads.go);
//   - bulk programs keep thousands of blocks live at once (bulk.go).
//
// Config (config.go) derives the allocator's Options and the harness's
// configuration (internal/ctl's Extra: the chosen cache, class space,
// junk fill) from the program's seed. The native Go fuzz targets are in
// the module root's fuzz_test.go; gofuzz.go holds the entry points of
// go-fuzz and libFuzzer builds (-tags gofuzz), and gencorpus.go the seed
// corpus.
package fuzz
