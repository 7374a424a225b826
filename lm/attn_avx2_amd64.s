//go:build amd64 && !purego

#include "textflag.h"

// attnTile6x16 is one 6x16 tile of C = alpha*A@B + beta*C (beta == 0: C is
// not read) with A read in place (row i of the tile at a + i*lda, k steps ak
// apart: ak = 1 for a row-major A, lda = 1 and ak its leading dimension for
// a transposed one) and B k steps of 16 values, ldb apart: the GEMM
// micro-kernels of kernels (sgemmKernel6x16AVX2RowA, sgemmKernel6x16AVX2),
// called by attention directly on its packed K^T, in-place V and its
// probabilities, tile by tile, so that each block of 6 rows reads exactly
// the keys (or queries) its causal mask lets through. Registers: rows 0-3 of
// A from SI, 4-5 from R13 (R12 = 3*lda bytes, R14 = ak bytes); B in Y0, Y1;
// accumulators Y4..Y15.
#define ATILESTEP \
	VMOVUPS      (DI), Y0; \
	VMOVUPS      32(DI), Y1; \
	VBROADCASTSS (SI), Y2; \
	VFMADD231PS  Y0, Y2, Y4; \
	VFMADD231PS  Y1, Y2, Y5; \
	VBROADCASTSS (SI)(R10*1), Y3; \
	VFMADD231PS  Y0, Y3, Y6; \
	VFMADD231PS  Y1, Y3, Y7; \
	VBROADCASTSS (SI)(R10*2), Y2; \
	VFMADD231PS  Y0, Y2, Y8; \
	VFMADD231PS  Y1, Y2, Y9; \
	VBROADCASTSS (SI)(R12*1), Y3; \
	VFMADD231PS  Y0, Y3, Y10; \
	VFMADD231PS  Y1, Y3, Y11; \
	VBROADCASTSS (R13), Y2; \
	VFMADD231PS  Y0, Y2, Y12; \
	VFMADD231PS  Y1, Y2, Y13; \
	VBROADCASTSS (R13)(R10*1), Y3; \
	VFMADD231PS  Y0, Y3, Y14; \
	VFMADD231PS  Y1, Y3, Y15; \
	ADDQ         R14, SI; \
	ADDQ         R14, R13; \
	ADDQ         R11, DI

// func attnTile6x16(k int, a *float32, lda, ak int, b *float32, ldb int, c *float32, ldc int, alpha *float32, as int, beta float32)
TEXT ·attnTile6x16(SB), NOSPLIT, $0-84
	MOVQ k+0(FP), CX
	MOVQ a+8(FP), SI
	MOVQ lda+16(FP), R10
	SHLQ $2, R10
	MOVQ ak+24(FP), R14
	SHLQ $2, R14
	MOVQ b+32(FP), DI
	MOVQ ldb+40(FP), R11
	SHLQ $2, R11
	MOVQ c+48(FP), DX
	MOVQ ldc+56(FP), R8
	SHLQ $2, R8
	LEAQ (R10)(R10*2), R12
	LEAQ (SI)(R10*4), R13

	VXORPS Y4, Y4, Y4
	VXORPS Y5, Y5, Y5
	VXORPS Y6, Y6, Y6
	VXORPS Y7, Y7, Y7
	VXORPS Y8, Y8, Y8
	VXORPS Y9, Y9, Y9
	VXORPS Y10, Y10, Y10
	VXORPS Y11, Y11, Y11
	VXORPS Y12, Y12, Y12
	VXORPS Y13, Y13, Y13
	VXORPS Y14, Y14, Y14
	VXORPS Y15, Y15, Y15

	MOVQ CX, BX
	SHRQ $2, BX
	JZ   tail_atile

loop4_atile:
	ATILESTEP
	ATILESTEP
	ATILESTEP
	ATILESTEP
	DECQ BX
	JNZ  loop4_atile

tail_atile:
	ANDQ $3, CX
	JZ   store_atile

loop1_atile:
	ATILESTEP
	DECQ CX
	JNZ  loop1_atile

store_atile:
	MOVQ         alpha+64(FP), AX
	MOVQ         as+72(FP), BX
	SHLQ         $2, BX
	VBROADCASTSS (AX), Y0
	VMULPS       Y0, Y4, Y4
	VMULPS       Y0, Y5, Y5
	ADDQ         BX, AX
	VBROADCASTSS (AX), Y0
	VMULPS       Y0, Y6, Y6
	VMULPS       Y0, Y7, Y7
	ADDQ         BX, AX
	VBROADCASTSS (AX), Y0
	VMULPS       Y0, Y8, Y8
	VMULPS       Y0, Y9, Y9
	ADDQ         BX, AX
	VBROADCASTSS (AX), Y0
	VMULPS       Y0, Y10, Y10
	VMULPS       Y0, Y11, Y11
	ADDQ         BX, AX
	VBROADCASTSS (AX), Y0
	VMULPS       Y0, Y12, Y12
	VMULPS       Y0, Y13, Y13
	ADDQ         BX, AX
	VBROADCASTSS (AX), Y0
	VMULPS       Y0, Y14, Y14
	VMULPS       Y0, Y15, Y15

	// beta == +0 or -0: overwrite C without reading it.
	MOVL  beta+80(FP), AX
	TESTL $0x7fffffff, AX
	JZ    overwrite_atile

	VBROADCASTSS beta+80(FP), Y1
	VFMADD231PS 0(DX), Y1, Y4
	VFMADD231PS 32(DX), Y1, Y5
	VMOVUPS     Y4, 0(DX)
	VMOVUPS     Y5, 32(DX)
	ADDQ        R8, DX
	VFMADD231PS 0(DX), Y1, Y6
	VFMADD231PS 32(DX), Y1, Y7
	VMOVUPS     Y6, 0(DX)
	VMOVUPS     Y7, 32(DX)
	ADDQ        R8, DX
	VFMADD231PS 0(DX), Y1, Y8
	VFMADD231PS 32(DX), Y1, Y9
	VMOVUPS     Y8, 0(DX)
	VMOVUPS     Y9, 32(DX)
	ADDQ        R8, DX
	VFMADD231PS 0(DX), Y1, Y10
	VFMADD231PS 32(DX), Y1, Y11
	VMOVUPS     Y10, 0(DX)
	VMOVUPS     Y11, 32(DX)
	ADDQ        R8, DX
	VFMADD231PS 0(DX), Y1, Y12
	VFMADD231PS 32(DX), Y1, Y13
	VMOVUPS     Y12, 0(DX)
	VMOVUPS     Y13, 32(DX)
	ADDQ        R8, DX
	VFMADD231PS 0(DX), Y1, Y14
	VFMADD231PS 32(DX), Y1, Y15
	VMOVUPS     Y14, 0(DX)
	VMOVUPS     Y15, 32(DX)
	VZEROUPPER
	RET

