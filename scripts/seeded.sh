#!/usr/bin/env bash
# Seeded-bug campaign: each reintroduced bug (faultinject) against the
# target expected to find it, from an EMPTY corpus and a fresh fuzz cache,
# with a time cap. Prints the time to detect; exits non-zero if any bug
# survives its cap.
set -uo pipefail
cd "$(dirname "$0")/.."
. scripts/fuzzlib.sh
CAP=${CAP:-120s}
TAGS=${TAGS:-hardened,faultinject}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
git ls-files --cached --others --exclude-standard | grep -v '^testdata/fuzz/' | tar -cf - -T - | tar -xf - -C "$work"
cd "$work"
fail=0
echo "| seeded bug | target | tags | time to detect | report |"
echo "|---|---|---|---|---|"
# env:name:target[:tags] (tags default to $TAGS)
specs=(
	"HARDALLOC_BUG=1:Realloc copies one byte short:FuzzRealloc"
	"HARDALLOC_BUG=2:freed slot pushed twice (overlap):FuzzAllocFree"
	"HARDALLOC_BUG=3:reuse without zeroing:FuzzAllocFree"
	"HARDALLOC_BUG=4:cache flush loses a slot:FuzzAllocFree"
	"HARDALLOC_BUG=5:cache refill duplicates a slot:FuzzAllocFree"
	"HARDALLOC_BUG=6:non-atomic free state change (release fast path):FuzzAllocFree:faultinject"
	"HARDALLOC_BUG=7:quarantine item evicted twice:FuzzAllocFree"
	"HARDALLOC_BUG=8:canary skipped for one size class:FuzzMisuse"
	"HARDALLOC_BUG=9:zeroing skipped on the spill path:FuzzAllocFree"
	"HARDALLOC_BUG=10:slab never purged (free count read before its increment):FuzzAllocFree:faultinject"
	"HARDALLOC_BUG=11:header checksum keyed by page, not slot (a copied header passes):FuzzMisuse:faultinject"
	"HARDALLOC_BUG=12:Trim purges already purged slabs (the mapped count Limit enforces drifts):FuzzAllocFree:faultinject"
	"HARDALLOC_BUG=13:the block that fills a P's batch of frees skips the quarantine (recycled at once):FuzzAllocFree"
	"HARDALLOC_BUG=14:the last granule of a large block wholly addressable to ASan (up to 7 bytes past the end):FuzzAllocFree:faultinject+asan"
	"HARDALLOC_BUG=15:a slot evicted from the quarantine is handed out again as free, its poison not verified:FuzzMisuse"
	"HARDALLOC_BUG=16:a poisoned slot handed out again has its payload zeroed but not verified:FuzzMisuse"
	"HARDALLOC_BUG=17:a poisoned slot handed out again has its payload verified but not the bytes around it:FuzzMisuse"
	"HARDALLOC_BUG=18:a freed sampled block's page left readable and writable (release):FuzzMisuse:faultinject"
	"HARDALLOC_BUG=19:a sampled block's page made accessible with the guard page after it (release):FuzzMisuse:faultinject"
	"HARDALLOC_BUG=20:a freed large block whose pages the quarantine keeps left accessible:FuzzMisuse"
	"HARDALLOC_BUG=21:the metadata guard never makes a page read-only again (its open count read before the decrement):FuzzMisuse"
	"HARDALLOC_BUG=22:a purge verifies only the free, poisoned slots of a wholly free slab, not those evicted from the quarantine (a write after free goes with the pages):FuzzMisuse"
	"HARDALLOC_FAULT=1:worker frees capsule:FuzzThreadLifecycle"
	"HARDALLOC_FAULT=2:capsule double free:FuzzThreadLifecycle"
	"HARDALLOC_FAULT=3:late unlock after release:FuzzThreadLifecycle"
	"HARDALLOC_FAULT=4:a detached worker releases its allocator before its panic report and last reference drop:FuzzThreadLifecycle"
)
ONLY=${ONLY:-}
for spec in "${specs[@]}"; do
	IFS=: read -r env name target tags <<<"$spec"
	tags=${tags:-$TAGS}
	# tags+asan: the run is an -asan build (the bug is in the shadow).
	flags=()
	case $tags in *+asan) tags=${tags%+asan}; flags=("${ASANFLAGS[@]}") ;; esac
	[ -z "$ONLY" ] || grep -qE "$ONLY" <<<"$env" || continue
	rm -rf testdata/fuzz "$work/cache"
	start=$(date +%s%N)
	out=$(env "$env" go test "${flags[@]}" -tags "$tags" -run '^$' -fuzz "^${target}\$" -fuzztime "$CAP" -fuzzminimizetime 5x -parallel 2 -test.fuzzcachedir="$work/cache" . 2>&1)
	ms=$(( ($(date +%s%N) - start) / 1000000 ))
	# What the harness said first: "fuzz: op N: <what it saw>".
	kind=$(grep -m1 -oE 'fuzz: op -?[0-9]+: .{0,90}' <<<"$out" | sed 's/|/\\|/g')
	if grep -qE '^(# |.*\.go:[0-9]+:[0-9]+: )' <<<"$out" && ! grep -q -- '--- FAIL' <<<"$out"; then
		printf '| %s | %s | %s | BUILD FAILED | - |\n' "$name" "$target" "$tags"
		printf '%s\n' "$out" | head -20 >&2
		fail=1
	elif grep -q -- '--- FAIL' <<<"$out" && ! deadline_flake "$out" "$(ls testdata/fuzz/"$target" 2>/dev/null)"; then
		printf '| %s | %s | %s | %d.%03d s | %s |\n' "$name" "$target" "$tags${flags[*]:+ -asan}" $((ms/1000)) $((ms%1000)) "${kind:-see log}"
	else
		printf '| %s | %s | %s | not found in %s | - |\n' "$name" "$target" "$tags" "$CAP"
		fail=1
	fi
done
exit $fail
