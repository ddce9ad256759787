#include "textflag.h"

// func verifyClearAVX2(p unsafe.Pointer, n uintptr, w uint64) uintptr
// Compares the 32-byte chunks from p (n bytes, a multiple of 32) with
// pattern word w repeated, storing zeros over each chunk that matches,
// and returns how many bytes it cleared: all n, or up to the first chunk
// that differs, left as found. One load and one store per chunk, where
// a verify then a clear read and wrote every line twice.
TEXT ·verifyClearAVX2(SB), NOSPLIT, $0-32
	MOVQ p+0(FP), DI
	MOVQ n+8(FP), CX
	MOVQ w+16(FP), AX
	MOVQ AX, X1
	VPBROADCASTQ X1, Y1
	VPXOR Y0, Y0, Y0
	XORQ BX, BX
loop128:
	LEAQ 128(BX), DX
	CMPQ DX, CX
	JA loop32
	VPCMPEQB (DI)(BX*1), Y1, Y2
	VPCMPEQB 32(DI)(BX*1), Y1, Y3
	VPCMPEQB 64(DI)(BX*1), Y1, Y4
	VPCMPEQB 96(DI)(BX*1), Y1, Y5
	VPAND Y3, Y2, Y2
	VPAND Y5, Y4, Y4
	VPAND Y4, Y2, Y2
	VPMOVMSKB Y2, DX
	CMPL DX, $0xffffffff
	JNE loop32 // a chunk among these differs: find it 32 bytes at a time
	VMOVDQU Y0, (DI)(BX*1)
	VMOVDQU Y0, 32(DI)(BX*1)
	VMOVDQU Y0, 64(DI)(BX*1)
	VMOVDQU Y0, 96(DI)(BX*1)
	ADDQ $128, BX
	JMP loop128
loop32:
	LEAQ 32(BX), DX
	CMPQ DX, CX
	JA done
	VPCMPEQB (DI)(BX*1), Y1, Y2
	VPMOVMSKB Y2, DX
	CMPL DX, $0xffffffff
	JNE done
	VMOVDQU Y0, (DI)(BX*1)
	ADDQ $32, BX
	JMP loop32
done:
	VZEROUPPER
	MOVQ BX, ret+24(FP)
	RET
