# hardalloc: `make fuzz` is the main job, `make test` the whole test suite.
GO       ?= go
# Tools are built from the versions pinned in tools/go.mod into .bin/, so a
# fresh clone needs only Go (and, for `make libfuzzer`, Debian's clang).
BIN      := $(CURDIR)/.bin
export PATH := $(BIN):$(PATH)
# Scratch files (mktemp, go-fuzz-build, the smokes' corpora) stay in the
# repository's .tmp/, which `make test` empties when it ends.
export TMPDIR := $(CURDIR)/.tmp
$(shell mkdir -p $(TMPDIR))
FUZZTIME ?= 20s
TARGETS  ?= FuzzAllocFree FuzzRealloc FuzzAligned FuzzThreadLifecycle FuzzMisuse
MODES    ?= release hardened

.PHONY: clients anchor scaling anchor-smoke arrow-suites test test-asan test-arrow native-libfuzzer-smoke fuzz seeded lint corpus bench nightly-smoke gofuzz-smoke libfuzzer tools

# Every check CI runs: formatting, vet, staticcheck, and the tests (seed
# corpora included) with and without the race detector and -tags hardened.
test: tools lint nightly-smoke gofuzz-smoke native-libfuzzer-smoke anchor-smoke
	$(GO) test -count=1 ./...
	$(GO) test -count=1 -race ./...
	$(GO) test -count=1 -tags hardened ./...
	$(GO) test -count=1 -race -tags hardened ./...
	$(GO) test -count=1 -tags hardened,faultinject ./thread/ ./fuzz/
	$(GO) test -count=1 -race -tags faultinject -run 'Hook|Junk' ./hardened/
	$(GO) test -count=1 -race -tags hardened,faultinject -run 'Hook|Junk' ./hardened/
	$(MAKE) --no-print-directory test-asan
	$(MAKE) --no-print-directory test-arrow
	rm -rf $(TMPDIR)

# The Apache Arrow allocator (package arrowalloc; its tests that need arrow
# are the nested module arrowalloc/arrowtest): its tests in
# release and hardened builds, and under -asan where that links (a read
# after Release must be stopped at the read).
test-arrow:
	cd arrowalloc/arrowtest && $(GO) vet ./... && $(GO) test -count=1 ./... && $(GO) test -count=1 -tags hardened ./...
	@if echo 'int main(void){return 0;}' | $(CC) -fsanitize=address -x c - -o /dev/null 2>/dev/null; then \
		cd arrowalloc/arrowtest && $(GO) test -count=1 -asan ./...; \
	else echo "SKIP test-arrow -asan: no C compiler with AddressSanitizer"; fi

# The suite under AddressSanitizer (go test -asan; every -asan build has
# the hardening layer, so -tags hardened adds nothing there), with the
# access-time catalog; skipped, saying so, where no C compiler
# with ASan exists.
CC ?= cc
test-asan:
	@if echo 'int main(void){return 0;}' | $(CC) -fsanitize=address -x c - -o /dev/null 2>/dev/null; then \
		set -ex; \
		$(GO) test -count=1 -asan ./...; \
		$(GO) test -count=1 -asan -tags faultinject -run Asan ./thread/; \
	else \
		echo "SKIP test-asan: '$(CC) -fsanitize=address' does not link (install gcc, or clang with its ASan runtime)"; \
	fi

# staticcheck, actionlint, go-fuzz and go-fuzz-build at their pinned versions.
tools:
	cd tools && GOBIN=$(BIN) $(GO) install tool

