package fuzz

import (
	"encoding/binary"
	"fmt"
	"hash/fnv"
	"math/bits"
	"strings"

	fuzzheaders "github.com/AdaLogics/go-fuzz-headers"

	"github.com/hardalloc/hardalloc/hardened"
)

// OpKind is one operation of a program.
type OpKind uint8

const (
	OpAlloc        OpKind = iota // Slot = Alloc(Size)
	OpAllocAligned               // Slot = AllocAligned(Size, 1<<Aux)
	OpRealloc                    // Slot = Realloc(Slot, Size)
	OpFree                       // Free(Slot)
	OpWrite                      // fill Slot with a pattern seeded by Aux
	OpVerify                     // compare every live block with the model
	OpCheck                      // Allocator.Check() must be clean
	OpSpawn                      // start a thread that allocates, writes, verifies and frees
	OpJoin                       // join the thread in Slot
	OpDetach                     // detach the thread in Slot
	OpYield                      // runtime.Gosched: let threads interleave
	OpMisuse                     // inject the misuse Aux into Slot (FuzzMisuse only)
	OpBulkAlloc                  // allocate a batch of blocks (count and sizes from Size and Aux) into the bulk set
	OpBulkFree                   // free a batch of the bulk set, in an Aux-driven order, on this or another goroutine
	OpRaceFree                   // free Slot from two goroutines at once: exactly one DoubleFree, nothing else
	OpReset                      // join the threads, verify, Reset: the allocator starts over
	numOps
)

var opNames = [...]string{"Alloc", "AllocAligned", "Realloc", "Free", "Write", "Verify", "Check",
	"Spawn", "Join", "Detach", "Yield", "Misuse", "BulkAlloc", "BulkFree", "RaceFree", "Reset"}

func (k OpKind) String() string {
	if int(k) < len(opNames) {
		return opNames[k]
	}
	return fmt.Sprintf("OpKind(%d)", k)
}

// Op is one decoded operation.
type Op struct {
	Kind OpKind
	Slot int // 0 .. NumSlots-1
	Size int // decoded size (0 .. MaxSize)
	Aux  int // pattern seed, log2 alignment, misuse variant, thread work
}

func (o Op) String() string {
	return fmt.Sprintf("{%v slot=%d size=%d aux=%d}", o.Kind, o.Slot, o.Size, o.Aux)
}

// Program is a decoded fuzz input: the allocator seed and the ops.
// Decode derives Seed from a hash of the whole input, so ops start at the
// first byte (short inputs already do something) and any change to an
// input changes the run; Encode does not encode it.
type Program struct {
	Seed uint64
	Ops  []Op
}

func (p Program) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "seed %#x, %d ops:\n", p.Seed, len(p.Ops))
	for i, o := range p.Ops {
		fmt.Fprintf(&b, "  %3d %v\n", i, o)
	}
	return b.String()
}

const (
	// NumSlots is how many blocks (and threads) a program can hold at once.
	NumSlots = 16
	// MaxOps caps a program so no input comes near the fuzzer's hang limit.
	MaxOps = 256
	// MaxSize is the largest size a program asks for.
	MaxSize = 256 << 10
	opBytes = 8
)

// Mix says which ops a target generates: each entry is an op, repeated to
// weight it. The op byte of an input indexes it modulo its length.
type Mix []OpKind

// The mixes used by the root fuzz targets.
var (
	// (New ops go at the end of a mix, so that the generated seed corpora,
	// which index their mix, decode as before. Bulk ops do a hundred
	// allocator calls' work: one entry each among a dozen or more cheap
	// ones keeps the exec rate up.)
	MixAllocFree = Mix{OpAlloc, OpAlloc, OpAlloc, OpFree, OpFree, OpFree, OpWrite, OpWrite, OpVerify, OpRealloc, OpAllocAligned, OpCheck, OpYield,
		OpBulkAlloc, OpBulkFree, OpRaceFree, OpReset, OpAlloc, OpFree, OpWrite, OpAlloc, OpFree}
	MixRealloc = Mix{OpRealloc, OpRealloc, OpRealloc, OpRealloc, OpAlloc, OpFree, OpWrite, OpWrite, OpVerify,
		OpBulkAlloc, OpBulkFree, OpRealloc, OpRealloc, OpAlloc, OpFree}
	MixAligned = Mix{OpAllocAligned, OpAllocAligned, OpAllocAligned, OpFree, OpFree, OpWrite, OpVerify, OpRealloc, OpAlloc,
		OpBulkAlloc, OpBulkFree, OpAllocAligned, OpAllocAligned, OpFree, OpFree}
	MixThread = Mix{OpSpawn, OpSpawn, OpJoin, OpJoin, OpDetach, OpYield, OpAlloc, OpFree, OpWrite, OpVerify, OpCheck,
		OpBulkAlloc, OpBulkFree, OpRaceFree, OpSpawn, OpJoin, OpAlloc, OpFree}
	MixMisuse = Mix{OpAlloc, OpAlloc, OpFree, OpWrite, OpRealloc, OpAllocAligned, OpMisuse,
		OpBulkAlloc, OpBulkFree, OpAlloc, OpFree, OpWrite, OpAlloc, OpFree}
)

