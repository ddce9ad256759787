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
// pointer (a goroutine's first frame), and at any frame pointer outside
// the goroutine's stack [g.stack.lo, g.stack.hi) or not above the one
// before: a goroutine that a cgo callback runs (libFuzzer's harness calls
// into Go from C) has C frames beyond its first, whose frame pointers may
// be anything.
TEXT ·fpCallers(SB), NOSPLIT, $0-40
	MOVQ skip+0(FP), AX
	MOVQ pcs_base+8(FP), DI
	MOVQ pcs_len+16(FP), CX
	MOVQ BP, DX
	MOVQ (TLS), R10
	MOVQ 0(R10), R11 // g.stack.lo
	MOVQ 8(R10), R12 // g.stack.hi
	XORQ R8, R8
loop:
	CMPQ DX, R11
	JCS done // below the stack (zero included)
	LEAQ 16(DX), R13
	CMPQ R13, R12
	JHI done // the frame record would end past the stack's top
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
	MOVQ 0(DX), R13
	CMPQ R13, DX
	JLS done // a caller's frame is above its callee's
	MOVQ R13, DX
	JMP loop
done:
	MOVQ R8, ret+32(FP)
	RET

// func fpHash(skip, max int) (hash uint64, n int)
//
// fpCallers's walk, storing nothing: it returns how many return addresses
// fpCallers(skip, pcs[:max]) would write and their stackHash. Hashing in
// the walk costs little more than the walk: the multiply chain and the
// chain of frame-pointer loads run side by side.
TEXT ·fpHash(SB), NOSPLIT, $0-32
	MOVQ skip+0(FP), AX
	MOVQ max+8(FP), CX
	MOVQ BP, DX
	MOVQ (TLS), R10
	MOVQ 0(R10), R11 // g.stack.lo
	MOVQ 8(R10), R12 // g.stack.hi
	XORQ R8, R8
	XORQ BX, BX
	MOVQ $0x9e3779b97f4a7c15, SI
hloop:
	CMPQ DX, R11
	JCS hdone
	LEAQ 16(DX), R13
	CMPQ R13, R12
	JHI hdone
	CMPQ R8, CX
	JGE hdone
	MOVQ 8(DX), R9
	TESTQ R9, R9
	JZ hdone
	TESTQ AX, AX
	JZ hmix
	DECQ AX
	JMP hnext
hmix:
	XORQ R9, BX
	ROLQ $27, BX
	IMULQ SI, BX
	INCQ R8
hnext:
	MOVQ 0(DX), R13
	CMPQ R13, DX
	JLS hdone
	MOVQ R13, DX
	JMP hloop
hdone:
	XORQ R8, BX
	ROLQ $27, BX
	IMULQ SI, BX
	MOVQ BX, hash+16(FP)
	MOVQ R8, n+24(FP)
	RET
