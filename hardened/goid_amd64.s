#include "textflag.h"

// func getg() unsafe.Pointer
TEXT ·getg(SB), NOSPLIT, $0-8
	MOVQ (TLS), AX
	MOVQ AX, ret+0(FP)
	RET

// func fpCallers(skip int, pcs []uintptr) int
//
// Frame-pointer unwinding, as the runtime's tracer does: BP is the frame
// pointer of our Go caller; 0(BP) is its caller's frame pointer and 8(BP)
// the return address into its caller. The chain ends at a zero frame
// pointer (a goroutine's first frame).
TEXT ·fpCallers(SB), NOSPLIT, $0-40
	MOVQ skip+0(FP), AX
	MOVQ pcs_base+8(FP), DI
	MOVQ pcs_len+16(FP), CX
	MOVQ BP, DX
	XORQ R8, R8
loop:
	TESTQ DX, DX
	JZ done
	CMPQ R8, CX
	JGE done
	MOVQ 8(DX), R9
	TESTQ R9, R9
	JZ done
	TESTQ AX, AX
	JZ store
	DECQ AX
	JMP next
store:
	MOVQ R9, (DI)(R8*8)
	INCQ R8
next:
	MOVQ 0(DX), DX
	JMP loop
done:
	MOVQ R8, ret+32(FP)
	RET
