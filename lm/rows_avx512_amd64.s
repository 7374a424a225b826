//go:build amd64 && !purego

#include "textflag.h"

// AVX-512 versions of the row kernels of rows.go, of adamwAVX2 and of the
// small kernels of fastmath.go, 16 floats at a time; n is a multiple of 8
// and a last block of 8 runs with the lanes masked by K1. Each does the
// operations of its AVX2 version (rows_avx2_amd64.s, fastmath_avx2_amd64.s)
// in the same order, so each element gets the same bits; the sums keep the
// AVX2 kernels' 8 lanes (a block's low half added before its high half) and
// their final reduction (HSUM).

// MASK8: K1 selects the low 8 lanes.
#define MASK8 \
	MOVL  $0xff, AX; \
	KMOVW AX, K1

// HSUM: X0 = the sum of the 8 lanes of Y0, as rows_avx2_amd64.s; clobbers X1.
#define HSUM \
	VEXTRACTF128 $1, Y0, X1; \
	VADDPS       X1, X0, X0; \
	VHADDPS      X0, X0, X0; \
	VHADDPS      X0, X0, X0

// func addAVX512(dst, src *float32, n int)
TEXT ·addAVX512(SB), NOSPLIT, $0-24
	MOVQ dst+0(FP), DI
	MOVQ src+8(FP), SI
	MOVQ n+16(FP), CX
	MASK8

addloop:
	CMPQ    CX, $16
	JLT     addtail
	VMOVUPS (DI), Z0
	VADDPS  (SI), Z0, Z0
	VMOVUPS Z0, (DI)
	ADDQ    $64, SI
	ADDQ    $64, DI
	SUBQ    $16, CX
	JMP     addloop

addtail:
	CMPQ      CX, $8
	JLT       adddone
	VMOVUPS.Z (DI), K1, Z0
	VMOVUPS.Z (SI), K1, Z1
	VADDPS    Z1, Z0, Z0
	VMOVUPS   Z0, K1, (DI)

adddone:
	VZEROUPPER
	RET

// func mulAVX512(dst, src *float32, n int)
TEXT ·mulAVX512(SB), NOSPLIT, $0-24
	MOVQ dst+0(FP), DI
	MOVQ src+8(FP), SI
	MOVQ n+16(FP), CX
	MASK8

mulloop:
	CMPQ    CX, $16
	JLT     multail
	VMOVUPS (DI), Z0
	VMULPS  (SI), Z0, Z0
	VMOVUPS Z0, (DI)
	ADDQ    $64, SI
	ADDQ    $64, DI
	SUBQ    $16, CX
	JMP     mulloop

multail:
	CMPQ      CX, $8
	JLT       muldone
	VMOVUPS.Z (DI), K1, Z0
	VMOVUPS.Z (SI), K1, Z1
	VMULPS    Z1, Z0, Z0
	VMOVUPS   Z0, K1, (DI)

muldone:
	VZEROUPPER
	RET

// func resBiasSumAVX512(r, x, bias *float32, n int) float32
// r = x + (r + bias); returns the sum of r.
TEXT ·resBiasSumAVX512(SB), NOSPLIT, $0-36
	MOVQ   r+0(FP), DI
	MOVQ   x+8(FP), SI
	MOVQ   bias+16(FP), DX
	MOVQ   n+24(FP), CX
	MASK8
	VXORPS Y0, Y0, Y0

rbloop:
	CMPQ          CX, $16
	JLT           rbtail
	VMOVUPS       (DI), Z1
	VADDPS        (DX), Z1, Z1
	VADDPS        (SI), Z1, Z1
	VMOVUPS       Z1, (DI)
	VEXTRACTF64X4 $1, Z1, Y2
	VADDPS        Y1, Y0, Y0
	VADDPS        Y2, Y0, Y0
	ADDQ          $64, SI
	ADDQ          $64, DI
	ADDQ          $64, DX
	SUBQ          $16, CX
	JMP           rbloop

rbtail:
	CMPQ    CX, $8
	JLT     rbdone
	VMOVUPS (DI), Y1
	VADDPS  (DX), Y1, Y1
	VADDPS  (SI), Y1, Y1
	VMOVUPS Y1, (DI)
	VADDPS  Y1, Y0, Y0

rbdone:
	HSUM
	VZEROUPPER
	MOVSS X0, ret+32(FP)
	RET

