#include "textflag.h"

// Micro-kernels of the blocked Sgemm (see gemm_blocked.go). Each computes one
// MR x NR tile of C from an A micro-panel (k steps of MR values, lda float32s
// apart) and a B micro-panel (k steps of NR values, ldb float32s apart). A
// packed panel has lda = MR or ldb = NR; a panel read in place from the
// caller's matrix has its leading dimension.
//
//	acc[i][j] = sum over p < k of a[p*lda+i] * b[p*ldb+j]
//	C[i][j]   = alpha*acc[i][j]                  if beta == 0 (C is not read)
//	C[i][j]   = alpha*acc[i][j] + beta*C[i][j]   otherwise
//
// C rows are ldc float32s apart. k >= 1.
//
// Registers: CX, BX k counters; SI A; DI B; R10 lda bytes; R11 ldb bytes;
// DX C; R8 ldc bytes; R9 scratch.

// 6x16 AVX2+FMA: B step in Y0,Y1; A values broadcast into Y2/Y3 in turn;
// accumulators Y4..Y15 (row i in Y(4+2i), Y(5+2i)).
#define STEP6x16 \
	VMOVUPS      0(DI), Y0; \
	VMOVUPS      32(DI), Y1; \
	VBROADCASTSS 0(SI), Y2; \
	VFMADD231PS  Y0, Y2, Y4; \
	VFMADD231PS  Y1, Y2, Y5; \
	VBROADCASTSS 4(SI), Y3; \
	VFMADD231PS  Y0, Y3, Y6; \
	VFMADD231PS  Y1, Y3, Y7; \
	VBROADCASTSS 8(SI), Y2; \
	VFMADD231PS  Y0, Y2, Y8; \
	VFMADD231PS  Y1, Y2, Y9; \
	VBROADCASTSS 12(SI), Y3; \
	VFMADD231PS  Y0, Y3, Y10; \
	VFMADD231PS  Y1, Y3, Y11; \
	VBROADCASTSS 16(SI), Y2; \
	VFMADD231PS  Y0, Y2, Y12; \
	VFMADD231PS  Y1, Y2, Y13; \
	VBROADCASTSS 20(SI), Y3; \
	VFMADD231PS  Y0, Y3, Y14; \
	VFMADD231PS  Y1, Y3, Y15; \
	ADDQ         R10, SI; \
	ADDQ         R11, DI

// func sgemmKernel6x16AVX2(k int, a *float32, lda int, b *float32, ldb int, c *float32, ldc int, alpha, beta float32)
TEXT ·sgemmKernel6x16AVX2(SB), NOSPLIT, $0-64
	MOVQ k+0(FP), CX
	MOVQ a+8(FP), SI
	MOVQ lda+16(FP), R10
	SHLQ $2, R10
	MOVQ b+24(FP), DI
	MOVQ ldb+32(FP), R11
	SHLQ $2, R11
	MOVQ c+40(FP), DX
	MOVQ ldc+48(FP), R8
	SHLQ $2, R8

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

	// Bring the C tile towards the cache while the products run.
	MOVQ DX, R9
	PREFETCHT0 (R9)
	PREFETCHT0 60(R9)
	ADDQ       R8, R9
	PREFETCHT0 (R9)
	PREFETCHT0 60(R9)
	ADDQ       R8, R9
	PREFETCHT0 (R9)
	PREFETCHT0 60(R9)
	ADDQ       R8, R9
	PREFETCHT0 (R9)
	PREFETCHT0 60(R9)
	ADDQ       R8, R9
	PREFETCHT0 (R9)
	PREFETCHT0 60(R9)
	ADDQ       R8, R9
	PREFETCHT0 (R9)
	PREFETCHT0 60(R9)

	MOVQ CX, BX
	SHRQ $2, BX
	JZ   tail_sgemmKernel6x16AVX2

loop4_sgemmKernel6x16AVX2:
	PREFETCHT0 (SI)(R10*8)
	PREFETCHT0 (DI)(R11*8)
	PREFETCHT0 60(DI)(R11*8)
	STEP6x16
	STEP6x16
	STEP6x16
	STEP6x16
	DECQ       BX
	JNZ        loop4_sgemmKernel6x16AVX2

tail_sgemmKernel6x16AVX2:
	ANDQ $3, CX
	JZ   store_sgemmKernel6x16AVX2

loop1_sgemmKernel6x16AVX2:
	STEP6x16
	DECQ CX
	JNZ  loop1_sgemmKernel6x16AVX2

store_sgemmKernel6x16AVX2:
	VBROADCASTSS alpha+56(FP), Y0
	VMULPS       Y0, Y4, Y4
	VMULPS       Y0, Y5, Y5
	VMULPS       Y0, Y6, Y6
	VMULPS       Y0, Y7, Y7
	VMULPS       Y0, Y8, Y8
	VMULPS       Y0, Y9, Y9
	VMULPS       Y0, Y10, Y10
	VMULPS       Y0, Y11, Y11
	VMULPS       Y0, Y12, Y12
	VMULPS       Y0, Y13, Y13
	VMULPS       Y0, Y14, Y14
	VMULPS       Y0, Y15, Y15

	// beta == +0 or -0: overwrite C without reading it.
	MOVL  beta+60(FP), AX
	TESTL $0x7fffffff, AX
	JZ    overwrite_sgemmKernel6x16AVX2

	VBROADCASTSS beta+60(FP), Y1
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

