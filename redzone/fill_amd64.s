#include "textflag.h"

// func fillWords(p unsafe.Pointer, n uintptr, w uint64)
// Stores w at p, p+8, ..., n/8 words: REP STOSQ, writes only (the
// doubling memmove it replaces read every byte it wrote).
TEXT ·fillWords(SB), NOSPLIT, $0-24
	MOVQ p+0(FP), DI
	MOVQ n+8(FP), CX
	MOVQ w+16(FP), AX
	SHRQ $3, CX
	REP; STOSQ
	RET