// func lnOutAVX512(out, x, w, b *float32, n int, mean, rstd float32)
// out = ((x - mean) * rstd) * w + b
TEXT ·lnOutAVX512(SB), NOSPLIT, $0-48
	MOVQ         out+0(FP), DI
	MOVQ         x+8(FP), SI
	MOVQ         w+16(FP), R8
	MOVQ         b+24(FP), R9
	MOVQ         n+32(FP), CX
	VBROADCASTSS mean+40(FP), Z14
	VBROADCASTSS rstd+44(FP), Z15

loloop:
	CMPQ    CX, $16
	JLT     lotail
	VMOVUPS (SI), Z0
	VSUBPS  Z14, Z0, Z0
	VMULPS  Z15, Z0, Z0
	VMULPS  (R8), Z0, Z0
	VADDPS  (R9), Z0, Z0
	VMOVUPS Z0, (DI)
	ADDQ    $64, SI
	ADDQ    $64, DI
	ADDQ    $64, R8
	ADDQ    $64, R9
	SUBQ    $16, CX
	JMP     loloop

lotail:
	CMPQ    CX, $8
	JLT     lodone
	VMOVUPS (SI), Y0
	VSUBPS  Y14, Y0, Y0
	VMULPS  Y15, Y0, Y0
	VMULPS  (R8), Y0, Y0
	VADDPS  (R9), Y0, Y0
	VMOVUPS Y0, (DI)

lodone:
	VZEROUPPER
	RET

// func lnBwdDotsAVX512(d, x, w *float32, n int, mean, rstd float32) (a, b float32)
// a = sum w*d, b = sum w*d*((x - mean) * rstd), in the lanes and order of
// lnBwdDotsAVX2.
TEXT ·lnBwdDotsAVX512(SB), NOSPLIT, $0-48
	MOVQ         d+0(FP), DI
	MOVQ         x+8(FP), SI
	MOVQ         w+16(FP), R8
	MOVQ         n+24(FP), CX
	VBROADCASTSS mean+32(FP), Z14
	VBROADCASTSS rstd+36(FP), Z15
	VXORPS       Y4, Y4, Y4
	VXORPS       Y5, Y5, Y5

ldloop:
	CMPQ          CX, $16
	JLT           ldtail
	VMOVUPS       (DI), Z0
	VMULPS        (R8), Z0, Z0
	VMOVUPS       (SI), Z1
	VSUBPS        Z14, Z1, Z1
	VMULPS        Z15, Z1, Z1
	VEXTRACTF64X4 $1, Z0, Y2
	VEXTRACTF64X4 $1, Z1, Y3
	VADDPS        Y0, Y4, Y4
	VFMADD231PS   Y1, Y0, Y5
	VADDPS        Y2, Y4, Y4
	VFMADD231PS   Y3, Y2, Y5
	ADDQ          $64, SI
	ADDQ          $64, DI
	ADDQ          $64, R8
	SUBQ          $16, CX
	JMP           ldloop

ldtail:
	CMPQ        CX, $8
	JLT         lddone
	VMOVUPS     (DI), Y0
	VMULPS      (R8), Y0, Y0
	VADDPS      Y0, Y4, Y4
	VMOVUPS     (SI), Y1
	VSUBPS      Y14, Y1, Y1
	VMULPS      Y15, Y1, Y1
	VFMADD231PS Y1, Y0, Y5

lddone:
	VMOVAPS Y4, Y0
	HSUM
	VMOVSS  X0, a+40(FP)
	VMOVAPS Y5, Y0
	HSUM
	VMOVSS  X0, b+44(FP)
	VZEROUPPER
	RET

// func lnBwdOutAVX512(di, d, x, w *float32, n int, mean, rstd, a, b float32)
// di += (w*d - a - ((x - mean) * rstd) * b) * rstd
TEXT ·lnBwdOutAVX512(SB), NOSPLIT, $0-56
	MOVQ         di+0(FP), DX
	MOVQ         d+8(FP), DI
	MOVQ         x+16(FP), SI
	MOVQ         w+24(FP), R8
	MOVQ         n+32(FP), CX
	VBROADCASTSS mean+40(FP), Z12
	VBROADCASTSS rstd+44(FP), Z13
	VBROADCASTSS a+48(FP), Z14
	VBROADCASTSS b+52(FP), Z15

