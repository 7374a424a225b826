//go:build amd64 && !purego

#include "textflag.h"

// AVX2 row kernels of rows.go and the gradient norm of optim.go; n is a
// multiple of 8 (16 for sumSquaresAVX2); the Go wrappers do the tail.
// Sums keep 8 float32 lanes and reduce them in one fixed order (HSUM).

// HSUM: X0 = the sum of the 8 lanes of Y0, in a fixed order; clobbers X1.
#define HSUM \
	VEXTRACTF128 $1, Y0, X1; \
	VADDPS       X1, X0, X0; \
	VHADDPS      X0, X0, X0; \
	VHADDPS      X0, X0, X0

// func addAVX2(dst, src *float32, n int)
TEXT ·addAVX2(SB), NOSPLIT, $0-24
	MOVQ dst+0(FP), DI
	MOVQ src+8(FP), SI
	MOVQ n+16(FP), CX

addloop:
	CMPQ    CX, $8
	JLT     adddone
	VMOVUPS (DI), Y0
	VADDPS  (SI), Y0, Y0
	VMOVUPS Y0, (DI)
	ADDQ    $32, SI
	ADDQ    $32, DI
	SUBQ    $8, CX
	JMP     addloop

adddone:
	VZEROUPPER
	RET

// func mulAVX2(dst, src *float32, n int)
TEXT ·mulAVX2(SB), NOSPLIT, $0-24
	MOVQ dst+0(FP), DI
	MOVQ src+8(FP), SI
	MOVQ n+16(FP), CX

mulloop:
	CMPQ    CX, $8
	JLT     muldone
	VMOVUPS (DI), Y0
	VMULPS  (SI), Y0, Y0
	VMOVUPS Y0, (DI)
	ADDQ    $32, SI
	ADDQ    $32, DI
	SUBQ    $8, CX
	JMP     mulloop

muldone:
	VZEROUPPER
	RET

// func resBiasSumAVX2(r, x, bias *float32, n int) float32
// r = x + (r + bias); returns the sum of r.
TEXT ·resBiasSumAVX2(SB), NOSPLIT, $0-36
	MOVQ   r+0(FP), DI
	MOVQ   x+8(FP), SI
	MOVQ   bias+16(FP), DX
	MOVQ   n+24(FP), CX
	VXORPS Y0, Y0, Y0

rbloop:
	CMPQ    CX, $8
	JLT     rbdone
	VMOVUPS (DI), Y1
	VADDPS  (DX), Y1, Y1
	VADDPS  (SI), Y1, Y1
	VMOVUPS Y1, (DI)
	VADDPS  Y1, Y0, Y0
	ADDQ    $32, SI
	ADDQ    $32, DI
	ADDQ    $32, DX
	SUBQ    $8, CX
	JMP     rbloop

rbdone:
	HSUM
	VZEROUPPER
	MOVSS X0, ret+32(FP)
	RET

// func sumAVX2(x *float32, n int) float32
TEXT ·sumAVX2(SB), NOSPLIT, $0-20
	MOVQ   x+0(FP), SI
	MOVQ   n+8(FP), CX
	VXORPS Y0, Y0, Y0

smloop:
	CMPQ   CX, $8
	JLT    smdone
	VADDPS (SI), Y0, Y0
	ADDQ   $32, SI
	SUBQ   $8, CX
	JMP    smloop

smdone:
	HSUM
	VZEROUPPER
	MOVSS X0, ret+16(FP)
	RET

// func sqDevAVX2(x *float32, n int, mean float32) float32
// sum (x - mean)^2, each square rounded before the add.
TEXT ·sqDevAVX2(SB), NOSPLIT, $0-28
	MOVQ         x+0(FP), SI
	MOVQ         n+8(FP), CX
	VBROADCASTSS mean+16(FP), Y2
	VXORPS       Y0, Y0, Y0

sqloop:
	CMPQ    CX, $8
	JLT     sqdone
	VMOVUPS (SI), Y1
	VSUBPS  Y2, Y1, Y1
	VMULPS  Y1, Y1, Y1
	VADDPS  Y1, Y0, Y0
	ADDQ    $32, SI
	SUBQ    $8, CX
	JMP     sqloop

sqdone:
	HSUM
	VZEROUPPER
	MOVSS X0, ret+24(FP)
	RET

// func lnOutAVX2(out, x, w, b *float32, n int, mean, rstd float32)
// out = ((x - mean) * rstd) * w + b
TEXT ·lnOutAVX2(SB), NOSPLIT, $0-48
	MOVQ         out+0(FP), DI
	MOVQ         x+8(FP), SI
	MOVQ         w+16(FP), R8
	MOVQ         b+24(FP), R9
	MOVQ         n+32(FP), CX
	VBROADCASTSS mean+40(FP), Y14
	VBROADCASTSS rstd+44(FP), Y15

loloop:
	CMPQ    CX, $8
	JLT     lodone
	VMOVUPS (SI), Y0
	VSUBPS  Y14, Y0, Y0
	VMULPS  Y15, Y0, Y0
	VMULPS  (R8), Y0, Y0
	VADDPS  (R9), Y0, Y0
	VMOVUPS Y0, (DI)
	ADDQ    $32, SI
	ADDQ    $32, DI
	ADDQ    $32, R8
	ADDQ    $32, R9
	SUBQ    $8, CX
	JMP     loloop