# The go line is the oldest Go the module builds with: vet it with that Go
# (a toolchain the go command downloads from the module proxy).
GOMIN := $(shell sed -n 's/^go //p' go.mod)
lint: tools
	GOTOOLCHAIN=go$(GOMIN) $(GO) vet ./...
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || (gofmt -l $$(git ls-files '*.go'); echo "gofmt needed"; exit 1)
	$(GO) vet ./...
	$(GO) vet -tags hardened ./...
	$(GO) vet -tags hardened,faultinject ./...
	$(GO) vet -tags gofuzz ./...
	for tags in "" hardened race race,hardened hardened,faultinject gofuzz; do staticcheck -tags "$$tags" ./... || exit 1; done
	if echo 'int main(void){return 0;}' | $(CC) -fsanitize=address -x c - -o /dev/null 2>/dev/null; then \
		$(GO) vet -tags asan ./... && $(GO) vet -tags asan,faultinject ./... && \
		staticcheck -tags asan ./... && staticcheck -tags asan,faultinject ./...; fi
	cd arrowalloc/arrowtest && $(GO) vet ./... && $(GO) vet -tags hardened ./... && staticcheck ./... && staticcheck -tags hardened ./...
	cd bench && $(GO) vet ./... && staticcheck ./...
	actionlint .github/workflows/*.yml

# A short run of the nightly script, so it cannot rot unnoticed.
nightly-smoke:
	BUDGET=3s TARGETS=FuzzAllocFree MODES="release hardened+race" CORPUS=$$(mktemp -d) \
		CRASHERS=$$(mktemp -d) SUMMARY=$$(mktemp -d)/summary.md scripts/nightly-fuzz.sh

# The bounded fuzz campaign: every target in release and hardened builds,
# FUZZTIME each; ASAN=1 runs it all under AddressSanitizer.
fuzz:
	FUZZTIME=$(FUZZTIME) MODES="$(MODES)" ASAN=$(ASAN) scripts/fuzz.sh $(TARGETS)

# Every seeded bug against its target from an empty corpus: time to detect.
seeded:
	CAP=$(or $(CAP),120s) scripts/seeded.sh

# A dvyukov/go-fuzz coordinator and two workers on loopback: the corpus and
# the exec count must grow.
gofuzz-smoke: tools
	DURATION=8 WORKERS=2 TAGS=hardened scripts/gofuzz-cluster.sh

# The native targets built as OSS-Fuzz and ClusterFuzzLite build them
# (go-118-fuzz-build, clang's libFuzzer), release and hardened, a few
# seconds each, and the seed's late unlock found through that path.
# Skipped, saying so, without clang (.ci/run installs it).
native-libfuzzer-smoke: tools
	@if command -v clang >/dev/null && echo 'int LLVMFuzzerTestOneInput(const char *d, long n){return 0;}' | clang -fsanitize=fuzzer -x c - -o /dev/null 2>/dev/null; then \
		SEEDED=1 scripts/native-libfuzzer.sh; \
	else \
		echo "SKIP native-libfuzzer-smoke: no clang with libFuzzer (Debian: apt-get install clang)"; \
	fi

# A libFuzzer build of the go-fuzz entry points (clang from Debian), run
# for DURATION seconds.
libfuzzer: tools
	DURATION=$(or $(DURATION),20) scripts/libfuzzer.sh

# Regenerate the seed corpora from readable Go programs.
corpus:
	$(GO) generate ./fuzz

bench:
	$(GO) test -run '^$$' -bench . -count 6 ./hardened

# hardalloc against glibc, Scudo, jemalloc, mimalloc and hardened_malloc
# (built from ../shared/anchors/hm when present) on the same C and Go
# workloads, interleaved; prints the medians and the ratio table. ASAN=1:
# hardalloc and Go's make under -asan against gcc's ASan allocator in C.
anchor:
	ASAN=$(ASAN) bench/anchor/run.sh

# Two-goroutine scaling, release and hardened, beside the compute loop's;
# robust to the two vCPUs running at different speeds (scripts/scaling.sh).
scaling:
	scripts/scaling.sh

# arrow-go's own test suites with their allocator swapped for arrowalloc
# (release and hardened) beside arrow's: pass/fail, reports, leaks by site.
arrow-suites:
	scripts/arrow-suites.sh

# Other people's suites (ristretto, badger, pebble) on hardalloc through
# cmd/hardalloc's overlay, release, hardened and -asan, beside the plain
# suites: a table of passes, failures and hardtest's verdicts.
clients:
	scripts/clients.sh

# One tiny round, so the anchor tooling cannot rot unnoticed.
anchor-smoke:
	cd bench && $(GO) vet ./anchor/...
	ROUNDS=1 PAIR_MS=2 STEPS=2000 bench/anchor/run.sh >/dev/null
	@if echo 'int main(void){return 0;}' | gcc -fsanitize=address -x c - -o /dev/null 2>/dev/null; then \
		set -x; ASAN=1 ROUNDS=1 PAIR_MS=2 STEPS=2000 bench/anchor/run.sh >/dev/null; \
	else \
		echo "SKIP anchor-smoke ASAN=1: 'gcc -fsanitize=address' does not link"; \
	fi
