#include "textflag.h"

// Frame-pointer unwinding, as the runtime's tracer does: BP is the frame
// pointer of our Go caller; 0(BP) is its caller's frame pointer and 8(BP)
// the return address into its caller. The chain ends at a zero frame
// pointer (a goroutine's first frame), and at any frame pointer outside
// the goroutine's stack [g.stack.lo, g.stack.hi) or not above the one
// before: a goroutine that a cgo callback runs (libFuzzer's harness calls
// into Go from C) has C frames beyond its first, whose frame pointers may
// be anything. fpCallers, callersAt and hashAt walk alike (the macros
// below), the first two storing each return address, the last mixing it
// into a hash.
//
// Registers: AX frames left to skip, CX the most to take, R8 frames
// taken, DX the frame pointer, R11 and R12 the stack's bounds, R9 the
// return address, R13 scratch.

// WALK_START loads the walk's registers from skip and the limit in CX.
#define WALK_START \
	MOVQ skip+0(FP), AX; \
	MOVQ BP, DX; \
	WALK_BOUNDS

// WALK_AT starts the walk at the frame record fp, skipping nothing.
#define WALK_AT \
	XORQ AX, AX; \
	MOVQ fp+0(FP), DX; \
	WALK_BOUNDS

// WALK_BOUNDS loads the goroutine's stack bounds and zeroes the count.
#define WALK_BOUNDS \
	MOVQ (TLS), R10; \
	MOVQ 0(R10), R11; \
	MOVQ 8(R10), R12; \
	XORQ R8, R8

// WALK_FRAME jumps to done unless DX is a frame record inside the stack
// (the record's 16 bytes included), fewer than CX frames are taken and
// the record's return address, loaded into R9, is not zero.
#define WALK_FRAME(done) \
	CMPQ DX, R11; \
	JCS done; \
	LEAQ 16(DX), R13; \
	CMPQ R13, R12; \
	JHI done; \
	CMPQ R8, CX; \
	JGE done; \
	MOVQ 8(DX), R9; \
	TESTQ R9, R9; \
	JZ done

// WALK_NEXT moves DX to the caller's frame, or jumps to done when that
// is not above this one.
#define WALK_NEXT(done) \
	MOVQ 0(DX), R13; \
	CMPQ R13, DX; \
	JLS done; \
	MOVQ R13, DX

// STORE_WALK is fpCallers's loop: it stores each return address the
// walk takes into DI and returns their number.
#define STORE_WALK \
loop: \
	WALK_FRAME(done); \
	TESTQ AX, AX; \
	JZ store; \
	DECQ AX; \
	JMP next; \
store: \
	MOVQ R9, (DI)(R8*8); \
	INCQ R8; \
next: \
	WALK_NEXT(done); \
	JMP loop; \
done: \
	MOVQ R8, ret+32(FP); \
	RET

// func fpCallers(skip int, pcs []uintptr) int
TEXT ·fpCallers(SB), NOSPLIT, $0-40
	MOVQ pcs_base+8(FP), DI
	MOVQ pcs_len+16(FP), CX
	WALK_START
	STORE_WALK

// func callersAt(fp unsafe.Pointer, pcs []uintptr) int
TEXT ·callersAt(SB), NOSPLIT, $0-40
	MOVQ pcs_base+8(FP), DI
	MOVQ pcs_len+16(FP), CX
	WALK_AT
	STORE_WALK

// func hashAt(fp unsafe.Pointer, max int) (hash uint64, n int)
//
// callersAt's walk, storing nothing: it mixes each return address the
// walk takes into BX and returns the hash and their number. Hashing in
// the walk costs little more than the walk: the multiply chain and the
// chain of frame-pointer loads run side by side.
TEXT ·hashAt(SB), NOSPLIT, $0-32
	MOVQ max+8(FP), CX
	WALK_AT
	XORQ BX, BX
	MOVQ $0x9e3779b97f4a7c15, SI
hloop:
	WALK_FRAME(hdone)
	XORQ R9, BX
	ROLQ $27, BX
	IMULQ SI, BX
	INCQ R8
	WALK_NEXT(hdone)
	JMP hloop
hdone:
	XORQ R8, BX
	ROLQ $27, BX
	IMULQ SI, BX
	MOVQ BX, hash+16(FP)
	MOVQ R8, n+24(FP)
	RET

// func frame() unsafe.Pointer
//
// The frame record of frame's caller: with no frame of its own, frame
// leaves BP as its caller set it.
TEXT ·frame(SB), NOSPLIT, $0-8
	MOVQ BP, ret+0(FP)
	RET

// func getg() unsafe.Pointer
TEXT ·getg(SB), NOSPLIT, $0-8
	MOVQ (TLS), AX
	MOVQ AX, ret+0(FP)
	RET