overwrite_sgemmKernel6x16AVX2:
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

// 12x32 AVX-512: B step in Z0,Z1; A values broadcast into Z2..Z4 in turn;
// accumulators Z8..Z31 (row i in Z(8+2i), Z(9+2i)).
#define STEP12x32 \
	VMOVUPS      0(DI), Z0; \
	VMOVUPS      64(DI), Z1; \
	VBROADCASTSS 0(SI), Z2; \
	VFMADD231PS  Z0, Z2, Z8; \
	VFMADD231PS  Z1, Z2, Z9; \
	VBROADCASTSS 4(SI), Z3; \
	VFMADD231PS  Z0, Z3, Z10; \
	VFMADD231PS  Z1, Z3, Z11; \
	VBROADCASTSS 8(SI), Z4; \
	VFMADD231PS  Z0, Z4, Z12; \
	VFMADD231PS  Z1, Z4, Z13; \
	VBROADCASTSS 12(SI), Z2; \
	VFMADD231PS  Z0, Z2, Z14; \
	VFMADD231PS  Z1, Z2, Z15; \
	VBROADCASTSS 16(SI), Z3; \
	VFMADD231PS  Z0, Z3, Z16; \
	VFMADD231PS  Z1, Z3, Z17; \
	VBROADCASTSS 20(SI), Z4; \
	VFMADD231PS  Z0, Z4, Z18; \
	VFMADD231PS  Z1, Z4, Z19; \
	VBROADCASTSS 24(SI), Z2; \
	VFMADD231PS  Z0, Z2, Z20; \
	VFMADD231PS  Z1, Z2, Z21; \
	VBROADCASTSS 28(SI), Z3; \
	VFMADD231PS  Z0, Z3, Z22; \
	VFMADD231PS  Z1, Z3, Z23; \
	VBROADCASTSS 32(SI), Z4; \
	VFMADD231PS  Z0, Z4, Z24; \
	VFMADD231PS  Z1, Z4, Z25; \
	VBROADCASTSS 36(SI), Z2; \
	VFMADD231PS  Z0, Z2, Z26; \
	VFMADD231PS  Z1, Z2, Z27; \
	VBROADCASTSS 40(SI), Z3; \
	VFMADD231PS  Z0, Z3, Z28; \
	VFMADD231PS  Z1, Z3, Z29; \
	VBROADCASTSS 44(SI), Z4; \
	VFMADD231PS  Z0, Z4, Z30; \
	VFMADD231PS  Z1, Z4, Z31; \
	ADDQ         R10, SI; \
	ADDQ         R11, DI

// func sgemmKernel12x32AVX512(k int, a *float32, lda int, b *float32, ldb int, c *float32, ldc int, alpha, beta float32)
TEXT ·sgemmKernel12x32AVX512(SB), NOSPLIT, $0-64
	MOVQ k+0(FP), CX
	MOVQ a+8(FP), SI
	MOVQ lda+16(FP), R10
	SHLQ $2, R10
	MOVQ b+24(FP), DI
	MOVQ ldb+32(FP), R11
	SHLQ $2, R11
	MOVQ c+40(FP), DX
	MOVQ ldc+48(FP), R8
	SHLQ $2, R8

	VPXORD Z8, Z8, Z8
	VPXORD Z9, Z9, Z9
	VPXORD Z10, Z10, Z10
	VPXORD Z11, Z11, Z11
	VPXORD Z12, Z12, Z12
	VPXORD Z13, Z13, Z13
	VPXORD Z14, Z14, Z14
	VPXORD Z15, Z15, Z15
	VPXORD Z16, Z16, Z16
	VPXORD Z17, Z17, Z17
	VPXORD Z18, Z18, Z18
	VPXORD Z19, Z19, Z19
	VPXORD Z20, Z20, Z20
	VPXORD Z21, Z21, Z21
	VPXORD Z22, Z22, Z22
	VPXORD Z23, Z23, Z23
	VPXORD Z24, Z24, Z24
	VPXORD Z25, Z25, Z25
	VPXORD Z26, Z26, Z26
	VPXORD Z27, Z27, Z27
	VPXORD Z28, Z28, Z28
	VPXORD Z29, Z29, Z29
	VPXORD Z30, Z30, Z30
	VPXORD Z31, Z31, Z31

	// Bring the C tile towards the cache while the products run.
	MOVQ DX, R9
	PREFETCHT0 (R9)
	PREFETCHT0 124(R9)
	ADDQ       R8, R9
	PREFETCHT0 (R9)
	PREFETCHT0 124(R9)
	ADDQ       R8, R9
	PREFETCHT0 (R9)
	PREFETCHT0 124(R9)
	ADDQ       R8, R9
	PREFETCHT0 (R9)
	PREFETCHT0 124(R9)
	ADDQ       R8, R9
	PREFETCHT0 (R9)
	PREFETCHT0 124(R9)
	ADDQ       R8, R9
	PREFETCHT0 (R9)
	PREFETCHT0 124(R9)
	ADDQ       R8, R9
	PREFETCHT0 (R9)
	PREFETCHT0 124(R9)
	ADDQ       R8, R9
	PREFETCHT0 (R9)
	PREFETCHT0 124(R9)
	ADDQ       R8, R9
	PREFETCHT0 (R9)
	PREFETCHT0 124(R9)
	ADDQ       R8, R9
	PREFETCHT0 (R9)
	PREFETCHT0 124(R9)
	ADDQ       R8, R9
	PREFETCHT0 (R9)
	PREFETCHT0 124(R9)
	ADDQ       R8, R9
	PREFETCHT0 (R9)
	PREFETCHT0 124(R9)

	MOVQ CX, BX
	SHRQ $2, BX
	JZ   tail_sgemmKernel12x32AVX512

