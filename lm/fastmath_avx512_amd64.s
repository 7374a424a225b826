//go:build amd64 && !purego

#include "textflag.h"

// AVX-512 versions of the element-wise kernels of fastmath.go and rows.go,
// 16 floats at a time. n is a multiple of 8 (the Go wrappers do the rest); a
// last block of 8 runs with the lanes masked by K1. Each kernel does the same
// operations in the same order as its AVX2 version (fastmath_avx2_amd64.s,
// rows_avx2_amd64.s), FMAs where that one has FMAs, so every element gets the
// same bits whichever width ran; expSubAVX512 keeps the AVX2 kernel's 8
// partial sums, adding each block's low half then its high half. The
// constants stay in Z16-Z31 instead of being broadcast in the loop.

DATA fmz<>+0(SB)/4, $0x3f000000 // half
DATA fmz<>+4(SB)/4, $0x3f800000 // one
DATA fmz<>+8(SB)/4, $0x3f4c422a // s
DATA fmz<>+12(SB)/4, $0x3d372713 // c
DATA fmz<>+16(SB)/4, $0x3e095d4f // c3
DATA fmz<>+20(SB)/4, $0xc0000000 // neg2
DATA fmz<>+24(SB)/4, $0x40800000 // four
DATA fmz<>+28(SB)/4, $0x7fffffff // absmask
DATA fmz<>+32(SB)/4, $0x80000000 // signmask
DATA fmz<>+36(SB)/4, $0x3fb8aa3b // log2e
DATA fmz<>+40(SB)/4, $0x4b400000 // magic
DATA fmz<>+44(SB)/4, $0x3f318000 // c1
DATA fmz<>+48(SB)/4, $0xb95e8083 // c2
DATA fmz<>+52(SB)/4, $0x39506967 // p0
DATA fmz<>+56(SB)/4, $0x3ab743ce // p1
DATA fmz<>+60(SB)/4, $0x3c088908 // p2
DATA fmz<>+64(SB)/4, $0x3d2aa9c1 // p3
DATA fmz<>+68(SB)/4, $0x3e2aaaaa // p4
DATA fmz<>+72(SB)/4, $0x3f000000 // p5
DATA fmz<>+76(SB)/4, $0xc2aea8f6 // lo
DATA fmz<>+80(SB)/4, $0x42b00000 // hi
DATA fmz<>+84(SB)/4, $0x0000007f // i127
DATA fmz<>+88(SB)/4, $0xff800000 // -Inf
GLOBL fmz<>(SB), RODATA|NOPTR, $92

// EXPCONSTS: the constants of EXP in Z18-Z31.
#define EXPCONSTS \
	VBROADCASTSS fmz<>+80(SB), Z18; \
	VBROADCASTSS fmz<>+76(SB), Z19; \
	VPBROADCASTD fmz<>+84(SB), Z20; \
	VBROADCASTSS fmz<>+72(SB), Z21; \
	VBROADCASTSS fmz<>+68(SB), Z22; \
	VBROADCASTSS fmz<>+64(SB), Z23; \
	VBROADCASTSS fmz<>+60(SB), Z24; \
	VBROADCASTSS fmz<>+56(SB), Z25; \
	VBROADCASTSS fmz<>+52(SB), Z26; \
	VBROADCASTSS fmz<>+48(SB), Z27; \
	VBROADCASTSS fmz<>+44(SB), Z28; \
	VBROADCASTSS fmz<>+36(SB), Z29; \
	VBROADCASTSS fmz<>+40(SB), Z30; \
	VBROADCASTSS fmz<>+4(SB), Z31

// GELUCONSTS: EXPCONSTS and those of GELUTANH and GELUGRAD in Z12-Z17.
#define GELUCONSTS \
	EXPCONSTS; \
	VBROADCASTSS fmz<>+20(SB), Z12; \
	VBROADCASTSS fmz<>+24(SB), Z13; \
	VBROADCASTSS fmz<>+16(SB), Z14; \
	VBROADCASTSS fmz<>+12(SB), Z15; \
	VBROADCASTSS fmz<>+8(SB), Z16; \
	VBROADCASTSS fmz<>+0(SB), Z17

