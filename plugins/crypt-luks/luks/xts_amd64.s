//go:build amd64 && !purego

#include "textflag.h"

// AES-XTS over whole 128-byte groups with AES-NI: eight blocks go
// through the rounds together, so the AES unit's pipeline stays full.
// The tweak is doubled in GF(2^128) in X9 (X10 scratch, X11 the mask);
// each group's eight tweaks wait on the stack.

DATA xtsMask<>+0(SB)/8, $0x87
DATA xtsMask<>+8(SB)/8, $1
GLOBL xtsMask<>(SB), (NOPTR+RODATA), $16

// X9 = X9·α
#define DOUBLE \
	PSHUFD $0x13, X9, X10; \
	PSRAL  $31, X10; \
	PAND   X11, X10; \
	PADDQ  X9, X9; \
	PXOR   X10, X9

#define TWEAKS \
	MOVOU X9, 0(SP);   DOUBLE; \
	MOVOU X9, 16(SP);  DOUBLE; \
	MOVOU X9, 32(SP);  DOUBLE; \
	MOVOU X9, 48(SP);  DOUBLE; \
	MOVOU X9, 64(SP);  DOUBLE; \
	MOVOU X9, 80(SP);  DOUBLE; \
	MOVOU X9, 96(SP);  DOUBLE; \
	MOVOU X9, 112(SP); DOUBLE

// X0..X7 = src ⊕ tweak ⊕ round key 0
#define LOAD \
	MOVOU 0(SI), X0;   MOVOU 0(SP), X8;   PXOR X8, X0; \
	MOVOU 16(SI), X1;  MOVOU 16(SP), X8;  PXOR X8, X1; \
	MOVOU 32(SI), X2;  MOVOU 32(SP), X8;  PXOR X8, X2; \
	MOVOU 48(SI), X3;  MOVOU 48(SP), X8;  PXOR X8, X3; \
	MOVOU 64(SI), X4;  MOVOU 64(SP), X8;  PXOR X8, X4; \
	MOVOU 80(SI), X5;  MOVOU 80(SP), X8;  PXOR X8, X5; \
	MOVOU 96(SI), X6;  MOVOU 96(SP), X8;  PXOR X8, X6; \
	MOVOU 112(SI), X7; MOVOU 112(SP), X8; PXOR X8, X7; \
	MOVOU 0(AX), X8; \
	PXOR X8, X0; PXOR X8, X1; PXOR X8, X2; PXOR X8, X3; \
	PXOR X8, X4; PXOR X8, X5; PXOR X8, X6; PXOR X8, X7

// dst = X0..X7 ⊕ tweak
#define STORE \
	MOVOU 0(SP), X8;   PXOR X8, X0; MOVOU X0, 0(DI); \
	MOVOU 16(SP), X8;  PXOR X8, X1; MOVOU X1, 16(DI); \
	MOVOU 32(SP), X8;  PXOR X8, X2; MOVOU X2, 32(DI); \
	MOVOU 48(SP), X8;  PXOR X8, X3; MOVOU X3, 48(DI); \
	MOVOU 64(SP), X8;  PXOR X8, X4; MOVOU X4, 64(DI); \
	MOVOU 80(SP), X8;  PXOR X8, X5; MOVOU X5, 80(DI); \
	MOVOU 96(SP), X8;  PXOR X8, X6; MOVOU X6, 96(DI); \
	MOVOU 112(SP), X8; PXOR X8, X7; MOVOU X7, 112(DI)

#define TWEAKS_CLEAR \
	MOVOU X8, 0(SP);  MOVOU X8, 16(SP); MOVOU X8, 32(SP); MOVOU X8, 48(SP); \
	MOVOU X8, 64(SP); MOVOU X8, 80(SP); MOVOU X8, 96(SP); MOVOU X8, 112(SP)

#define ARGS \
	MOVQ nr+0(FP), CX; \
	MOVQ xk+8(FP), AX; \
	MOVQ dst+16(FP), DI; \
	MOVQ src+24(FP), SI; \
	MOVQ n+32(FP), DX; \
	MOVQ tweak+40(FP), BX; \
	MOVOU (BX), X9; \
	MOVOU xtsMask<>(SB), X11

// func xtsEncAsm(nr int, xk *byte, dst, src *byte, n int, tweak *[16]byte)
TEXT ·xtsEncAsm(SB), NOSPLIT, $128-48
	ARGS
encGroup:
	CMPQ DX, $128
	JB   encDone
	TWEAKS
	LOAD
	LEAQ 16(AX), R8
	MOVQ CX, R9
	DECQ R9

encRound:
	MOVOU (R8), X8
	AESENC X8, X0
	AESENC X8, X1
	AESENC X8, X2
	AESENC X8, X3
	AESENC X8, X4
	AESENC X8, X5
	AESENC X8, X6
	AESENC X8, X7
	ADDQ $16, R8
	DECQ R9
	JNZ  encRound
	MOVOU (R8), X8
	AESENCLAST X8, X0
	AESENCLAST X8, X1
	AESENCLAST X8, X2
	AESENCLAST X8, X3
	AESENCLAST X8, X4
	AESENCLAST X8, X5
	AESENCLAST X8, X6
	AESENCLAST X8, X7
	STORE
	ADDQ $128, SI
	ADDQ $128, DI
	SUBQ $128, DX
	JMP  encGroup

encDone:
	// The stack held tweaks: leave nothing of them.
	PXOR  X8, X8
	TWEAKS_CLEAR
	RET

// func xtsDecAsm(nr int, xk *byte, dst, src *byte, n int, tweak *[16]byte)
TEXT ·xtsDecAsm(SB), NOSPLIT, $128-48
	ARGS
decGroup:
	CMPQ DX, $128
	JB   decDone
	TWEAKS
	LOAD
	LEAQ 16(AX), R8
	MOVQ CX, R9
	DECQ R9

decRound:
	MOVOU (R8), X8
	AESDEC X8, X0
	AESDEC X8, X1
	AESDEC X8, X2
	AESDEC X8, X3
	AESDEC X8, X4
	AESDEC X8, X5
	AESDEC X8, X6
	AESDEC X8, X7
	ADDQ $16, R8
	DECQ R9
	JNZ  decRound
	MOVOU (R8), X8
	AESDECLAST X8, X0
	AESDECLAST X8, X1
	AESDECLAST X8, X2
	AESDECLAST X8, X3
	AESDECLAST X8, X4
	AESDECLAST X8, X5
	AESDECLAST X8, X6
	AESDECLAST X8, X7
	STORE
	ADDQ $128, SI
	ADDQ $128, DI
	SUBQ $128, DX
	JMP  decGroup

decDone:
	PXOR  X8, X8
	TWEAKS_CLEAR
	RET

// func invMixColumns(dst, src *byte)
TEXT ·invMixColumns(SB), NOSPLIT, $0-16
	MOVQ   dst+0(FP), DI
	MOVQ   src+8(FP), SI
	MOVOU  (SI), X0
	AESIMC X0, X1
	MOVOU  X1, (DI)
	RET