loop4_sgemmKernel12x32AVX512:
	PREFETCHT0 (SI)(R10*8)
	PREFETCHT0 (DI)(R11*8)
	PREFETCHT0 124(DI)(R11*8)
	STEP12x32
	STEP12x32
	STEP12x32
	STEP12x32
	DECQ       BX
	JNZ        loop4_sgemmKernel12x32AVX512

tail_sgemmKernel12x32AVX512:
	ANDQ $3, CX
	JZ   store_sgemmKernel12x32AVX512

loop1_sgemmKernel12x32AVX512:
	STEP12x32
	DECQ CX
	JNZ  loop1_sgemmKernel12x32AVX512

store_sgemmKernel12x32AVX512:
	VBROADCASTSS alpha+56(FP), Z0
	VMULPS       Z0, Z8, Z8
	VMULPS       Z0, Z9, Z9
	VMULPS       Z0, Z10, Z10
	VMULPS       Z0, Z11, Z11
	VMULPS       Z0, Z12, Z12
	VMULPS       Z0, Z13, Z13
	VMULPS       Z0, Z14, Z14
	VMULPS       Z0, Z15, Z15
	VMULPS       Z0, Z16, Z16
	VMULPS       Z0, Z17, Z17
	VMULPS       Z0, Z18, Z18
	VMULPS       Z0, Z19, Z19
	VMULPS       Z0, Z20, Z20
	VMULPS       Z0, Z21, Z21
	VMULPS       Z0, Z22, Z22
	VMULPS       Z0, Z23, Z23
	VMULPS       Z0, Z24, Z24
	VMULPS       Z0, Z25, Z25
	VMULPS       Z0, Z26, Z26
	VMULPS       Z0, Z27, Z27
	VMULPS       Z0, Z28, Z28
	VMULPS       Z0, Z29, Z29
	VMULPS       Z0, Z30, Z30
	VMULPS       Z0, Z31, Z31

	// beta == +0 or -0: overwrite C without reading it.
	MOVL  beta+60(FP), AX
	TESTL $0x7fffffff, AX
	JZ    overwrite_sgemmKernel12x32AVX512

	VBROADCASTSS beta+60(FP), Z1
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
	ADDQ        R8, DX
	VFMADD231PS 0(DX), Z1, Z16
	VFMADD231PS 64(DX), Z1, Z17
	VMOVUPS     Z16, 0(DX)
	VMOVUPS     Z17, 64(DX)
	ADDQ        R8, DX
	VFMADD231PS 0(DX), Z1, Z18
	VFMADD231PS 64(DX), Z1, Z19
	VMOVUPS     Z18, 0(DX)
	VMOVUPS     Z19, 64(DX)
	ADDQ        R8, DX
	VFMADD231PS 0(DX), Z1, Z20
	VFMADD231PS 64(DX), Z1, Z21
	VMOVUPS     Z20, 0(DX)
	VMOVUPS     Z21, 64(DX)
	ADDQ        R8, DX
	VFMADD231PS 0(DX), Z1, Z22
	VFMADD231PS 64(DX), Z1, Z23
	VMOVUPS     Z22, 0(DX)
	VMOVUPS     Z23, 64(DX)
	ADDQ        R8, DX
	VFMADD231PS 0(DX), Z1, Z24
	VFMADD231PS 64(DX), Z1, Z25
	VMOVUPS     Z24, 0(DX)
	VMOVUPS     Z25, 64(DX)
	ADDQ        R8, DX
	VFMADD231PS 0(DX), Z1, Z26
	VFMADD231PS 64(DX), Z1, Z27
	VMOVUPS     Z26, 0(DX)
	VMOVUPS     Z27, 64(DX)
	ADDQ        R8, DX
	VFMADD231PS 0(DX), Z1, Z28
	VFMADD231PS 64(DX), Z1, Z29
	VMOVUPS     Z28, 0(DX)
	VMOVUPS     Z29, 64(DX)
	ADDQ        R8, DX
	VFMADD231PS 0(DX), Z1, Z30
	VFMADD231PS 64(DX), Z1, Z31
	VMOVUPS     Z30, 0(DX)
	VMOVUPS     Z31, 64(DX)
	VZEROUPPER
	RET

