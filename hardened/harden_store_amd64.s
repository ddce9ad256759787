//go:build (hardened || asan) && !race

#include "textflag.h"

// func storeRelease(p *uint64, v uint64)
//
// A plain MOV: on amd64 (TSO) every store is a release store, and the call
// is a compiler barrier. sync/atomic's Store is an XCHG, which also drains
// the store buffer (a full fence) and costs several times more.
TEXT ·storeRelease(SB), NOSPLIT, $0-16
	MOVQ p+0(FP), AX
	MOVQ v+8(FP), BX
	MOVQ BX, (AX)
	RET

// func storePair(p *uint64, v, m uint64)
//
// storeRelease of v at p, after a plain store of m at p+8.
TEXT ·storePair(SB), NOSPLIT, $0-24
	MOVQ p+0(FP), AX
	MOVQ v+8(FP), BX
	MOVQ m+16(FP), CX
	MOVQ CX, 8(AX)
	MOVQ BX, (AX)
	RET

// func prefetchSlot4(p uintptr, lines int, rec, shadow uintptr)
//
// prefetch of lines cache lines from p, then of rec, then of shadow
// unless it is 0.
TEXT ·prefetchSlot4(SB), NOSPLIT, $0-32
	MOVQ p+0(FP), AX
	MOVQ lines+8(FP), CX
	TESTQ CX, CX
	JLE recs
loop:
	PREFETCHT0 (AX)
	ADDQ $64, AX
	DECQ CX
	JNZ loop
recs:
	MOVQ rec+16(FP), AX
	PREFETCHT0 (AX)
	MOVQ shadow+24(FP), AX
	TESTQ AX, AX
	JZ done
	PREFETCHT0 (AX)
done:
	RET
