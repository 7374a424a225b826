#include "textflag.h"

// Micro-kernels of the blocked Sgemm (see gemm_blocked.go). Each computes one
// MR x NR tile of C from a packed A micro-panel (k steps of MR values) and a
// packed B micro-panel (k steps of NR values):
//
//	acc[i][j] = sum_p a[p*MR+i] * b[p*NR+j]
//	C[i][j]   = alpha*acc[i][j]                  if beta == 0 (C is not read)
//	C[i][j]   = alpha*acc[i][j] + beta*C[i][j]   otherwise
//
// C rows are ldc float32s apart. k >= 1.

// One k step of the 6x16 AVX2 kernel: B row in Y0,Y1; A values broadcast into
// Y2/Y3 in turn; accumulators Y4..Y15 (row i in Y(4+2i), Y(5+2i)).
#define STEP6x16(ao, bo) \
	VMOVUPS      bo(DI), Y0; \
	VMOVUPS      bo+32(DI), Y1; \
	VBROADCASTSS ao(SI), Y2; \
	VFMADD231PS  Y0, Y2, Y4; \
	VFMADD231PS  Y1, Y2, Y5; \
	VBROADCASTSS ao+4(SI), Y3; \
	VFMADD231PS  Y0, Y3, Y6; \
	VFMADD231PS  Y1, Y3, Y7; \
	VBROADCASTSS ao+8(SI), Y2; \
	VFMADD231PS  Y0, Y2, Y8; \
	VFMADD231PS  Y1, Y2, Y9; \
	VBROADCASTSS ao+12(SI), Y3; \
	VFMADD231PS  Y0, Y3, Y10; \
	VFMADD231PS  Y1, Y3, Y11; \
	VBROADCASTSS ao+16(SI), Y2; \
	VFMADD231PS  Y0, Y2, Y12; \
	VFMADD231PS  Y1, Y2, Y13; \
	VBROADCASTSS ao+20(SI), Y3; \
	VFMADD231PS  Y0, Y3, Y14; \
	VFMADD231PS  Y1, Y3, Y15

// Row r of the tile: with beta, C = acc + beta*C (acc already scaled by alpha).
#define STOREROW16B(lo, hi) \
	VFMADD231PS (DX), Y1, lo; \
	VFMADD231PS 32(DX), Y1, hi; \
	VMOVUPS     lo, (DX); \
	VMOVUPS     hi, 32(DX); \
	ADDQ        R8, DX

#define STOREROW16(lo, hi) \
	VMOVUPS lo, (DX); \
	VMOVUPS hi, 32(DX); \
	ADDQ    R8, DX

// func sgemmKernel6x16AVX2(k int, a, b, c *float32, ldc int, alpha, beta float32)
TEXT ·sgemmKernel6x16AVX2(SB), NOSPLIT, $0-48
	MOVQ k+0(FP), CX
	MOVQ a+8(FP), SI
	MOVQ b+16(FP), DI
	MOVQ c+24(FP), DX
	MOVQ ldc+32(FP), R8
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
	MOVQ       DX, R9
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
	JZ   tail

loop4:
	PREFETCHT0 384(DI)
	STEP6x16(0, 0)
	STEP6x16(24, 64)
	PREFETCHT0 448(DI)
	STEP6x16(48, 128)
	STEP6x16(72, 192)
	ADDQ       $96, SI
	ADDQ       $256, DI
	DECQ       BX
	JNZ        loop4

tail:
	ANDQ $3, CX
	JZ   store

loop1:
	STEP6x16(0, 0)
	ADDQ $24, SI
	ADDQ $64, DI
	DECQ CX
	JNZ  loop1

store:
	VBROADCASTSS alpha+40(FP), Y0
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
	MOVL  beta+44(FP), AX
	TESTL $0x7fffffff, AX
	JZ    overwrite

	VBROADCASTSS beta+44(FP), Y1
	STOREROW16B(Y4, Y5)
	STOREROW16B(Y6, Y7)
	STOREROW16B(Y8, Y9)
	STOREROW16B(Y10, Y11)
	STOREROW16B(Y12, Y13)
	STOREROW16B(Y14, Y15)
	VZEROUPPER
	RET

overwrite:
	STOREROW16(Y4, Y5)
	STOREROW16(Y6, Y7)
	STOREROW16(Y8, Y9)
	STOREROW16(Y10, Y11)
	STOREROW16(Y12, Y13)
	STOREROW16(Y14, Y15)
	VZEROUPPER
	RET