overwrite_sgemmKernel12x32AVX512:
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
	ADDQ    R8, DX
	VMOVUPS Z16, 0(DX)
	VMOVUPS Z17, 64(DX)
	ADDQ    R8, DX
	VMOVUPS Z18, 0(DX)
	VMOVUPS Z19, 64(DX)
	ADDQ    R8, DX
	VMOVUPS Z20, 0(DX)
	VMOVUPS Z21, 64(DX)
	ADDQ    R8, DX
	VMOVUPS Z22, 0(DX)
	VMOVUPS Z23, 64(DX)
	ADDQ    R8, DX
	VMOVUPS Z24, 0(DX)
	VMOVUPS Z25, 64(DX)
	ADDQ    R8, DX
	VMOVUPS Z26, 0(DX)
	VMOVUPS Z27, 64(DX)
	ADDQ    R8, DX
	VMOVUPS Z28, 0(DX)
	VMOVUPS Z29, 64(DX)
	ADDQ    R8, DX
	VMOVUPS Z30, 0(DX)
	VMOVUPS Z31, 64(DX)
	VZEROUPPER
	RET

// func transpose8AVX(dst *float32, ldd int, src *float32, lds int, n8 int)
//
// Transposes 8 rows of src (lds float32s apart) and 8*n8 columns into dst:
// dst[p*ldd+i] = src[i*lds+p] for i < 8, p < 8*n8. Each block of 8 columns is
// an 8x8 transpose in registers (unpack, shuffle, lane permute).
TEXT ·transpose8AVX(SB), NOSPLIT, $0-40
	MOVQ dst+0(FP), DI
	MOVQ ldd+8(FP), R8
	SHLQ $2, R8
	MOVQ src+16(FP), SI
	MOVQ lds+24(FP), R10
	SHLQ $2, R10
	MOVQ n8+32(FP), CX
	TESTQ CX, CX
	JZ   tdone
	LEAQ (R10)(R10*2), R11 // 3 rows
	LEAQ (SI)(R10*4), R12  // row 4
	LEAQ (R8)(R8*2), R13   // 3 dst steps
	LEAQ (R8)(R8*4), BX    // 5 dst steps
	LEAQ (R12)(R10*4), AX  // row 8
	LEAQ (AX)(R10*4), DX   // row 12

tloop:
	// Rows 8-15, which the caller packs next (packA, packB), on their way from
	// memory while these 8 are transposed.
	PREFETCHT0 (AX)
	PREFETCHT0 (AX)(R10*1)
	PREFETCHT0 (AX)(R10*2)
	PREFETCHT0 (AX)(R11*1)
	PREFETCHT0 (DX)
	PREFETCHT0 (DX)(R10*1)
	PREFETCHT0 (DX)(R10*2)
	PREFETCHT0 (DX)(R11*1)
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
	ADDQ $32, AX
	ADDQ $32, DX
	LEAQ (DI)(R8*8), DI
	DECQ CX
	JNZ  tloop

tdone:
	VZEROUPPER
	RET

// 12x32 AVX-512 with A read in place from a row-major matrix: row i of the
// tile at a + i*lda, k steps 1 float32 apart (rows 0-3 from SI, 4-7 from R13,
// 8-11 from AX; R12 = 3*lda bytes). Otherwise as sgemmKernel12x32AVX512.
#define STEP12x32ROWA \
	VMOVUPS      (DI), Z0; \
	VMOVUPS      64(DI), Z1; \
	VBROADCASTSS (SI), Z2; \
	VFMADD231PS  Z0, Z2, Z8; \
	VFMADD231PS  Z1, Z2, Z9; \
	VBROADCASTSS (SI)(R10*1), Z3; \
	VFMADD231PS  Z0, Z3, Z10; \
	VFMADD231PS  Z1, Z3, Z11; \
	VBROADCASTSS (SI)(R10*2), Z4; \
	VFMADD231PS  Z0, Z4, Z12; \
	VFMADD231PS  Z1, Z4, Z13; \
	VBROADCASTSS (SI)(R12*1), Z2; \
	VFMADD231PS  Z0, Z2, Z14; \
	VFMADD231PS  Z1, Z2, Z15; \
	VBROADCASTSS (R13), Z3; \
	VFMADD231PS  Z0, Z3, Z16; \
	VFMADD231PS  Z1, Z3, Z17; \
	VBROADCASTSS (R13)(R10*1), Z4; \
	VFMADD231PS  Z0, Z4, Z18; \
	VFMADD231PS  Z1, Z4, Z19; \
	VBROADCASTSS (R13)(R10*2), Z2; \
	VFMADD231PS  Z0, Z2, Z20; \
	VFMADD231PS  Z1, Z2, Z21; \
	VBROADCASTSS (R13)(R12*1), Z3; \
	VFMADD231PS  Z0, Z3, Z22; \
	VFMADD231PS  Z1, Z3, Z23; \
	VBROADCASTSS (AX), Z4; \
	VFMADD231PS  Z0, Z4, Z24; \
	VFMADD231PS  Z1, Z4, Z25; \
	VBROADCASTSS (AX)(R10*1), Z2; \
	VFMADD231PS  Z0, Z2, Z26; \
	VFMADD231PS  Z1, Z2, Z27; \
	VBROADCASTSS (AX)(R10*2), Z3; \
	VFMADD231PS  Z0, Z3, Z28; \
	VFMADD231PS  Z1, Z3, Z29; \
	VBROADCASTSS (AX)(R12*1), Z4; \
	VFMADD231PS  Z0, Z4, Z30; \
	VFMADD231PS  Z1, Z4, Z31; \
	ADDQ         $4, SI; \
	ADDQ         $4, R13; \
	ADDQ         $4, AX; \
	ADDQ         R11, DI

