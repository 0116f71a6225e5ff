//go:build !purego

#include "textflag.h"

// Byte weights 32, 31, ..., 1: byte i of a 32-byte block is counted in s2
// 32-i times within the block.
DATA weights<>+0(SB)/8, $0x191a1b1c1d1e1f20
DATA weights<>+8(SB)/8, $0x1112131415161718
DATA weights<>+16(SB)/8, $0x090a0b0c0d0e0f10
DATA weights<>+24(SB)/8, $0x0102030405060708
GLOBL weights<>(SB), RODATA|NOPTR, $32

DATA ones16<>+0(SB)/8, $0x0001000100010001
DATA ones16<>+8(SB)/8, $0x0001000100010001
DATA ones16<>+16(SB)/8, $0x0001000100010001
DATA ones16<>+24(SB)/8, $0x0001000100010001
GLOBL ones16<>(SB), RODATA|NOPTR, $32

// func sums32(p []byte) (total, prefix, weighted uint64)
// len(p) is a multiple of 32 and at most 64 KiB (the lanes do not overflow).
TEXT ·sums32(SB), NOSPLIT, $0-48
	MOVQ p_base+0(FP), SI
	MOVQ p_len+8(FP), CX
	SHRQ $5, CX
	VPXOR Y0, Y0, Y0 // zero
	VPXOR Y1, Y1, Y1 // byte sums so far, 4 x uint64
	VPXOR Y2, Y2, Y2 // sum of Y1 before each block, 4 x uint64
	VPXOR Y3, Y3, Y3 // weighted sums, 8 x uint32
	VMOVDQU weights<>(SB), Y4
	VMOVDQU ones16<>(SB), Y5
	TESTQ CX, CX
	JZ done

loop:
	VMOVDQU (SI), Y6
	VPADDQ Y1, Y2, Y2
	VPSADBW Y0, Y6, Y7
	VPADDQ Y7, Y1, Y1
	VPMADDUBSW Y4, Y6, Y8
	VPMADDWD Y5, Y8, Y8
	VPADDD Y8, Y3, Y3
	ADDQ $32, SI
	DECQ CX
	JNZ loop

done:
	VEXTRACTI128 $1, Y1, X9
	VPADDQ X9, X1, X1
	VPSHUFD $0x4e, X1, X9
	VPADDQ X9, X1, X1
	MOVQ X1, AX
	MOVQ AX, total+24(FP)

	VEXTRACTI128 $1, Y2, X9
	VPADDQ X9, X2, X2
	VPSHUFD $0x4e, X2, X9
	VPADDQ X9, X2, X2
	MOVQ X2, AX
	MOVQ AX, prefix+32(FP)

	VEXTRACTI128 $1, Y3, X9
	VPADDD X9, X3, X3
	VPSHUFD $0x4e, X3, X9
	VPADDD X9, X3, X3
	VPSHUFD $0xb1, X3, X9
	VPADDD X9, X3, X3
	MOVL X3, AX
	MOVQ AX, weighted+40(FP)
	VZEROUPPER
	RET