overwrite_atile:
	VMOVUPS Y4, 0(DX)
	VMOVUPS Y5, 32(DX)
	ADDQ    R8, DX
	VMOVUPS Y6, 0(DX)
	VMOVUPS Y7, 32(DX)
	ADDQ    R8, DX
	VMOVUPS Y8, 0(DX)
	VMOVUPS Y9, 32(DX)
	ADDQ    R8, DX
	VMOVUPS Y10, 0(DX)
	VMOVUPS Y11, 32(DX)
	ADDQ    R8, DX
	VMOVUPS Y12, 0(DX)
	VMOVUPS Y13, 32(DX)
	ADDQ    R8, DX
	VMOVUPS Y14, 0(DX)
	VMOVUPS Y15, 32(DX)
	VZEROUPPER
	RET


// func attnTranspose8(dst *float32, ldd int, src *float32, lds int, n8 int)
//
// Transposes 8 rows of src (lds float32s apart) and 8*n8 columns into dst:
// dst[p*ldd+i] = src[i*lds+p] for i < 8, p < 8*n8, an 8x8 transpose in
// registers per block of 8 columns (the packing transpose of kernels), for
// attention's K^T and V^T panels.
TEXT ·attnTranspose8(SB), NOSPLIT, $0-40
	MOVQ dst+0(FP), DI
	MOVQ ldd+8(FP), R8
	SHLQ $2, R8
	MOVQ src+16(FP), SI
	MOVQ lds+24(FP), R10
	SHLQ $2, R10
	MOVQ n8+32(FP), CX
	TESTQ CX, CX
	JZ   attdone
	LEAQ (R10)(R10*2), R11 // 3 rows
	LEAQ (SI)(R10*4), R12  // row 4
	LEAQ (R8)(R8*2), R13   // 3 dst steps
	LEAQ (R8)(R8*4), BX    // 5 dst steps

attloop:
	VMOVUPS (SI), Y0
	VMOVUPS (SI)(R10*1), Y1
	VMOVUPS (SI)(R10*2), Y2
	VMOVUPS (SI)(R11*1), Y3
	VMOVUPS (R12), Y4
	VMOVUPS (R12)(R10*1), Y5
	VMOVUPS (R12)(R10*2), Y6
	VMOVUPS (R12)(R11*1), Y7

	VUNPCKLPS Y1, Y0, Y8
	VUNPCKHPS Y1, Y0, Y9
	VUNPCKLPS Y3, Y2, Y10
	VUNPCKHPS Y3, Y2, Y11
	VUNPCKLPS Y5, Y4, Y12
	VUNPCKHPS Y5, Y4, Y13
	VUNPCKLPS Y7, Y6, Y14
	VUNPCKHPS Y7, Y6, Y15

	VSHUFPS $0x44, Y10, Y8, Y0
	VSHUFPS $0xEE, Y10, Y8, Y1
	VSHUFPS $0x44, Y11, Y9, Y2
	VSHUFPS $0xEE, Y11, Y9, Y3
	VSHUFPS $0x44, Y14, Y12, Y4
	VSHUFPS $0xEE, Y14, Y12, Y5
	VSHUFPS $0x44, Y15, Y13, Y6
	VSHUFPS $0xEE, Y15, Y13, Y7

	VPERM2F128 $0x20, Y4, Y0, Y8
	VPERM2F128 $0x20, Y5, Y1, Y9
	VPERM2F128 $0x20, Y6, Y2, Y10
	VPERM2F128 $0x20, Y7, Y3, Y11
	VPERM2F128 $0x31, Y4, Y0, Y12
	VPERM2F128 $0x31, Y5, Y1, Y13
	VPERM2F128 $0x31, Y6, Y2, Y14
	VPERM2F128 $0x31, Y7, Y3, Y15

	// Column p of the block goes to dst + p*ldd.
	MOVQ    DI, R9
	VMOVUPS Y8, (R9)
	VMOVUPS Y9, (R9)(R8*1)
	VMOVUPS Y10, (R9)(R8*2)
	VMOVUPS Y11, (R9)(R13*1)
	VMOVUPS Y12, (R9)(R8*4)
	VMOVUPS Y13, (R9)(BX*1)
	LEAQ    (R9)(R13*2), R9 // 6 steps
	VMOVUPS Y14, (R9)
	VMOVUPS Y15, (R9)(R8*1)

	ADDQ $32, SI
	ADDQ $32, R12
	LEAQ (DI)(R8*8), DI
	DECQ CX
	JNZ  attloop

attdone:
	VZEROUPPER
	RET