// func sgemmKernel12x32AVX512RowA(k int, a *float32, lda int, b *float32, ldb int, c *float32, ldc int, alpha, beta float32)
TEXT ·sgemmKernel12x32AVX512RowA(SB), NOSPLIT, $0-64
	MOVQ k+0(FP), CX
	MOVQ a+8(FP), SI
	MOVQ lda+16(FP), R10
	SHLQ $2, R10
	MOVQ b+24(FP), DI
	MOVQ ldb+32(FP), R11
	SHLQ $2, R11
	MOVQ c+40(FP), DX
	MOVQ ldc+48(FP), R8
	SHLQ $2, R8
	LEAQ (R10)(R10*2), R12
	LEAQ (SI)(R10*4), R13
	LEAQ (R13)(R10*4), AX

	VPXORD Z8, Z8, Z8
	VPXORD Z9, Z9, Z9
	VPXORD Z10, Z10, Z10
	VPXORD Z11, Z11, Z11
	VPXORD Z12, Z12, Z12
	VPXORD Z13, Z13, Z13
	VPXORD Z14, Z14, Z14
	VPXORD Z15, Z15, Z15
	VPXORD Z16, Z16, Z16
	VPXORD Z17, Z17, Z17
	VPXORD Z18, Z18, Z18
	VPXORD Z19, Z19, Z19
	VPXORD Z20, Z20, Z20
	VPXORD Z21, Z21, Z21
	VPXORD Z22, Z22, Z22
	VPXORD Z23, Z23, Z23
	VPXORD Z24, Z24, Z24
	VPXORD Z25, Z25, Z25
	VPXORD Z26, Z26, Z26
	VPXORD Z27, Z27, Z27
	VPXORD Z28, Z28, Z28
	VPXORD Z29, Z29, Z29
	VPXORD Z30, Z30, Z30
	VPXORD Z31, Z31, Z31

	MOVQ CX, BX
	SHRQ $2, BX
	JZ   tail_rowa

loop4_rowa:
	STEP12x32ROWA
	STEP12x32ROWA
	STEP12x32ROWA
	STEP12x32ROWA
	DECQ BX
	JNZ  loop4_rowa

tail_rowa:
	ANDQ $3, CX
	JZ   store_rowa

loop1_rowa:
	STEP12x32ROWA
	DECQ CX
	JNZ  loop1_rowa

store_rowa:
	VBROADCASTSS alpha+56(FP), Z0
	VMULPS       Z0, Z8, Z8
	VMULPS       Z0, Z9, Z9
	VMULPS       Z0, Z10, Z10
	VMULPS       Z0, Z11, Z11
	VMULPS       Z0, Z12, Z12
	VMULPS       Z0, Z13, Z13
	VMULPS       Z0, Z14, Z14
	VMULPS       Z0, Z15, Z15
	VMULPS       Z0, Z16, Z16
	VMULPS       Z0, Z17, Z17
	VMULPS       Z0, Z18, Z18
	VMULPS       Z0, Z19, Z19
	VMULPS       Z0, Z20, Z20
	VMULPS       Z0, Z21, Z21
	VMULPS       Z0, Z22, Z22
	VMULPS       Z0, Z23, Z23
	VMULPS       Z0, Z24, Z24
	VMULPS       Z0, Z25, Z25
	VMULPS       Z0, Z26, Z26
	VMULPS       Z0, Z27, Z27
	VMULPS       Z0, Z28, Z28
	VMULPS       Z0, Z29, Z29
	VMULPS       Z0, Z30, Z30
	VMULPS       Z0, Z31, Z31

	// beta == +0 or -0: overwrite C without reading it.
	MOVL  beta+60(FP), AX
	TESTL $0x7fffffff, AX
	JZ    overwrite_rowa

	VBROADCASTSS beta+60(FP), Z1
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
	ADDQ        R8, DX
	VFMADD231PS 0(DX), Z1, Z16
	VFMADD231PS 64(DX), Z1, Z17
	VMOVUPS     Z16, 0(DX)
	VMOVUPS     Z17, 64(DX)
	ADDQ        R8, DX
	VFMADD231PS 0(DX), Z1, Z18
	VFMADD231PS 64(DX), Z1, Z19
	VMOVUPS     Z18, 0(DX)
	VMOVUPS     Z19, 64(DX)
	ADDQ        R8, DX
	VFMADD231PS 0(DX), Z1, Z20
	VFMADD231PS 64(DX), Z1, Z21
	VMOVUPS     Z20, 0(DX)
	VMOVUPS     Z21, 64(DX)
	ADDQ        R8, DX
	VFMADD231PS 0(DX), Z1, Z22
	VFMADD231PS 64(DX), Z1, Z23
	VMOVUPS     Z22, 0(DX)
	VMOVUPS     Z23, 64(DX)
	ADDQ        R8, DX
	VFMADD231PS 0(DX), Z1, Z24
	VFMADD231PS 64(DX), Z1, Z25
	VMOVUPS     Z24, 0(DX)
	VMOVUPS     Z25, 64(DX)
	ADDQ        R8, DX
	VFMADD231PS 0(DX), Z1, Z26
	VFMADD231PS 64(DX), Z1, Z27
	VMOVUPS     Z26, 0(DX)
	VMOVUPS     Z27, 64(DX)
	ADDQ        R8, DX
	VFMADD231PS 0(DX), Z1, Z28
	VFMADD231PS 64(DX), Z1, Z29
	VMOVUPS     Z28, 0(DX)
	VMOVUPS     Z29, 64(DX)
	ADDQ        R8, DX
	VFMADD231PS 0(DX), Z1, Z30
	VFMADD231PS 64(DX), Z1, Z31
	VMOVUPS     Z30, 0(DX)
	VMOVUPS     Z31, 64(DX)
	VZEROUPPER
	RET