lbloop:
	CMPQ    CX, $16
	JLT     lbtail
	VMOVUPS (SI), Z1
	VSUBPS  Z12, Z1, Z1
	VMULPS  Z13, Z1, Z1
	VMULPS  Z15, Z1, Z1
	VMOVUPS (DI), Z0
	VMULPS  (R8), Z0, Z0
	VSUBPS  Z14, Z0, Z0
	VSUBPS  Z1, Z0, Z0
	VMULPS  Z13, Z0, Z0
	VADDPS  (DX), Z0, Z0
	VMOVUPS Z0, (DX)
	ADDQ    $64, SI
	ADDQ    $64, DI
	ADDQ    $64, DX
	ADDQ    $64, R8
	SUBQ    $16, CX
	JMP     lbloop

lbtail:
	CMPQ    CX, $8
	JLT     lbdone
	VMOVUPS (SI), Y1
	VSUBPS  Y12, Y1, Y1
	VMULPS  Y13, Y1, Y1
	VMULPS  Y15, Y1, Y1
	VMOVUPS (DI), Y0
	VMULPS  (R8), Y0, Y0
	VSUBPS  Y14, Y0, Y0
	VSUBPS  Y1, Y0, Y0
	VMULPS  Y13, Y0, Y0
	VADDPS  (DX), Y0, Y0
	VMOVUPS Y0, (DX)

lbdone:
	VZEROUPPER
	RET

// func lnColsAVX512(dw, db, d, x *float32, n int, mean, rstd float32)
// db += d; dw += ((x - mean) * rstd) * d
TEXT ·lnColsAVX512(SB), NOSPLIT, $0-48
	MOVQ         dw+0(FP), DX
	MOVQ         db+8(FP), R9
	MOVQ         d+16(FP), DI
	MOVQ         x+24(FP), SI
	MOVQ         n+32(FP), CX
	VBROADCASTSS mean+40(FP), Z14
	VBROADCASTSS rstd+44(FP), Z15

lcloop:
	CMPQ    CX, $16
	JLT     lctail
	VMOVUPS (DI), Z0
	VADDPS  (R9), Z0, Z2
	VMOVUPS Z2, (R9)
	VMOVUPS (SI), Z1
	VSUBPS  Z14, Z1, Z1
	VMULPS  Z15, Z1, Z1
	VMULPS  Z0, Z1, Z1
	VADDPS  (DX), Z1, Z1
	VMOVUPS Z1, (DX)
	ADDQ    $64, SI
	ADDQ    $64, DI
	ADDQ    $64, DX
	ADDQ    $64, R9
	SUBQ    $16, CX
	JMP     lcloop

lctail:
	CMPQ    CX, $8
	JLT     lcdone
	VMOVUPS (DI), Y0
	VADDPS  (R9), Y0, Y2
	VMOVUPS Y2, (R9)
	VMOVUPS (SI), Y1
	VSUBPS  Y14, Y1, Y1
	VMULPS  Y15, Y1, Y1
	VMULPS  Y0, Y1, Y1
	VADDPS  (DX), Y1, Y1
	VMOVUPS Y1, (DX)

lcdone:
	VZEROUPPER
	RET

// ADAMW: one AdamW update of the lanes of Z0 = g, Z1 = m, Z2 = v, Z3 = p,
// as adamwAVX2; the constants in Z16-Z25; clobbers Z4, Z5.
#define ADAMW \
	VMULPS  Z25, Z0, Z0; \
	VMULPS  Z16, Z1, Z4; \
	VMULPS  Z17, Z0, Z5; \
	VADDPS  Z5, Z4, Z1; \
	VMULPS  Z18, Z2, Z4; \
	VMULPS  Z19, Z0, Z5; \
	VMULPS  Z0, Z5, Z5; \
	VADDPS  Z5, Z4, Z2; \
	VMULPS  Z21, Z2, Z4; \
	VSQRTPS Z4, Z4; \
	VADDPS  Z22, Z4, Z4; \
	VMULPS  Z20, Z1, Z5; \
	VMULPS  Z23, Z5, Z5; \
	VDIVPS  Z4, Z5, Z5; \
	VMULPS  Z24, Z3, Z3; \
	VSUBPS  Z5, Z3, Z3

// func adamwAVX512(p, grad, m, v *float32, n int, c *[10]float32)
// c = {b1, 1-b1, b2, 1-b2, c1, c2, eps, step, keep, clip}; the operations of
// adamwAVX2 (no fused multiply-adds).
TEXT ·adamwAVX512(SB), NOSPLIT, $0-48
	MOVQ         p+0(FP), DI
	MOVQ         grad+8(FP), SI
	MOVQ         m+16(FP), R8
	MOVQ         v+24(FP), R9
	MOVQ         n+32(FP), CX
	MOVQ         c+40(FP), AX
	VBROADCASTSS 0(AX), Z16
	VBROADCASTSS 4(AX), Z17
	VBROADCASTSS 8(AX), Z18
	VBROADCASTSS 12(AX), Z19
	VBROADCASTSS 16(AX), Z20
	VBROADCASTSS 20(AX), Z21
	VBROADCASTSS 24(AX), Z22
	VBROADCASTSS 28(AX), Z23
	VBROADCASTSS 32(AX), Z24
	VBROADCASTSS 36(AX), Z25
	MASK8