// EXP: Z4 = exp(Z0) as the AVX2 EXP (Z0 clamped to [-87.33, 88]); clobbers
// Z0-Z3, Z5.
#define EXP \
	VMAXPS       Z19, Z0, Z0; \
	VMINPS       Z18, Z0, Z0; \
	VMOVAPS      Z30, Z1; \
	VFMADD231PS  Z29, Z0, Z1; \
	VPSUBD       Z30, Z1, Z3; \
	VSUBPS       Z30, Z1, Z2; \
	VFNMADD231PS Z2, Z28, Z0; \
	VFNMADD231PS Z2, Z27, Z0; \
	VMOVAPS      Z25, Z4; \
	VFMADD231PS  Z26, Z0, Z4; \
	VFMADD213PS  Z24, Z0, Z4; \
	VFMADD213PS  Z23, Z0, Z4; \
	VFMADD213PS  Z22, Z0, Z4; \
	VFMADD213PS  Z21, Z0, Z4; \
	VMULPS       Z0, Z0, Z5; \
	VFMADD213PS  Z0, Z5, Z4; \
	VADDPS       Z31, Z4, Z4; \
	VPADDD       Z20, Z3, Z3; \
	VPSLLD       $23, Z3, Z3; \
	VMULPS       Z3, Z4, Z4

// GELUTANH: from x in Z8: Z9 = x*x, z = sqrt(2/pi) x (1 + 0.044715 x*x),
// Z4 = e = exp(-2|z|), Z5 = 1/(1+e), Z6 = tanh(z) = sign(z) (1-e)/(1+e).
// Clobbers Z0-Z3, Z10, Z11.
#define GELUTANH \
	VMULPS       Z8, Z8, Z9; \
	VMOVAPS      Z31, Z10; \
	VFMADD231PS  Z9, Z15, Z10; \
	VMULPS       Z8, Z10, Z10; \
	VMULPS       Z16, Z10, Z10; \
	VPANDD.BCST  fmz<>+28(SB), Z10, Z11; \
	VPANDD.BCST  fmz<>+32(SB), Z10, Z10; \
	VMULPS       Z11, Z12, Z0; \
	EXP; \
	VADDPS       Z31, Z4, Z5; \
	VDIVPS       Z5, Z31, Z5; \
	VSUBPS       Z4, Z31, Z6; \
	VMULPS       Z5, Z6, Z6; \
	VPORD        Z10, Z6, Z6

// GELUGRAD: after GELUTANH, Z1 = gelu'(x) =
// 0.5 (1 + th) + 0.5 x sech^2 sqrt(2/pi) (1 + 3*0.044715 x^2), with
// sech^2 = 4e/(1+e)^2, and Z2 = 0.5 x; clobbers Z5.
#define GELUGRAD \
	VMULPS      Z5, Z5, Z5; \
	VMULPS      Z4, Z5, Z5; \
	VMULPS      Z13, Z5, Z5; \
	VMOVAPS     Z31, Z1; \
	VFMADD231PS Z14, Z9, Z1; \
	VMULPS      Z16, Z1, Z1; \
	VMULPS      Z5, Z1, Z1; \
	VMULPS      Z17, Z8, Z2; \
	VMULPS      Z2, Z1, Z1; \
	VFMADD231PS Z6, Z17, Z1; \
	VADDPS      Z17, Z1, Z1

// MASK8: K1 selects the low 8 lanes (the last block of 8).
#define MASK8 \
	MOVL  $0xff, AX; \
	KMOVW AX, K1

// func geluFwdAVX512(out, inp *float32, n int)
TEXT ·geluFwdAVX512(SB), NOSPLIT, $0-24
	MOVQ out+0(FP), DI
	MOVQ inp+8(FP), SI
	MOVQ n+16(FP), CX
	GELUCONSTS
	MASK8

gfloop:
	CMPQ    CX, $16
	JLT     gftail
	VMOVUPS (SI), Z8
	GELUTANH
	// out = 0.5 x + 0.5 x tanh(z)
	VMULPS      Z17, Z8, Z7
	VFMADD213PS Z7, Z7, Z6
	VMOVUPS     Z6, (DI)
	ADDQ        $64, SI
	ADDQ        $64, DI
	SUBQ        $16, CX
	JMP         gfloop

gftail:
	CMPQ        CX, $8
	JLT         gfdone
	VMOVUPS.Z   (SI), K1, Z8
	GELUTANH
	VMULPS      Z17, Z8, Z7
	VFMADD213PS Z7, Z7, Z6
	VMOVUPS     Z6, K1, (DI)

gfdone:
	VZEROUPPER
	RET