overwrite_rowa:
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
	ADDQ    R8, DX
	VMOVUPS Z16, 0(DX)
	VMOVUPS Z17, 64(DX)
	ADDQ    R8, DX
	VMOVUPS Z18, 0(DX)
	VMOVUPS Z19, 64(DX)
	ADDQ    R8, DX
	VMOVUPS Z20, 0(DX)
	VMOVUPS Z21, 64(DX)
	ADDQ    R8, DX
	VMOVUPS Z22, 0(DX)
	VMOVUPS Z23, 64(DX)
	ADDQ    R8, DX
	VMOVUPS Z24, 0(DX)
	VMOVUPS Z25, 64(DX)
	ADDQ    R8, DX
	VMOVUPS Z26, 0(DX)
	VMOVUPS Z27, 64(DX)
	ADDQ    R8, DX
	VMOVUPS Z28, 0(DX)
	VMOVUPS Z29, 64(DX)
	ADDQ    R8, DX
	VMOVUPS Z30, 0(DX)
	VMOVUPS Z31, 64(DX)
	VZEROUPPER
	RET

// func transpose4AVX(dst *float32, ldd int, src *float32, lds int, n8 int)
//
// Transposes 4 rows of src (lds float32s apart) and 8*n8 columns into dst:
// dst[p*ldd+i] = src[i*lds+p] for i < 4, p < 8*n8, 16 bytes per column.
TEXT ·transpose4AVX(SB), NOSPLIT, $0-40
	MOVQ  dst+0(FP), DI
	MOVQ  ldd+8(FP), R8
	SHLQ  $2, R8
	MOVQ  src+16(FP), SI
	MOVQ  lds+24(FP), R10
	SHLQ  $2, R10
	MOVQ  n8+32(FP), CX
	TESTQ CX, CX
	JZ    t4done
	LEAQ  (R10)(R10*2), R11 // 3 rows
	LEAQ  (R8)(R8*2), R13   // 3 dst steps
	LEAQ  (R8)(R8*4), BX    // 5 dst steps
	LEAQ  (SI)(R10*4), AX   // row 4
	LEAQ  (AX)(R10*4), DX   // row 8

t4loop:
	// Rows 4-11, which the caller packs next (packA, packB), on their way from
	// memory while these 4 are transposed.
	PREFETCHT0 (AX)
	PREFETCHT0 (AX)(R10*1)
	PREFETCHT0 (AX)(R10*2)
	PREFETCHT0 (AX)(R11*1)
	PREFETCHT0 (DX)
	PREFETCHT0 (DX)(R10*1)
	PREFETCHT0 (DX)(R10*2)
	PREFETCHT0 (DX)(R11*1)
	VMOVUPS (SI), Y0
	VMOVUPS (SI)(R10*1), Y1
	VMOVUPS (SI)(R10*2), Y2
	VMOVUPS (SI)(R11*1), Y3

	VUNPCKLPS Y1, Y0, Y4
	VUNPCKHPS Y1, Y0, Y5
	VUNPCKLPS Y3, Y2, Y6
	VUNPCKHPS Y3, Y2, Y7

	// Lanes: low holds columns 0-3, high columns 4-7.
	VSHUFPS $0x44, Y6, Y4, Y8  // columns 0 | 4
	VSHUFPS $0xEE, Y6, Y4, Y9  // 1 | 5
	VSHUFPS $0x44, Y7, Y5, Y10 // 2 | 6
	VSHUFPS $0xEE, Y7, Y5, Y11 // 3 | 7

	MOVQ         DI, R9
	VMOVUPS      X8, (R9)
	VMOVUPS      X9, (R9)(R8*1)
	VMOVUPS      X10, (R9)(R8*2)
	VMOVUPS      X11, (R9)(R13*1)
	VEXTRACTF128 $1, Y8, X12
	VEXTRACTF128 $1, Y9, X13
	VEXTRACTF128 $1, Y10, X14
	VEXTRACTF128 $1, Y11, X15
	VMOVUPS      X12, (R9)(R8*4)
	VMOVUPS      X13, (R9)(BX*1)
	LEAQ         (R9)(R13*2), R9 // 6 steps
	VMOVUPS      X14, (R9)
	VMOVUPS      X15, (R9)(R8*1)

	ADDQ $32, SI
	ADDQ $32, AX
	ADDQ $32, DX
	LEAQ (DI)(R8*8), DI
	DECQ CX
	JNZ  t4loop

