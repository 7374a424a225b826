//go:build amd64 && !purego

#include "textflag.h"

// attnTile6x32 is attnTile6x16 (attn_avx2_amd64.s) on AVX-512: one 6x32
// tile of C = alpha*A@B + beta*C, A read in place (row i at a + i*lda, k
// steps ak apart), the first 16 columns of B at b + k*ldb and the
// other 16 at b + k*ldb + b2 (b2 in bytes: the next panel of packed K^T, or
// the next 16 values of a row of V). Every element of C is the same chain of
// FMAs in k order as attnTile6x16's, so the two give the same bits.
// Registers: rows 0-3 of A from SI, 4-5 from R13 (R12 = 3*lda bytes, R14 =
// ak bytes); B in Z0, Z1; accumulators Z4..Z15.
#define ZTILESTEP \
	VMOVUPS      (DI), Z0; \
	VMOVUPS      (DI)(R9*1), Z1; \
	VBROADCASTSS (SI), Z2; \
	VFMADD231PS  Z0, Z2, Z4; \
	VFMADD231PS  Z1, Z2, Z5; \
	VBROADCASTSS (SI)(R10*1), Z3; \
	VFMADD231PS  Z0, Z3, Z6; \
	VFMADD231PS  Z1, Z3, Z7; \
	VBROADCASTSS (SI)(R10*2), Z2; \
	VFMADD231PS  Z0, Z2, Z8; \
	VFMADD231PS  Z1, Z2, Z9; \
	VBROADCASTSS (SI)(R12*1), Z3; \
	VFMADD231PS  Z0, Z3, Z10; \
	VFMADD231PS  Z1, Z3, Z11; \
	VBROADCASTSS (R13), Z2; \
	VFMADD231PS  Z0, Z2, Z12; \
	VFMADD231PS  Z1, Z2, Z13; \
	VBROADCASTSS (R13)(R10*1), Z3; \
	VFMADD231PS  Z0, Z3, Z14; \
	VFMADD231PS  Z1, Z3, Z15; \
	ADDQ         R14, SI; \
	ADDQ         R14, R13; \
	ADDQ         R11, DI

// func attnTile6x32(k int, a *float32, lda, ak int, b *float32, ldb int, b2 int, c *float32, ldc int, alpha *float32, as int, beta float32)
TEXT ·attnTile6x32(SB), NOSPLIT, $0-92
	MOVQ k+0(FP), CX
	MOVQ a+8(FP), SI
	MOVQ lda+16(FP), R10
	SHLQ $2, R10
	MOVQ ak+24(FP), R14
	SHLQ $2, R14
	MOVQ b+32(FP), DI
	MOVQ ldb+40(FP), R11
	SHLQ $2, R11
	MOVQ b2+48(FP), R9
	MOVQ c+56(FP), DX
	MOVQ ldc+64(FP), R8
	SHLQ $2, R8
	LEAQ (R10)(R10*2), R12
	LEAQ (SI)(R10*4), R13

	VPXORD Z4, Z4, Z4
	VPXORD Z5, Z5, Z5
	VPXORD Z6, Z6, Z6
	VPXORD Z7, Z7, Z7
	VPXORD Z8, Z8, Z8
	VPXORD Z9, Z9, Z9
	VPXORD Z10, Z10, Z10
	VPXORD Z11, Z11, Z11
	VPXORD Z12, Z12, Z12
	VPXORD Z13, Z13, Z13
	VPXORD Z14, Z14, Z14
	VPXORD Z15, Z15, Z15

	MOVQ CX, BX
	SHRQ $2, BX
	JZ   tail_ztile

loop4_ztile:
	ZTILESTEP
	ZTILESTEP
	ZTILESTEP
	ZTILESTEP
	DECQ BX
	JNZ  loop4_ztile

tail_ztile:
	ANDQ $3, CX
	JZ   store_ztile

loop1_ztile:
	ZTILESTEP
	DECQ CX
	JNZ  loop1_ztile

store_ztile:
	MOVQ         alpha+72(FP), AX
	MOVQ         as+80(FP), BX
	SHLQ         $2, BX
	VBROADCASTSS (AX), Z0
	VMULPS       Z0, Z4, Z4
	VMULPS       Z0, Z5, Z5
	ADDQ         BX, AX
	VBROADCASTSS (AX), Z0
	VMULPS       Z0, Z6, Z6
	VMULPS       Z0, Z7, Z7
	ADDQ         BX, AX
	VBROADCASTSS (AX), Z0
	VMULPS       Z0, Z8, Z8
	VMULPS       Z0, Z9, Z9
	ADDQ         BX, AX
	VBROADCASTSS (AX), Z0
	VMULPS       Z0, Z10, Z10
	VMULPS       Z0, Z11, Z11
	ADDQ         BX, AX
	VBROADCASTSS (AX), Z0
	VMULPS       Z0, Z12, Z12
	VMULPS       Z0, Z13, Z13
	ADDQ         BX, AX
	VBROADCASTSS (AX), Z0
	VMULPS       Z0, Z14, Z14
	VMULPS       Z0, Z15, Z15

	// beta == +0 or -0: overwrite C without reading it.
	MOVL  beta+88(FP), AX
	TESTL $0x7fffffff, AX
	JZ    overwrite_ztile

	VBROADCASTSS beta+88(FP), Z1
	VFMADD231PS 0(DX), Z1, Z4
	VFMADD231PS 64(DX), Z1, Z5
	VMOVUPS     Z4, 0(DX)
	VMOVUPS     Z5, 64(DX)
	ADDQ        R8, DX
	VFMADD231PS 0(DX), Z1, Z6
	VFMADD231PS 64(DX), Z1, Z7
	VMOVUPS     Z6, 0(DX)
	VMOVUPS     Z7, 64(DX)
	ADDQ        R8, DX
	VFMADD231PS 0(DX), Z1, Z8
	VFMADD231PS 64(DX), Z1, Z9
	VMOVUPS     Z8, 0(DX)
	VMOVUPS     Z9, 64(DX)
	ADDQ        R8, DX
	VFMADD231PS 0(DX), Z1, Z10
	VFMADD231PS 64(DX), Z1, Z11
	VMOVUPS     Z10, 0(DX)
	VMOVUPS     Z11, 64(DX)
	ADDQ        R8, DX
	VFMADD231PS 0(DX), Z1, Z12
	VFMADD231PS 64(DX), Z1, Z13
	VMOVUPS     Z12, 0(DX)
	VMOVUPS     Z13, 64(DX)
	ADDQ        R8, DX
	VFMADD231PS 0(DX), Z1, Z14
	VFMADD231PS 64(DX), Z1, Z15
	VMOVUPS     Z14, 0(DX)
	VMOVUPS     Z15, 64(DX)
	VZEROUPPER
	RET

overwrite_ztile:
	VMOVUPS Z4, 0(DX)
	VMOVUPS Z5, 64(DX)
	ADDQ    R8, DX
	VMOVUPS Z6, 0(DX)
	VMOVUPS Z7, 64(DX)
	ADDQ    R8, DX
	VMOVUPS Z8, 0(DX)
	VMOVUPS Z9, 64(DX)
	ADDQ    R8, DX
	VMOVUPS Z10, 0(DX)
	VMOVUPS Z11, 64(DX)
	ADDQ    R8, DX
	VMOVUPS Z12, 0(DX)
	VMOVUPS Z13, 64(DX)
	ADDQ    R8, DX
	VMOVUPS Z14, 0(DX)
	VMOVUPS Z15, 64(DX)
	VZEROUPPER
	RET