adloop:
	CMPQ    CX, $16
	JLT     adtail
	VMOVUPS (SI), Z0
	VMOVUPS (R8), Z1
	VMOVUPS (R9), Z2
	VMOVUPS (DI), Z3
	ADAMW
	VMOVUPS Z1, (R8)
	VMOVUPS Z2, (R9)
	VMOVUPS Z3, (DI)
	ADDQ    $64, SI
	ADDQ    $64, DI
	ADDQ    $64, R8
	ADDQ    $64, R9
	SUBQ    $16, CX
	JMP     adloop

adtail:
	CMPQ      CX, $8
	JLT       addone
	VMOVUPS.Z (SI), K1, Z0
	VMOVUPS.Z (R8), K1, Z1
	VMOVUPS.Z (R9), K1, Z2
	VMOVUPS.Z (DI), K1, Z3
	ADAMW
	VMOVUPS   Z1, K1, (R8)
	VMOVUPS   Z2, K1, (R9)
	VMOVUPS   Z3, K1, (DI)

addone:
	VZEROUPPER
	RET

// func scaleCopyAVX512(dst, src *float32, n int, a float32)
// dst[i] = a*src[i], 64 floats at a time, then 16, then 8; src is
// prefetched 1 KiB ahead as in scaleCopyAVX2.
TEXT ·scaleCopyAVX512(SB), NOSPLIT, $0-28
	MOVQ         dst+0(FP), DI
	MOVQ         src+8(FP), SI
	MOVQ         n+16(FP), CX
	VBROADCASTSS a+24(FP), Z15

sc4loop:
	CMPQ       CX, $64
	JLT        scloop
	PREFETCHT0 1024(SI)
	PREFETCHT0 1088(SI)
	PREFETCHT0 1152(SI)
	PREFETCHT0 1216(SI)
	VMULPS     (SI), Z15, Z0
	VMULPS     64(SI), Z15, Z1
	VMULPS     128(SI), Z15, Z2
	VMULPS     192(SI), Z15, Z3
	VMOVUPS    Z0, (DI)
	VMOVUPS    Z1, 64(DI)
	VMOVUPS    Z2, 128(DI)
	VMOVUPS    Z3, 192(DI)
	ADDQ       $256, SI
	ADDQ       $256, DI
	SUBQ       $64, CX
	JMP        sc4loop

scloop:
	CMPQ    CX, $16
	JLT     sctail
	VMULPS  (SI), Z15, Z0
	VMOVUPS Z0, (DI)
	ADDQ    $64, SI
	ADDQ    $64, DI
	SUBQ    $16, CX
	JMP     scloop

sctail:
	CMPQ    CX, $8
	JLT     scdone
	VMULPS  (SI), Y15, Y0
	VMOVUPS Y0, (DI)

scdone:
	VZEROUPPER
	RET

// func softmaxGradAVX512(d, p *float32, n int, dot, scale float32)
// d[i] = p[i] * (d[i] - dot) * scale
TEXT ·softmaxGradAVX512(SB), NOSPLIT, $0-32
	MOVQ         d+0(FP), DI
	MOVQ         p+8(FP), SI
	MOVQ         n+16(FP), CX
	VBROADCASTSS dot+24(FP), Z14
	VBROADCASTSS scale+28(FP), Z15

sgloop:
	CMPQ    CX, $16
	JLT     sgtail
	VMOVUPS (DI), Z0
	VSUBPS  Z14, Z0, Z0
	VMULPS  (SI), Z0, Z0
	VMULPS  Z15, Z0, Z0
	VMOVUPS Z0, (DI)
	ADDQ    $64, SI
	ADDQ    $64, DI
	SUBQ    $16, CX
	JMP     sgloop

sgtail:
	CMPQ    CX, $8
	JLT     sgdone
	VMOVUPS (DI), Y0
	VSUBPS  Y14, Y0, Y0
	VMULPS  (SI), Y0, Y0
	VMULPS  Y15, Y0, Y0
	VMOVUPS Y0, (DI)

sgdone:
	VZEROUPPER
	RET