t4done:
	VZEROUPPER
	RET

// 6x16 AVX2+FMA with A read in place from a row-major matrix: row i of the
// tile at a + i*lda, k steps 1 float32 apart (rows 0-3 from SI, 4-5 from R13;
// R12 = 3*lda bytes). Otherwise as sgemmKernel6x16AVX2.
#define STEP6x16ROWA \
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
	ADDQ         $4, SI; \
	ADDQ         $4, R13; \
	ADDQ         R11, DI

// func sgemmKernel6x16AVX2RowA(k int, a *float32, lda int, b *float32, ldb int, c *float32, ldc int, alpha, beta float32)
TEXT ·sgemmKernel6x16AVX2RowA(SB), NOSPLIT, $0-64
	MOVQ k+0(FP), CX
	MOVQ a+8(FP), SI
	MOVQ lda+16(FP), R10
	SHLQ $2, R10
	MOVQ b+24(FP), DI
	MOVQ ldb+32(FP), R11
	SHLQ $2, R11
	MOVQ c+40(FP), DX
	MOVQ ldc+48(FP), R8
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
	JZ   tail_rowa2

loop4_rowa2:
	STEP6x16ROWA
	STEP6x16ROWA
	STEP6x16ROWA
	STEP6x16ROWA
	DECQ BX
	JNZ  loop4_rowa2

tail_rowa2:
	ANDQ $3, CX
	JZ   store_rowa2

loop1_rowa2:
	STEP6x16ROWA
	DECQ CX
	JNZ  loop1_rowa2

store_rowa2:
	VBROADCASTSS alpha+56(FP), Y0
	VMULPS       Y0, Y4, Y4
	VMULPS       Y0, Y5, Y5
	VMULPS       Y0, Y6, Y6
	VMULPS       Y0, Y7, Y7
	VMULPS       Y0, Y8, Y8
	VMULPS       Y0, Y9, Y9
	VMULPS       Y0, Y10, Y10
	VMULPS       Y0, Y11, Y11
	VMULPS       Y0, Y12, Y12
	VMULPS       Y0, Y13, Y13
	VMULPS       Y0, Y14, Y14
	VMULPS       Y0, Y15, Y15

	// beta == +0 or -0: overwrite C without reading it.
	MOVL  beta+60(FP), AX
	TESTL $0x7fffffff, AX
	JZ    overwrite_rowa2

	VBROADCASTSS beta+60(FP), Y1
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

overwrite_rowa2:
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

// func packPanelsAVX(dst *float32, src *float32, lds int, kc int, panels int, nr int)
//
// Packs kc rows (lds float32s apart) of panels*nr columns of src into
// micro-panels: dst[q*nr*kc + p*nr + j] = src[p*lds + q*nr + j] for p < kc,
// q < panels, j < nr; nr is a multiple of 8.
TEXT ·packPanelsAVX(SB), NOSPLIT, $0-48
	MOVQ dst+0(FP), DI
	MOVQ src+8(FP), SI
	MOVQ lds+16(FP), R10
	SHLQ $2, R10
	MOVQ kc+24(FP), CX
	MOVQ panels+32(FP), R11
	MOVQ nr+40(FP), R13
	SHLQ $2, R13    // nr bytes: step of dst within a panel
	MOVQ R13, R12
	IMULQ CX, R12   // nr*kc bytes: dst step between panels
	TESTQ CX, CX
	JZ   ppdone
	TESTQ R11, R11
	JZ   ppdone

pprow:
	MOVQ SI, R8 // src row p, panel q
	MOVQ DI, R9 // dst panel q, step p
	MOVQ R11, BX

pppanel:
	MOVQ R13, AX
	SHRQ $5, AX // 8-float groups
	XORQ DX, DX

ppgroup:
	VMOVUPS (R8)(DX*1), Y0
	VMOVUPS Y0, (R9)(DX*1)
	ADDQ    $32, DX
	DECQ    AX
	JNZ     ppgroup

	ADDQ R13, R8
	ADDQ R12, R9
	DECQ BX
	JNZ  pppanel

	ADDQ R10, SI
	ADDQ R13, DI
	DECQ CX
	JNZ  pprow

ppdone:
	VZEROUPPER
	RET

// TA6ROW copies one row of a 6-wide micro-panel, 24 bytes from src (its
// last 8 at src16) to off(DX): packTA6AVX's blocks of 8 rows.
#define TA6ROW(src, src16, off) \
	MOVUPS src, X0;     \
	MOVQ   src16, R11;  \
	MOVUPS X0, off(DX); \
	MOVQ   R11, off+16(DX)

// TA12ROW is TA6ROW for 12-wide micro-panels: 48 bytes, the last 16 at
// src32 (packTA12AVX).
#define TA12ROW(src, src32, off) \
	VMOVUPS src, Y0;     \
	VMOVUPS src32, X1;   \
	VMOVUPS Y0, off(DX); \
	VMOVUPS X1, off+32(DX)