// func geluBwdAVX512(dinp, inp, dout *float32, n int)
// dinp += gelu'(inp) * dout
TEXT ·geluBwdAVX512(SB), NOSPLIT, $0-32
	MOVQ dinp+0(FP), DI
	MOVQ inp+8(FP), SI
	MOVQ dout+16(FP), DX
	MOVQ n+24(FP), CX
	GELUCONSTS
	MASK8

gbloop:
	CMPQ        CX, $16
	JLT         gbtail
	VMOVUPS     (SI), Z8
	GELUTANH
	GELUGRAD
	VMOVUPS     (DX), Z2
	VFMADD213PS (DI), Z2, Z1
	VMOVUPS     Z1, (DI)
	ADDQ        $64, SI
	ADDQ        $64, DI
	ADDQ        $64, DX
	SUBQ        $16, CX
	JMP         gbloop

gbtail:
	CMPQ        CX, $8
	JLT         gbdone
	VMOVUPS.Z   (SI), K1, Z8
	GELUTANH
	GELUGRAD
	VMOVUPS.Z   (DX), K1, Z2
	VMOVUPS.Z   (DI), K1, Z3
	VFMADD213PS Z3, Z2, Z1
	VMOVUPS     Z1, K1, (DI)

gbdone:
	VZEROUPPER
	RET

// func geluBwdSetAVX512(dinp, inp, dout *float32, n int)
// dinp = gelu'(inp) * dout (dinp may be dout)
TEXT ·geluBwdSetAVX512(SB), NOSPLIT, $0-32
	MOVQ dinp+0(FP), DI
	MOVQ inp+8(FP), SI
	MOVQ dout+16(FP), DX
	MOVQ n+24(FP), CX
	GELUCONSTS
	MASK8

gsloop:
	CMPQ    CX, $16
	JLT     gstail
	VMOVUPS (SI), Z8
	GELUTANH
	GELUGRAD
	VMULPS  (DX), Z1, Z1
	VMOVUPS Z1, (DI)
	ADDQ    $64, SI
	ADDQ    $64, DI
	ADDQ    $64, DX
	SUBQ    $16, CX
	JMP     gsloop

gstail:
	CMPQ      CX, $8
	JLT       gsdone
	VMOVUPS.Z (SI), K1, Z8
	GELUTANH
	GELUGRAD
	VMOVUPS.Z (DX), K1, Z2
	VMULPS    Z2, Z1, Z1
	VMOVUPS   Z1, K1, (DI)

gsdone:
	VZEROUPPER
	RET

// func geluFwdGradAVX512(out, gp, inp, bias *float32, n int)
// With x = inp + bias: out = gelu(x) and gp = gelu'(x) (gp may be inp)
TEXT ·geluFwdGradAVX512(SB), NOSPLIT, $0-40
	MOVQ out+0(FP), DI
	MOVQ gp+8(FP), DX
	MOVQ inp+16(FP), SI
	MOVQ bias+24(FP), R8
	MOVQ n+32(FP), CX
	GELUCONSTS
	MASK8

gfgloop:
	CMPQ        CX, $16
	JLT         gfgtail
	VMOVUPS     (SI), Z8
	VADDPS      (R8), Z8, Z8
	GELUTANH
	GELUGRAD
	VFMADD213PS Z2, Z2, Z6
	VMOVUPS     Z6, (DI)
	VMOVUPS     Z1, (DX)
	ADDQ        $64, SI
	ADDQ        $64, R8
	ADDQ        $64, DI
	ADDQ        $64, DX
	SUBQ        $16, CX
	JMP         gfgloop

gfgtail:
	CMPQ        CX, $8
	JLT         gfgdone
	VMOVUPS.Z   (SI), K1, Z8
	VMOVUPS.Z   (R8), K1, Z0
	VADDPS      Z0, Z8, Z8
	GELUTANH
	GELUGRAD
	VFMADD213PS Z2, Z2, Z6
	VMOVUPS     Z6, K1, (DI)
	VMOVUPS     Z1, K1, (DX)

gfgdone:
	VZEROUPPER
	RET

// MASKREM: K2 selects the lanes of the block at AX that are below BX
// (min(max(BX-AX, 0), 16) low lanes); clobbers CX, DX, R10, R11.
#define MASKREM \
	MOVQ    BX, CX; \
	SUBQ    AX, CX; \
	MOVQ    $16, R10; \
	CMPQ    CX, R10; \
	CMOVQGT R10, CX; \
	XORQ    R11, R11; \
	TESTQ   CX, CX; \
	CMOVQLT R11, CX; \
	MOVL    $1, DX; \
	SHLL    CX, DX; \
	DECL    DX; \
	KMOVW   DX, K2