lodone:
	VZEROUPPER
	RET

// func lnBwdDotsAVX2(d, x, w *float32, n int, mean, rstd float32) (a, b float32)
// a = sum w*d, b = sum w*d*((x - mean) * rstd)
TEXT ·lnBwdDotsAVX2(SB), NOSPLIT, $0-48
	MOVQ         d+0(FP), DI
	MOVQ         x+8(FP), SI
	MOVQ         w+16(FP), R8
	MOVQ         n+24(FP), CX
	VBROADCASTSS mean+32(FP), Y14
	VBROADCASTSS rstd+36(FP), Y15
	VXORPS       Y4, Y4, Y4
	VXORPS       Y5, Y5, Y5

ldloop:
	CMPQ        CX, $8
	JLT         lddone
	VMOVUPS     (DI), Y0
	VMULPS      (R8), Y0, Y0
	VADDPS      Y0, Y4, Y4
	VMOVUPS     (SI), Y1
	VSUBPS      Y14, Y1, Y1
	VMULPS      Y15, Y1, Y1
	VFMADD231PS Y1, Y0, Y5
	ADDQ        $32, SI
	ADDQ        $32, DI
	ADDQ        $32, R8
	SUBQ        $8, CX
	JMP         ldloop

lddone:
	VMOVAPS Y4, Y0
	HSUM
	VMOVSS  X0, a+40(FP)
	VMOVAPS Y5, Y0
	HSUM
	VMOVSS  X0, b+44(FP)
	VZEROUPPER
	RET

// func lnBwdOutAVX2(di, d, x, w *float32, n int, mean, rstd, a, b float32)
// di += (w*d - a - ((x - mean) * rstd) * b) * rstd
TEXT ·lnBwdOutAVX2(SB), NOSPLIT, $0-56
	MOVQ         di+0(FP), DX
	MOVQ         d+8(FP), DI
	MOVQ         x+16(FP), SI
	MOVQ         w+24(FP), R8
	MOVQ         n+32(FP), CX
	VBROADCASTSS mean+40(FP), Y12
	VBROADCASTSS rstd+44(FP), Y13
	VBROADCASTSS a+48(FP), Y14
	VBROADCASTSS b+52(FP), Y15

lbloop:
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
	ADDQ    $32, SI
	ADDQ    $32, DI
	ADDQ    $32, DX
	ADDQ    $32, R8
	SUBQ    $8, CX
	JMP     lbloop

lbdone:
	VZEROUPPER
	RET

// func lnColsAVX2(dw, db, d, x *float32, n int, mean, rstd float32)
// db += d; dw += ((x - mean) * rstd) * d
TEXT ·lnColsAVX2(SB), NOSPLIT, $0-48
	MOVQ         dw+0(FP), DX
	MOVQ         db+8(FP), R9
	MOVQ         d+16(FP), DI
	MOVQ         x+24(FP), SI
	MOVQ         n+32(FP), CX
	VBROADCASTSS mean+40(FP), Y14
	VBROADCASTSS rstd+44(FP), Y15

lcloop:
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
	ADDQ    $32, SI
	ADDQ    $32, DI
	ADDQ    $32, DX
	ADDQ    $32, R9
	SUBQ    $8, CX
	JMP     lcloop

lcdone:
	VZEROUPPER
	RET

// func sumSquaresAVX2(x *float32, n int, acc *[16]float64)
// acc[l] += float64(x[i])^2 for i = l mod 16, in index order per lane; the
// squares are exact in float64 and each add rounds once (no FMA), as the Go
// loop of gradSquares does.
TEXT ·sumSquaresAVX2(SB), NOSPLIT, $0-24
	MOVQ    x+0(FP), SI
	MOVQ    n+8(FP), CX
	MOVQ    acc+16(FP), AX
	VMOVUPD 0(AX), Y4
	VMOVUPD 32(AX), Y5
	VMOVUPD 64(AX), Y6
	VMOVUPD 96(AX), Y7

ssloop:
	CMPQ      CX, $16
	JLT       ssdone
	VCVTPS2PD 0(SI), Y0
	VCVTPS2PD 16(SI), Y1
	VCVTPS2PD 32(SI), Y2
	VCVTPS2PD 48(SI), Y3
	VMULPD    Y0, Y0, Y0
	VMULPD    Y1, Y1, Y1
	VMULPD    Y2, Y2, Y2
	VMULPD    Y3, Y3, Y3
	VADDPD    Y0, Y4, Y4
	VADDPD    Y1, Y5, Y5
	VADDPD    Y2, Y6, Y6
	VADDPD    Y3, Y7, Y7
	ADDQ      $64, SI
	SUBQ      $16, CX
	JMP       ssloop

ssdone:
	VMOVUPD Y4, 0(AX)
	VMOVUPD Y5, 32(AX)
	VMOVUPD Y6, 64(AX)
	VMOVUPD Y7, 96(AX)
	VZEROUPPER
	RET