// TA8BLOCKS is the loop over blocks of 8 rows of packTA6AVX (ROW = TA6ROW,
// w = 24 bytes of a row per panel, its second part at h = 16) and
// packTA12AVX (TA12ROW, 48, 32): each panel gets its 8 steps (8w bytes,
// whole cache lines) in one go, so that the stores run sequentially within
// a panel instead of w bytes to every panel per row. SI src, DI dst, R8
// lds bytes, R9 panels, R10 bytes from one panel to the next, R12 3 rows,
// BX blocks (at least 1); clobbers AX, DX, R13, R14.
#define TA8BLOCKS(ROW, w, h, block, panel) \
block: \
	MOVQ SI, AX; \
	LEAQ (SI)(R8*4), R13; \
	MOVQ DI, DX; \
	MOVQ R9, R14; \
panel: \
	ROW((AX), h(AX), 0); \
	ROW((AX)(R8*1), h(AX)(R8*1), w); \
	ROW((AX)(R8*2), h(AX)(R8*2), 2*w); \
	ROW((AX)(R12*1), h(AX)(R12*1), 3*w); \
	ROW((R13), h(R13), 4*w); \
	ROW((R13)(R8*1), h(R13)(R8*1), 5*w); \
	ROW((R13)(R8*2), h(R13)(R8*2), 6*w); \
	ROW((R13)(R12*1), h(R13)(R12*1), 7*w); \
	ADDQ $w, AX; \
	ADDQ $w, R13; \
	ADDQ R10, DX; \
	DECQ R14; \
	JNZ  panel; \
	LEAQ (SI)(R8*8), SI; \
	ADDQ $(8*w), DI; \
	DECQ BX; \
	JNZ  block

// func packTA6AVX(dst *float32, src *float32, lds int, kc int, panels int)
//
// Packs kc rows (lds float32s apart) of panels*6 columns of src into 6-wide
// micro-panels: dst[q*6*kc + p*6 + i] = src[p*lds + q*6 + i] for p < kc,
// q < panels, i < 6 (op(A) = A^T for the 6x16 kernel). Each 6-float group
// moves as 16 + 8 bytes.
TEXT ·packTA6AVX(SB), NOSPLIT, $0-40
	MOVQ dst+0(FP), DI
	MOVQ src+8(FP), SI
	MOVQ lds+16(FP), R8
	SHLQ $2, R8
	MOVQ kc+24(FP), CX
	MOVQ panels+32(FP), R9
	MOVQ CX, R10
	IMULQ $24, R10 // bytes from one panel to the next
	LEAQ (R8)(R8*2), R12 // 3 rows
	MOVQ CX, BX
	SHRQ $3, BX
	JZ   ta6tail

	TA8BLOCKS(TA6ROW, 24, 16, ta6block, ta6bpanel)

ta6tail:
	ANDQ $7, CX
	JZ   ta6done

ta6row:
	MOVQ SI, AX
	MOVQ DI, DX
	MOVQ R9, BX

ta6panel:
	MOVUPS (AX), X0
	MOVQ   16(AX), R11
	MOVUPS X0, (DX)
	MOVQ   R11, 16(DX)
	ADDQ   $24, AX
	ADDQ   R10, DX
	DECQ   BX
	JNZ    ta6panel

	ADDQ R8, SI
	ADDQ $24, DI
	DECQ CX
	JNZ  ta6row

ta6done:
	RET

// func packTA12AVX(dst *float32, src *float32, lds int, kc int, panels int)
//
// packTA6AVX for 12-wide micro-panels: dst[q*12*kc+p*12+i] =
// src[p*lds+q*12+i], 48 bytes per panel and row as one ymm and one xmm, in
// blocks of 8 rows as packTA6AVX. Inside a step of Zen 4 (small, one
// thread) the packings of A^T took 7.4-9.9 ms a step, against 9.7-12.2 a
// row at a time.
TEXT ·packTA12AVX(SB), NOSPLIT, $0-40
	MOVQ dst+0(FP), DI
	MOVQ src+8(FP), SI
	MOVQ lds+16(FP), R8
	SHLQ $2, R8
	MOVQ kc+24(FP), CX
	MOVQ panels+32(FP), R9
	MOVQ CX, R10
	IMULQ $48, R10 // bytes from one panel to the next
	LEAQ  (R8)(R8*2), R12 // 3 rows
	MOVQ  CX, BX
	SHRQ  $3, BX
	JZ    ta12tail

	TA8BLOCKS(TA12ROW, 48, 32, ta12block, ta12bpanel)

ta12tail:
	ANDQ $7, CX
	JZ   ta12done

ta12row:
	MOVQ SI, AX
	MOVQ DI, DX
	MOVQ R9, BX

ta12panel:
	VMOVUPS (AX), Y0
	VMOVUPS 32(AX), X1
	VMOVUPS Y0, (DX)
	VMOVUPS X1, 32(DX)
	ADDQ    $48, AX
	ADDQ    R10, DX
	DECQ    BX
	JNZ     ta12panel

	ADDQ R8, SI
	ADDQ $48, DI
	DECQ CX
	JNZ  ta12row

ta12done:
	VZEROUPPER
	RET