// Decode turns fuzz input into a program. Every prefix of an input is a
// valid program: running out of data ends it. The primitive reads use
// go-fuzz-headers' consumer; the op structure is decoded here (its struct
// generator is not stable enough to keep a corpus meaningful).
func Decode(data []byte, mix Mix) Program {
	c := fuzzheaders.NewConsumer(data)
	h := fnv.New64a() // FNV-1a, the values the hand-written loop gave
	h.Write(data)
	p := Program{Seed: h.Sum64()}
	p.Ops = make([]Op, 0, min(len(data)/opBytes, MaxOps))
	for len(p.Ops) < MaxOps {
		// One read per op (kind, slot, size selector, 4-byte big-endian
		// raw size, aux): each consumer call is instrumented under -fuzz.
		b, err := c.GetNBytes(opBytes)
		if err != nil {
			break
		}
		p.Ops = append(p.Ops, Op{
			Kind: mix[int(b[0])%len(mix)],
			Slot: int(b[1]) % NumSlots,
			Size: decodeSize(b[2], binary.BigEndian.Uint32(b[3:7])),
			Aux:  int(b[7]),
		})
	}
	return p
}

// decodeSize biases sizes toward what finds allocator bugs: zero, tiny,
// size-class edges, page and class-range boundaries, and large blocks.
// Selector 0xff is what Encode writes: an exact size, as an exponent byte
// and a value below 1<<exponent (exactSize), so that mutating either part
// keeps sizes log-uniform, as the other selectors are. (Before, 0xff took
// raw modulo MaxSize: every mutation of an encoded seed asked for a
// uniform 0-256 KiB block, and hardened execs spent their time zeroing
// and mprotecting large blocks.)
func decodeSize(sel byte, raw uint32) int {
	if sel == 0xff {
		return exactSize(raw)
	}
	switch sel % 16 {
	case 0:
		return 0
	case 1:
		return int(raw%16) + 1
	case 2: // a class edge, or one byte either side of it
		edges := [...]int{16, 32, 48, 64, 128, 256, 288, 512, 1024, 1152, 4096, 8192, 16384, 32768, 65536, 128 << 10, hardened.MaxSmall, 256 << 10}
		e := edges[int(raw%uint32(len(edges)))]
		return e + int((raw>>8)%3) - 1
	case 3:
		return int(raw % 256)
	case 4, 5: // log-uniform up to 4 KiB, or up to the largest class
		return logUniform(raw, [...]int{12, 17}[sel%16-4])
	case 6: // either side of the small limit: large blocks of a few pages
		if raw%4 == 0 {
			return hardened.MaxSmall - 8<<10 + int(raw>>2%(24<<10))
		}
		return logUniform(raw, 17)
	case 7: // rarely, anything up to MaxSize (every page of it is checked)
		if raw%64 == 0 {
			return int(raw>>8) % (MaxSize + 1)
		}
		return int(raw % 512)
	default:
		return int(raw % 128)
	}
}

// exactSize decodes selector 0xff's raw: the top byte is an exponent e
// (modulo 20), the low 24 bits a value taken modulo 1<<e, capped at
// MaxSize. encodeSize is its inverse.
func exactSize(raw uint32) int {
	return min(belowPow2(raw, 20), MaxSize)
}

// encodeSize returns raw with exactSize(raw) == n, for 0 <= n <= MaxSize.
func encodeSize(n int) uint32 {
	return uint32(bits.Len(uint(n)))<<24 | uint32(n)
}

// logUniform returns a size in [1, 1<<bits] whose logarithm is roughly
// uniform: every size class is reached about as often, at a small
// fraction of the bytes a uniform draw would make each op touch (zeroing,
// the model's checks and hardened builds' poison all cost per byte).
func logUniform(raw uint32, bits int) int {
	return 1 + belowPow2(raw, bits+1)
}

// belowPow2 is the decoding exactSize and logUniform share: the top byte
// of raw picks an exponent e modulo exps, the low 24 bits a value modulo
// 1<<e.
func belowPow2(raw uint32, exps int) int {
	e := int(raw>>24) % exps
	return int(raw&0xffffff) % (1 << e)
}

// Encode turns a program back into input bytes that Decode(…, mix)
// decodes to the same ops. Seed corpora are written with it, as Go.
func Encode(p Program, mix Mix) []byte {
	var out []byte
	for _, o := range p.Ops {
		kb := -1
		for i, k := range mix {
			if k == o.Kind {
				kb = i
				break
			}
		}
		if kb < 0 {
			panic(fmt.Sprintf("fuzz.Encode: op %v is not in the mix", o.Kind))
		}
		out = append(out, byte(kb), byte(o.Slot), 0xff)
		if o.Size < 0 || o.Size > MaxSize {
			panic(fmt.Sprintf("fuzz.Encode: size %d out of range", o.Size))
		}
		out = binary.BigEndian.AppendUint32(out, encodeSize(o.Size))
		out = append(out, byte(o.Aux))
	}
	return out
}
