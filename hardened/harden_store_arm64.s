//go:build (hardened || asan) && !race

#include "textflag.h"

// func storeRelease(p *uint64, v uint64)
TEXT ·storeRelease(SB), NOSPLIT, $0-16
	MOVD p+0(FP), R0
	MOVD v+8(FP), R1
	STLR R1, (R0)
	RET

// func storePair(p *uint64, v, m uint64)
TEXT ·storePair(SB), NOSPLIT, $0-24
	MOVD p+0(FP), R0
	MOVD v+8(FP), R1
	MOVD m+16(FP), R2
	MOVD R2, 8(R0)
	STLR R1, (R0)
	RET

// func prefetchSlot4(p uintptr, lines int, rec, shadow uintptr)
TEXT ·prefetchSlot4(SB), NOSPLIT, $0-32
	MOVD p+0(FP), R0
	MOVD lines+8(FP), R1
	CMP $0, R1
	BLE recs
loop:
	PRFM (R0), PLDL1KEEP
	ADD $64, R0
	SUB $1, R1
	CBNZ R1, loop
recs:
	MOVD rec+16(FP), R0
	PRFM (R0), PLDL1KEEP
	MOVD shadow+24(FP), R0
	CBZ R0, done
	PRFM (R0), PLDL1KEEP
done:
	RET