// func softmaxRowFwdAVX512(x *float32, n, end int) (mx, sum float32)
// One row of attention's forward softmax in one call: mx = the largest of
// x[:n], x[i] = exp(x[i] - mx) for i < n and 0 for n <= i < end (end a
// multiple of 16, 0 < n <= end), and sum = what expSubAVX512 returns over
// x[:n8], n8 = n rounded up to 8, with x[n:n8] set to -Inf first (the value
// maxSlice, the -Inf fill, expSub and clear give, bit for bit).
TEXT ·softmaxRowFwdAVX512(SB), NOSPLIT, $0-32
	MOVQ         x+0(FP), SI
	MOVQ         n+8(FP), BX
	MOVQ         end+16(FP), R8
	VBROADCASTSS fmz<>+88(SB), Z17
	VMOVAPS      Z17, Z16
	MOVQ         BX, R12
	ANDQ         $-16, R12
	XORQ         AX, AX

sfmaxfull:
	// Whole blocks of 16 below n, then the last one with the lanes from n
	// on as -Inf.
	CMPQ   AX, R12
	JGE    sfmax
	VMAXPS (SI)(AX*4), Z16, Z16
	ADDQ   $16, AX
	JMP    sfmaxfull

sfmax:
	CMPQ    AX, BX
	JGE     sfmaxdone
	MASKREM
	VMOVAPS Z17, Z6
	VMOVUPS (SI)(AX*4), K2, Z6
	VMAXPS  Z6, Z16, Z16
	ADDQ    $16, AX
	JMP     sfmax

sfmaxdone:
	VEXTRACTF64X4 $1, Z16, Y6
	VMAXPS        Y6, Y16, Y6
	VEXTRACTF128  $1, Y6, X7
	VMAXPS        X7, X6, X6
	VPERMILPS     $0x4e, X6, X7
	VMAXPS        X7, X6, X6
	VPERMILPS     $0xb1, X6, X7
	VMAXPS        X7, X6, X6
	VBROADCASTSS  X6, Z15
	MOVQ          BX, R9
	ADDQ          $7, R9
	ANDQ          $-8, R9
	EXPCONSTS
	VXORPS        Y8, Y8, Y8
	XORQ          AX, AX

sfexpfull:
	// Whole blocks below n as expSubAVX512 does them, then the rest of
	// the row with the lanes from n on masked.
	CMPQ          AX, R12
	JGE           sfexp
	VMOVUPS       (SI)(AX*4), Z0
	VSUBPS        Z15, Z0, Z0
	EXP
	VMOVUPS       Z4, (SI)(AX*4)
	VEXTRACTF64X4 $1, Z4, Y5
	VADDPS        Y4, Y8, Y8
	VADDPS        Y5, Y8, Y8
	ADDQ          $16, AX
	JMP           sfexpfull

sfexp:
	CMPQ    AX, R8
	JGE     sfexpdone
	MASKREM
	KNOTW   K2, K3
	VMOVUPS (SI)(AX*4), Z0
	VSUBPS  Z15, Z0, Z0
	VMOVAPS Z17, K3, Z0
	EXP
	// expSubAVX512's sums: the low half, then the high half, of the
	// blocks below n8.
	CMPQ          AX, R9
	JGE           sfnosum
	VADDPS        Y4, Y8, Y8
	LEAQ          8(AX), DX
	CMPQ          DX, R9
	JGE           sfnosum
	VEXTRACTF64X4 $1, Z4, Y5
	VADDPS        Y5, Y8, Y8

sfnosum:
	VMOVAPS.Z Z4, K2, Z4
	VMOVUPS   Z4, (SI)(AX*4)
	ADDQ      $16, AX
	JMP       sfexp

sfexpdone:
	VEXTRACTF128 $1, Y8, X0
	VADDPS       X8, X0, X0
	VHADDPS      X0, X0, X0
	VHADDPS      X0, X0, X0
	VMOVSS       X15, mx+24(FP)
	VMOVSS       X0, sum+28(FP)
	VZEROUPPER
	RET

