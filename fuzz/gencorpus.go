//go:build ignore

// gencorpus writes the seed corpora of the root fuzz targets from the
// readable programs below (go generate ./fuzz).
package main

import (
	"fmt"
	"log"
	"os"
	"path/filepath"

	"github.com/hardalloc/hardalloc/fuzz"
)

type op = fuzz.Op

var (
	alloc   = func(slot, size int) op { return op{Kind: fuzz.OpAlloc, Slot: slot, Size: size} }
	aligned = func(slot, size, log2 int) op { return op{Kind: fuzz.OpAllocAligned, Slot: slot, Size: size, Aux: log2} }
	realloc = func(slot, size int) op { return op{Kind: fuzz.OpRealloc, Slot: slot, Size: size} }
	free    = func(slot int) op { return op{Kind: fuzz.OpFree, Slot: slot} }
	write   = func(slot, pat int) op { return op{Kind: fuzz.OpWrite, Slot: slot, Aux: pat} }
	verify  = op{Kind: fuzz.OpVerify}
	check   = op{Kind: fuzz.OpCheck}
	yield   = op{Kind: fuzz.OpYield}
	spawn   = func(slot, work, size int) op { return op{Kind: fuzz.OpSpawn, Slot: slot, Aux: work, Size: size} }
	join    = func(slot int) op { return op{Kind: fuzz.OpJoin, Slot: slot} }
	detach  = func(slot int) op { return op{Kind: fuzz.OpDetach, Slot: slot} }
	misuse  = func(slot, size, variant int) op { return op{Kind: fuzz.OpMisuse, Slot: slot, Size: size, Aux: variant} }
)

var corpora = map[string]struct {
	mix   fuzz.Mix
	progs [][]op
}{
	"FuzzAllocFree": {fuzz.MixAllocFree, [][]op{
		{alloc(0, 16), write(0, 1), alloc(1, 17), write(1, 2), verify, free(0), free(1), check},
		{alloc(0, 0), alloc(1, 0), free(0), alloc(2, 65536), write(2, 3), alloc(3, 65537), write(3, 4), verify, free(2), free(3)},
		{alloc(0, 4096), write(0, 5), realloc(0, 8192), verify, realloc(0, 100), verify, free(0), alloc(5, 300), check},
	}},
	"FuzzRealloc": {fuzz.MixRealloc, [][]op{
		{realloc(0, 10), write(0, 1), realloc(0, 1000), verify, realloc(0, 70000), verify, realloc(0, 3), verify, free(0)},
		{alloc(1, 256), write(1, 9), realloc(1, 257), realloc(1, 255), verify, realloc(1, 0), realloc(1, fuzz.MaxSize), verify},
	}},
	"FuzzAligned": {fuzz.MixAligned, [][]op{
		{aligned(0, 1, 5), write(0, 1), aligned(1, 100, 12), write(1, 2), aligned(2, 5000, 16), verify, free(0), free(1), free(2)},
		{aligned(3, 0, 6), aligned(4, 65536, 14), write(4, 7), realloc(4, 10), verify},
	}},
	"FuzzThreadLifecycle": {fuzz.MixThread, [][]op{
		{spawn(0, 3, 64), spawn(1, 1, 48), join(0), detach(1), alloc(2, 48), write(2, 1), yield, verify, free(2), check},
		{spawn(0, 0, 0), detach(0), spawn(1, 7, 5000), yield, yield, join(1), check},
		{spawn(2, 2, 100), yield, yield, yield, join(2), spawn(3, 1, 48), yield, detach(3), check},
	}},
	"FuzzMisuse": {fuzz.MixMisuse, [][]op{
		{alloc(0, 40), write(0, 1), misuse(0, 40, fuzz.MisuseDoubleFree)},
		{alloc(0, 100), misuse(0, 100, fuzz.MisuseInteriorFree)},
		{misuse(1, 64, fuzz.MisuseForeignFree)},
		{alloc(2, 24), misuse(2, 24, fuzz.MisuseReallocFreed)},
		{alloc(3, 56), misuse(3, 56, fuzz.MisuseHeaderDamage)},
		{alloc(3, 72), misuse(3, 72, fuzz.MisuseForgedHeader)},
		{alloc(4, 33), misuse(4, 33, fuzz.MisuseOverflow)},
		{alloc(5, 80), misuse(5, 80, fuzz.MisuseUnderflow)},
		{alloc(6, 48), misuse(6, 48, fuzz.MisuseWriteAfterFree)},
	}},
}

func main() {
	for target, c := range corpora {
		dir := filepath.Join("..", "testdata", "fuzz", target)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			log.Fatal(err)
		}
		for i, ops := range c.progs {
			data := fuzz.Encode(fuzz.Program{Seed: uint64(i + 1), Ops: ops}, c.mix)
			body := fmt.Sprintf("go test fuzz v1\n[]byte(%q)\n", data)
			if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("seed-%d", i)), []byte(body), 0o644); err != nil {
				log.Fatal(err)
			}
		}
	}
}