// func softmaxRowBwdAVX512(p, d *float32, n, end int, lse, scale float32)
// One row of attention's backward softmax in one call, on the scores p and
// dP = d of a row (end a multiple of 16, 0 < n <= end): p[i] = exp(p[i] -
// lse) for i < n, then dot = sum p[i]*d[i] over i < n in dotSlice's order
// (dotAVX2's 8 lanes of FMAs over n&^7, reduced as it does, then the rest
// one by one, each product rounded), then d[i] = (d[i] - dot) * p[i] *
// scale; p and d are 0 from n to end. The same bits as the -Inf fill,
// expSub, clear, dotSlice, softmaxGrad and clear of the AVX2 path.
TEXT ·softmaxRowBwdAVX512(SB), NOSPLIT, $0-40
	MOVQ         p+0(FP), SI
	MOVQ         d+8(FP), DI
	MOVQ         n+16(FP), BX
	MOVQ         end+24(FP), R8
	VBROADCASTSS lse+32(FP), Z15
	VBROADCASTSS scale+36(FP), Z16
	MOVQ         BX, R9
	ANDQ         $-8, R9
	EXPCONSTS
	VXORPS       Y8, Y8, Y8
	XORQ         AX, AX

sbexp:
	CMPQ      AX, R8
	JGE       sbexpdone
	MASKREM
	VMOVUPS   (SI)(AX*4), Z0
	VSUBPS    Z15, Z0, Z0
	EXP
	VMOVAPS.Z Z4, K2, Z4
	VMOVUPS   Z4, (SI)(AX*4)
	// dotAVX2's FMAs: the low half, then the high half, of the blocks
	// below n&^7.
	LEAQ          8(AX), DX
	CMPQ          DX, R9
	JGT           sbnodot
	VFMADD231PS   (DI)(AX*4), Y4, Y8
	LEAQ          16(AX), DX
	CMPQ          DX, R9
	JGT           sbnodot
	VEXTRACTF64X4 $1, Z4, Y5
	VFMADD231PS   32(DI)(AX*4), Y5, Y8

sbnodot:
	ADDQ $16, AX
	JMP  sbexp

sbexpdone:
	VEXTRACTF128 $1, Y8, X1
	VADDPS       X1, X8, X0
	VHADDPS      X0, X0, X0
	VHADDPS      X0, X0, X0
	MOVQ         R9, AX

sbtail:
	CMPQ   AX, BX
	JGE    sbtaildone
	VMOVSS (SI)(AX*4), X1
	VMULSS (DI)(AX*4), X1, X1
	VADDSS X1, X0, X0
	INCQ   AX
	JMP    sbtail

sbtaildone:
	VBROADCASTSS X0, Z14
	XORQ         AX, AX

sbgrad:
	CMPQ      AX, R8
	JGE       sbdone
	MASKREM
	VMOVUPS   (DI)(AX*4), Z0
	VSUBPS    Z14, Z0, Z0
	VMULPS    (SI)(AX*4), Z0, Z0
	VMULPS    Z16, Z0, Z0
	VMOVAPS.Z Z0, K2, Z0
	VMOVUPS   Z0, (DI)(AX*4)
	ADDQ      $16, AX
	JMP       sbgrad

sbdone:
	VZEROUPPER
	RET

// func expSubAVX512(x *float32, n int, sub float32) float32
// x[i] = exp(x[i] - sub); returns their sum: the 8 partial sums of
// expSubAVX2 (lane j sums the x[i], i = j mod 8, in index order), reduced
// in its order.
TEXT ·expSubAVX512(SB), NOSPLIT, $0-28
	MOVQ         x+0(FP), SI
	MOVQ         n+8(FP), CX
	VBROADCASTSS sub+16(FP), Z15
	EXPCONSTS
	MASK8
	VXORPS       Y8, Y8, Y8

exloop:
	CMPQ          CX, $16
	JLT           extail
	VMOVUPS       (SI), Z0
	VSUBPS        Z15, Z0, Z0
	EXP
	VMOVUPS       Z4, (SI)
	VEXTRACTF64X4 $1, Z4, Y5
	VADDPS        Y4, Y8, Y8
	VADDPS        Y5, Y8, Y8
	ADDQ          $64, SI
	SUBQ          $16, CX
	JMP           exloop

extail:
	CMPQ      CX, $8
	JLT       exdone
	VMOVUPS.Z (SI), K1, Z0
	VSUBPS    Z15, Z0, Z0
	EXP
	VMOVUPS   Z4, K1, (SI)
	VADDPS    Y4, Y8, Y8

exdone:
	VEXTRACTF128 $1, Y8, X0
	VADDPS       X8, X0, X0
	VHADDPS      X0, X0, X0
	VHADDPS      X0, X0, X0
	VZEROUPPER
	MOVSS        X0, ret+24(FP)
	RET
