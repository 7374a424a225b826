#include "textflag.h"

DATA explo<>+0(SB)/4, $0xc2aeac4f
DATA explo<>+4(SB)/4, $0xc2aeac4f
DATA explo<>+8(SB)/4, $0xc2aeac4f
DATA explo<>+12(SB)/4, $0xc2aeac4f
DATA explo<>+16(SB)/4, $0xc2aeac4f
DATA explo<>+20(SB)/4, $0xc2aeac4f
DATA explo<>+24(SB)/4, $0xc2aeac4f
DATA explo<>+28(SB)/4, $0xc2aeac4f
GLOBL explo<>(SB), RODATA|NOPTR, $32

DATA exphi<>+0(SB)/4, $0x42b00000
DATA exphi<>+4(SB)/4, $0x42b00000
DATA exphi<>+8(SB)/4, $0x42b00000
DATA exphi<>+12(SB)/4, $0x42b00000
DATA exphi<>+16(SB)/4, $0x42b00000
DATA exphi<>+20(SB)/4, $0x42b00000
DATA exphi<>+24(SB)/4, $0x42b00000
DATA exphi<>+28(SB)/4, $0x42b00000
GLOBL exphi<>(SB), RODATA|NOPTR, $32

DATA log2e<>+0(SB)/4, $0x3fb8aa3b
DATA log2e<>+4(SB)/4, $0x3fb8aa3b
DATA log2e<>+8(SB)/4, $0x3fb8aa3b
DATA log2e<>+12(SB)/4, $0x3fb8aa3b
DATA log2e<>+16(SB)/4, $0x3fb8aa3b
DATA log2e<>+20(SB)/4, $0x3fb8aa3b
DATA log2e<>+24(SB)/4, $0x3fb8aa3b
DATA log2e<>+28(SB)/4, $0x3fb8aa3b
GLOBL log2e<>(SB), RODATA|NOPTR, $32

DATA expc1<>+0(SB)/4, $0x3f318000
DATA expc1<>+4(SB)/4, $0x3f318000
DATA expc1<>+8(SB)/4, $0x3f318000
DATA expc1<>+12(SB)/4, $0x3f318000
DATA expc1<>+16(SB)/4, $0x3f318000
DATA expc1<>+20(SB)/4, $0x3f318000
DATA expc1<>+24(SB)/4, $0x3f318000
DATA expc1<>+28(SB)/4, $0x3f318000
GLOBL expc1<>(SB), RODATA|NOPTR, $32

DATA expc2<>+0(SB)/4, $0xb95e8083
DATA expc2<>+4(SB)/4, $0xb95e8083
DATA expc2<>+8(SB)/4, $0xb95e8083
DATA expc2<>+12(SB)/4, $0xb95e8083
DATA expc2<>+16(SB)/4, $0xb95e8083
DATA expc2<>+20(SB)/4, $0xb95e8083
DATA expc2<>+24(SB)/4, $0xb95e8083
DATA expc2<>+28(SB)/4, $0xb95e8083
GLOBL expc2<>(SB), RODATA|NOPTR, $32

DATA expp0<>+0(SB)/4, $0x39506967
DATA expp0<>+4(SB)/4, $0x39506967
DATA expp0<>+8(SB)/4, $0x39506967
DATA expp0<>+12(SB)/4, $0x39506967
DATA expp0<>+16(SB)/4, $0x39506967
DATA expp0<>+20(SB)/4, $0x39506967
DATA expp0<>+24(SB)/4, $0x39506967
DATA expp0<>+28(SB)/4, $0x39506967
GLOBL expp0<>(SB), RODATA|NOPTR, $32

DATA expp1<>+0(SB)/4, $0x3ab743ce
DATA expp1<>+4(SB)/4, $0x3ab743ce
DATA expp1<>+8(SB)/4, $0x3ab743ce
DATA expp1<>+12(SB)/4, $0x3ab743ce
DATA expp1<>+16(SB)/4, $0x3ab743ce
DATA expp1<>+20(SB)/4, $0x3ab743ce
DATA expp1<>+24(SB)/4, $0x3ab743ce
DATA expp1<>+28(SB)/4, $0x3ab743ce
GLOBL expp1<>(SB), RODATA|NOPTR, $32

DATA expp2<>+0(SB)/4, $0x3c088908
DATA expp2<>+4(SB)/4, $0x3c088908
DATA expp2<>+8(SB)/4, $0x3c088908
DATA expp2<>+12(SB)/4, $0x3c088908
DATA expp2<>+16(SB)/4, $0x3c088908
DATA expp2<>+20(SB)/4, $0x3c088908
DATA expp2<>+24(SB)/4, $0x3c088908
DATA expp2<>+28(SB)/4, $0x3c088908
GLOBL expp2<>(SB), RODATA|NOPTR, $32

DATA expp3<>+0(SB)/4, $0x3d2aa9c1
DATA expp3<>+4(SB)/4, $0x3d2aa9c1
DATA expp3<>+8(SB)/4, $0x3d2aa9c1
DATA expp3<>+12(SB)/4, $0x3d2aa9c1
DATA expp3<>+16(SB)/4, $0x3d2aa9c1
DATA expp3<>+20(SB)/4, $0x3d2aa9c1
DATA expp3<>+24(SB)/4, $0x3d2aa9c1
DATA expp3<>+28(SB)/4, $0x3d2aa9c1
GLOBL expp3<>(SB), RODATA|NOPTR, $32

DATA expp4<>+0(SB)/4, $0x3e2aaaaa
DATA expp4<>+4(SB)/4, $0x3e2aaaaa
DATA expp4<>+8(SB)/4, $0x3e2aaaaa
DATA expp4<>+12(SB)/4, $0x3e2aaaaa
DATA expp4<>+16(SB)/4, $0x3e2aaaaa
DATA expp4<>+20(SB)/4, $0x3e2aaaaa
DATA expp4<>+24(SB)/4, $0x3e2aaaaa
DATA expp4<>+28(SB)/4, $0x3e2aaaaa
GLOBL expp4<>(SB), RODATA|NOPTR, $32

DATA expp5<>+0(SB)/4, $0x3f000000
DATA expp5<>+4(SB)/4, $0x3f000000
DATA expp5<>+8(SB)/4, $0x3f000000
DATA expp5<>+12(SB)/4, $0x3f000000
DATA expp5<>+16(SB)/4, $0x3f000000
DATA expp5<>+20(SB)/4, $0x3f000000
DATA expp5<>+24(SB)/4, $0x3f000000
DATA expp5<>+28(SB)/4, $0x3f000000
GLOBL expp5<>(SB), RODATA|NOPTR, $32

DATA one<>+0(SB)/4, $0x3f800000
DATA one<>+4(SB)/4, $0x3f800000
DATA one<>+8(SB)/4, $0x3f800000
DATA one<>+12(SB)/4, $0x3f800000
DATA one<>+16(SB)/4, $0x3f800000
DATA one<>+20(SB)/4, $0x3f800000
DATA one<>+24(SB)/4, $0x3f800000
DATA one<>+28(SB)/4, $0x3f800000
GLOBL one<>(SB), RODATA|NOPTR, $32

DATA i127<>+0(SB)/4, $0x0000007f
DATA i127<>+4(SB)/4, $0x0000007f
DATA i127<>+8(SB)/4, $0x0000007f
DATA i127<>+12(SB)/4, $0x0000007f
DATA i127<>+16(SB)/4, $0x0000007f
DATA i127<>+20(SB)/4, $0x0000007f
DATA i127<>+24(SB)/4, $0x0000007f
DATA i127<>+28(SB)/4, $0x0000007f
GLOBL i127<>(SB), RODATA|NOPTR, $32

DATA i126<>+0(SB)/4, $0x0000007e
DATA i126<>+4(SB)/4, $0x0000007e
DATA i126<>+8(SB)/4, $0x0000007e
DATA i126<>+12(SB)/4, $0x0000007e
DATA i126<>+16(SB)/4, $0x0000007e
DATA i126<>+20(SB)/4, $0x0000007e
DATA i126<>+24(SB)/4, $0x0000007e
DATA i126<>+28(SB)/4, $0x0000007e
GLOBL i126<>(SB), RODATA|NOPTR, $32

DATA half<>+0(SB)/4, $0x3f000000
DATA half<>+4(SB)/4, $0x3f000000
DATA half<>+8(SB)/4, $0x3f000000
DATA half<>+12(SB)/4, $0x3f000000
DATA half<>+16(SB)/4, $0x3f000000
DATA half<>+20(SB)/4, $0x3f000000
DATA half<>+24(SB)/4, $0x3f000000
DATA half<>+28(SB)/4, $0x3f000000
GLOBL half<>(SB), RODATA|NOPTR, $32

DATA mantmask<>+0(SB)/4, $0x807fffff
DATA mantmask<>+4(SB)/4, $0x807fffff
DATA mantmask<>+8(SB)/4, $0x807fffff
DATA mantmask<>+12(SB)/4, $0x807fffff
DATA mantmask<>+16(SB)/4, $0x807fffff
DATA mantmask<>+20(SB)/4, $0x807fffff
DATA mantmask<>+24(SB)/4, $0x807fffff
DATA mantmask<>+28(SB)/4, $0x807fffff
GLOBL mantmask<>(SB), RODATA|NOPTR, $32

DATA minnorm<>+0(SB)/4, $0x00800000
DATA minnorm<>+4(SB)/4, $0x00800000
DATA minnorm<>+8(SB)/4, $0x00800000
DATA minnorm<>+12(SB)/4, $0x00800000
DATA minnorm<>+16(SB)/4, $0x00800000
DATA minnorm<>+20(SB)/4, $0x00800000
DATA minnorm<>+24(SB)/4, $0x00800000
DATA minnorm<>+28(SB)/4, $0x00800000
GLOBL minnorm<>(SB), RODATA|NOPTR, $32

DATA sqrthf<>+0(SB)/4, $0x3f3504f3
DATA sqrthf<>+4(SB)/4, $0x3f3504f3
DATA sqrthf<>+8(SB)/4, $0x3f3504f3
DATA sqrthf<>+12(SB)/4, $0x3f3504f3
DATA sqrthf<>+16(SB)/4, $0x3f3504f3
DATA sqrthf<>+20(SB)/4, $0x3f3504f3
DATA sqrthf<>+24(SB)/4, $0x3f3504f3
DATA sqrthf<>+28(SB)/4, $0x3f3504f3
GLOBL sqrthf<>(SB), RODATA|NOPTR, $32

DATA logq1<>+0(SB)/4, $0xb95e8083
DATA logq1<>+4(SB)/4, $0xb95e8083
DATA logq1<>+8(SB)/4, $0xb95e8083
DATA logq1<>+12(SB)/4, $0xb95e8083
DATA logq1<>+16(SB)/4, $0xb95e8083
DATA logq1<>+20(SB)/4, $0xb95e8083
DATA logq1<>+24(SB)/4, $0xb95e8083
DATA logq1<>+28(SB)/4, $0xb95e8083
GLOBL logq1<>(SB), RODATA|NOPTR, $32

DATA logq2<>+0(SB)/4, $0x3f318000
DATA logq2<>+4(SB)/4, $0x3f318000
DATA logq2<>+8(SB)/4, $0x3f318000
DATA logq2<>+12(SB)/4, $0x3f318000
DATA logq2<>+16(SB)/4, $0x3f318000
DATA logq2<>+20(SB)/4, $0x3f318000
DATA logq2<>+24(SB)/4, $0x3f318000
DATA logq2<>+28(SB)/4, $0x3f318000
GLOBL logq2<>(SB), RODATA|NOPTR, $32

DATA logp0<>+0(SB)/4, $0x3d9021bb
DATA logp0<>+4(SB)/4, $0x3d9021bb
DATA logp0<>+8(SB)/4, $0x3d9021bb
DATA logp0<>+12(SB)/4, $0x3d9021bb
DATA logp0<>+16(SB)/4, $0x3d9021bb
DATA logp0<>+20(SB)/4, $0x3d9021bb
DATA logp0<>+24(SB)/4, $0x3d9021bb
DATA logp0<>+28(SB)/4, $0x3d9021bb
GLOBL logp0<>(SB), RODATA|NOPTR, $32

DATA logp1<>+0(SB)/4, $0xbdebd1b8
DATA logp1<>+4(SB)/4, $0xbdebd1b8
DATA logp1<>+8(SB)/4, $0xbdebd1b8
DATA logp1<>+12(SB)/4, $0xbdebd1b8
DATA logp1<>+16(SB)/4, $0xbdebd1b8
DATA logp1<>+20(SB)/4, $0xbdebd1b8
DATA logp1<>+24(SB)/4, $0xbdebd1b8
DATA logp1<>+28(SB)/4, $0xbdebd1b8
GLOBL logp1<>(SB), RODATA|NOPTR, $32

DATA logp2<>+0(SB)/4, $0x3def251a
DATA logp2<>+4(SB)/4, $0x3def251a
DATA logp2<>+8(SB)/4, $0x3def251a
DATA logp2<>+12(SB)/4, $0x3def251a
DATA logp2<>+16(SB)/4, $0x3def251a
DATA logp2<>+20(SB)/4, $0x3def251a
DATA logp2<>+24(SB)/4, $0x3def251a
DATA logp2<>+28(SB)/4, $0x3def251a
GLOBL logp2<>(SB), RODATA|NOPTR, $32

DATA logp3<>+0(SB)/4, $0xbdfe5d4f
DATA logp3<>+4(SB)/4, $0xbdfe5d4f
DATA logp3<>+8(SB)/4, $0xbdfe5d4f
DATA logp3<>+12(SB)/4, $0xbdfe5d4f
DATA logp3<>+16(SB)/4, $0xbdfe5d4f
DATA logp3<>+20(SB)/4, $0xbdfe5d4f
DATA logp3<>+24(SB)/4, $0xbdfe5d4f
DATA logp3<>+28(SB)/4, $0xbdfe5d4f
GLOBL logp3<>(SB), RODATA|NOPTR, $32

DATA logp4<>+0(SB)/4, $0x3e11e9bf
DATA logp4<>+4(SB)/4, $0x3e11e9bf
DATA logp4<>+8(SB)/4, $0x3e11e9bf
DATA logp4<>+12(SB)/4, $0x3e11e9bf
DATA logp4<>+16(SB)/4, $0x3e11e9bf
DATA logp4<>+20(SB)/4, $0x3e11e9bf
DATA logp4<>+24(SB)/4, $0x3e11e9bf
DATA logp4<>+28(SB)/4, $0x3e11e9bf
GLOBL logp4<>(SB), RODATA|NOPTR, $32

DATA logp5<>+0(SB)/4, $0xbe2aae50
DATA logp5<>+4(SB)/4, $0xbe2aae50
DATA logp5<>+8(SB)/4, $0xbe2aae50
DATA logp5<>+12(SB)/4, $0xbe2aae50
DATA logp5<>+16(SB)/4, $0xbe2aae50
DATA logp5<>+20(SB)/4, $0xbe2aae50
DATA logp5<>+24(SB)/4, $0xbe2aae50
DATA logp5<>+28(SB)/4, $0xbe2aae50
GLOBL logp5<>(SB), RODATA|NOPTR, $32

DATA logp6<>+0(SB)/4, $0x3e4cceac
DATA logp6<>+4(SB)/4, $0x3e4cceac
DATA logp6<>+8(SB)/4, $0x3e4cceac
DATA logp6<>+12(SB)/4, $0x3e4cceac
DATA logp6<>+16(SB)/4, $0x3e4cceac
DATA logp6<>+20(SB)/4, $0x3e4cceac
DATA logp6<>+24(SB)/4, $0x3e4cceac
DATA logp6<>+28(SB)/4, $0x3e4cceac
GLOBL logp6<>(SB), RODATA|NOPTR, $32

DATA logp7<>+0(SB)/4, $0xbe7ffffc
DATA logp7<>+4(SB)/4, $0xbe7ffffc
DATA logp7<>+8(SB)/4, $0xbe7ffffc
DATA logp7<>+12(SB)/4, $0xbe7ffffc
DATA logp7<>+16(SB)/4, $0xbe7ffffc
DATA logp7<>+20(SB)/4, $0xbe7ffffc
DATA logp7<>+24(SB)/4, $0xbe7ffffc
DATA logp7<>+28(SB)/4, $0xbe7ffffc
GLOBL logp7<>(SB), RODATA|NOPTR, $32

DATA logp8<>+0(SB)/4, $0x3eaaaaaa
DATA logp8<>+4(SB)/4, $0x3eaaaaaa
DATA logp8<>+8(SB)/4, $0x3eaaaaaa
DATA logp8<>+12(SB)/4, $0x3eaaaaaa
DATA logp8<>+16(SB)/4, $0x3eaaaaaa
DATA logp8<>+20(SB)/4, $0x3eaaaaaa
DATA logp8<>+24(SB)/4, $0x3eaaaaaa
DATA logp8<>+28(SB)/4, $0x3eaaaaaa
GLOBL logp8<>(SB), RODATA|NOPTR, $32

DATA explo512<>+0(SB)/4, $0xc2cff1b5
DATA explo512<>+4(SB)/4, $0xc2cff1b5
DATA explo512<>+8(SB)/4, $0xc2cff1b5
DATA explo512<>+12(SB)/4, $0xc2cff1b5
DATA explo512<>+16(SB)/4, $0xc2cff1b5
DATA explo512<>+20(SB)/4, $0xc2cff1b5
DATA explo512<>+24(SB)/4, $0xc2cff1b5
DATA explo512<>+28(SB)/4, $0xc2cff1b5
GLOBL explo512<>(SB), RODATA|NOPTR, $32

DATA sqrt2<>+0(SB)/4, $0x3fb504f3
DATA sqrt2<>+4(SB)/4, $0x3fb504f3
DATA sqrt2<>+8(SB)/4, $0x3fb504f3
DATA sqrt2<>+12(SB)/4, $0x3fb504f3
DATA sqrt2<>+16(SB)/4, $0x3fb504f3
DATA sqrt2<>+20(SB)/4, $0x3fb504f3
DATA sqrt2<>+24(SB)/4, $0x3fb504f3
DATA sqrt2<>+28(SB)/4, $0x3fb504f3
GLOBL sqrt2<>(SB), RODATA|NOPTR, $32

// Row kernels (see exp.go): AVX2 + FMA, n > 0 a multiple of 16. Constants
// are 8 copies of a float32 (or int32) so they can be ymm memory operands.
// Operand order is Go's: the destination last, and for two-source
// instructions "OP src2, src1, dst". VMAXPS/VMINPS return src2 when either
// input is NaN, so the clamps below keep the data in src2 and NaN flows
// through.

// EXP8 sets X = exp(a*X - b) for the 8 lanes of X (a in Y15, b in Y14, the
// clamps lo in Y12 and hi in Y11); N, Y, M, T are scratch.
#define EXP8(X, N, Y, M, T) \
	VFMSUB213PS  Y14, Y15, X;              \
	VCMPPS       $1, Y12, X, M;            \
	VMAXPS       X, Y12, X;                \
	VMINPS       X, Y11, X;                \
	VMULPS       log2e<>(SB), X, N;        \
	VROUNDPS     $0, N, N;                 \
	VFNMADD231PS expc1<>(SB), N, X;        \
	VFNMADD231PS expc2<>(SB), N, X;        \
	VMOVUPS      expp0<>(SB), Y;           \
	VFMADD213PS  expp1<>(SB), X, Y;        \
	VFMADD213PS  expp2<>(SB), X, Y;        \
	VFMADD213PS  expp3<>(SB), X, Y;        \
	VFMADD213PS  expp4<>(SB), X, Y;        \
	VFMADD213PS  expp5<>(SB), X, Y;        \
	VMULPS       X, X, T;                  \
	VFMADD213PS  X, T, Y;                  \
	VADDPS       one<>(SB), Y, Y;          \
	VCVTPS2DQ    N, N;                     \
	VPADDD       i127<>(SB), N, N;         \
	VPSLLD       $23, N, N;                \
	VMULPS       N, Y, X;                  \
	VANDNPS      X, M, X

// ADD8PD adds the 8 float32 lanes of V (xmm name XV) as float64 into ACC0
// (low 4) and ACC1 (high 4); T0, T1 (xmm name XT1) are scratch.
#define ADD8PD(V, XV, T0, T1, XT1, ACC0, ACC1) \
	VCVTPS2PD    XV, T0;       \
	VEXTRACTF128 $1, V, XT1;   \
	VCVTPS2PD    XT1, T1;      \
	VADDPD       T0, ACC0, ACC0; \
	VADDPD       T1, ACC1, ACC1

// HSUMPD reduces the 4 float64 lanes of ACC (xmm XACC) into its low lane; XT
// is scratch.
#define HSUMPD(ACC, XACC, XT) \
	VEXTRACTF128 $1, ACC, XT;  \
	VADDPD       XT, XACC, XACC; \
	VPERMILPD    $1, XACC, XT; \
	VADDSD       XT, XACC, XACC

// HREDPS reduces the 8 float32 lanes of V (xmm XV) with OP into its low
// lane; XT is scratch.
#define HREDPS(OP, V, XV, XT) \
	VEXTRACTF128 $1, V, XT;    \
	OP           XT, XV, XV;   \
	VPERMILPS    $0x4E, XV, XT; \
	OP           XT, XV, XV;   \
	VPERMILPS    $0xB1, XV, XT; \
	OP           XT, XV, XV

// func maxMinSumAVX2(x *float32, n int) (mx, mn float32, sum float64)
TEXT ·maxMinSumAVX2(SB), NOSPLIT, $0-32
	MOVQ    x+0(FP), SI
	MOVQ    n+8(FP), CX
	VMOVUPS (SI), Y0
	VMOVUPS Y0, Y1
	VXORPD  Y2, Y2, Y2
	VXORPD  Y3, Y3, Y3
	VXORPD  Y4, Y4, Y4
	VXORPD  Y5, Y5, Y5
	XORQ    AX, AX

mmsloop:
	VMOVUPS (SI)(AX*4), Y6
	VMOVUPS 32(SI)(AX*4), Y7
	VMAXPS  Y6, Y0, Y0
	VMINPS  Y6, Y1, Y1
	VMAXPS  Y7, Y0, Y0
	VMINPS  Y7, Y1, Y1
	ADD8PD(Y6, X6, Y8, Y9, X9, Y2, Y3)
	ADD8PD(Y7, X7, Y10, Y11, X11, Y4, Y5)
	ADDQ    $16, AX
	CMPQ    AX, CX
	JLT     mmsloop

	HREDPS(VMAXPS, Y0, X0, X6)
	VMOVSS  X0, mx+16(FP)
	HREDPS(VMINPS, Y1, X1, X6)
	VMOVSS  X1, mn+20(FP)
	VADDPD  Y3, Y2, Y2
	VADDPD  Y5, Y4, Y4
	VADDPD  Y4, Y2, Y2
	HSUMPD(Y2, X2, X3)
	VMOVSD  X2, sum+24(FP)
	VZEROUPPER
	RET

// func expSumAVX2(dst, x, pf *float32, n int, a, b float32) float64
// pf: n floats to prefetch into cache (the next row), one line per 16.
TEXT ·expSumAVX2(SB), NOSPLIT, $0-48
	MOVQ         dst+0(FP), DI
	MOVQ         x+8(FP), SI
	MOVQ         pf+16(FP), R8
	MOVQ         n+24(FP), CX
	VBROADCASTSS a+32(FP), Y15
	VBROADCASTSS b+36(FP), Y14
	VMOVUPS      explo<>(SB), Y12
	VMOVUPS      exphi<>(SB), Y11
	VXORPD       Y10, Y10, Y10
	VXORPD       Y13, Y13, Y13
	XORQ         AX, AX

esloop:
	PREFETCHT0 (R8)(AX*4)
	VMOVUPS (SI)(AX*4), Y0
	VMOVUPS 32(SI)(AX*4), Y5
	EXP8(Y0, Y1, Y2, Y3, Y4)
	EXP8(Y5, Y6, Y7, Y8, Y9)
	VMOVUPS Y0, (DI)(AX*4)
	VMOVUPS Y5, 32(DI)(AX*4)
	ADD8PD(Y0, X0, Y1, Y2, X2, Y10, Y13)
	ADD8PD(Y5, X5, Y6, Y7, X7, Y10, Y13)
	ADDQ    $16, AX
	CMPQ    AX, CX
	JLT     esloop

	VADDPD Y13, Y10, Y10
	HSUMPD(Y10, X10, X13)
	VMOVSD X10, ret+40(FP)
	VZEROUPPER
	RET

// Tables and constants of LOGT8: for j = 0..7, the float bits x - 0x3f380000
// (logtoff) cut [0.71875, 1.4375) into 8 intervals of 2^20 ulps; loginvc[j]
// is 1/c rounded to float32 for the interval's centre c (exactly 1 for the
// interval holding 1) and loglogc[j] = -log(loginvc[j]) rounded once;
// logt2..logt6 are the Taylor coefficients -1/2, 1/3, -1/4, 1/5, -1/6 of
// log(1+r), |r| <= 1/16. The two tables hold their 8 entries twice, for
// VPERMPS on 16 lanes (LOGT16), which indexes by 4 bits. Generated by a float64 program from these
// definitions.
DATA loginvc<>+0(SB)/4, $0x3faaaaab
DATA loginvc<>+4(SB)/4, $0x3f9d89d9
DATA loginvc<>+8(SB)/4, $0x3f924925
DATA loginvc<>+12(SB)/4, $0x3f888889
DATA loginvc<>+16(SB)/4, $0x3f800000
DATA loginvc<>+20(SB)/4, $0x3f638e39
DATA loginvc<>+24(SB)/4, $0x3f4ccccd
DATA loginvc<>+28(SB)/4, $0x3f3a2e8c
DATA loginvc<>+32(SB)/4, $0x3faaaaab
DATA loginvc<>+36(SB)/4, $0x3f9d89d9
DATA loginvc<>+40(SB)/4, $0x3f924925
DATA loginvc<>+44(SB)/4, $0x3f888889
DATA loginvc<>+48(SB)/4, $0x3f800000
DATA loginvc<>+52(SB)/4, $0x3f638e39
DATA loginvc<>+56(SB)/4, $0x3f4ccccd
DATA loginvc<>+60(SB)/4, $0x3f3a2e8c
GLOBL loginvc<>(SB), RODATA|NOPTR, $64

DATA loglogc<>+0(SB)/4, $0xbe934b12
DATA loglogc<>+4(SB)/4, $0xbe549f6c
DATA loglogc<>+8(SB)/4, $0xbe08bc77
DATA loglogc<>+12(SB)/4, $0xbd842ccd
DATA loglogc<>+16(SB)/4, $0x80000000
DATA loglogc<>+20(SB)/4, $0x3df1383a
DATA loglogc<>+24(SB)/4, $0x3e647fbd
DATA loglogc<>+28(SB)/4, $0x3ea30c5d
DATA loglogc<>+32(SB)/4, $0xbe934b12
DATA loglogc<>+36(SB)/4, $0xbe549f6c
DATA loglogc<>+40(SB)/4, $0xbe08bc77
DATA loglogc<>+44(SB)/4, $0xbd842ccd
DATA loglogc<>+48(SB)/4, $0x80000000
DATA loglogc<>+52(SB)/4, $0x3df1383a
DATA loglogc<>+56(SB)/4, $0x3e647fbd
DATA loglogc<>+60(SB)/4, $0x3ea30c5d
GLOBL loglogc<>(SB), RODATA|NOPTR, $64

DATA logt2<>+0(SB)/4, $0xbf000000
DATA logt2<>+4(SB)/4, $0xbf000000
DATA logt2<>+8(SB)/4, $0xbf000000
DATA logt2<>+12(SB)/4, $0xbf000000
DATA logt2<>+16(SB)/4, $0xbf000000
DATA logt2<>+20(SB)/4, $0xbf000000
DATA logt2<>+24(SB)/4, $0xbf000000
DATA logt2<>+28(SB)/4, $0xbf000000
GLOBL logt2<>(SB), RODATA|NOPTR, $32

DATA logt3<>+0(SB)/4, $0x3eaaaaab
DATA logt3<>+4(SB)/4, $0x3eaaaaab
DATA logt3<>+8(SB)/4, $0x3eaaaaab
DATA logt3<>+12(SB)/4, $0x3eaaaaab
DATA logt3<>+16(SB)/4, $0x3eaaaaab
DATA logt3<>+20(SB)/4, $0x3eaaaaab
DATA logt3<>+24(SB)/4, $0x3eaaaaab
DATA logt3<>+28(SB)/4, $0x3eaaaaab
GLOBL logt3<>(SB), RODATA|NOPTR, $32

DATA logt4<>+0(SB)/4, $0xbe800000
DATA logt4<>+4(SB)/4, $0xbe800000
DATA logt4<>+8(SB)/4, $0xbe800000
DATA logt4<>+12(SB)/4, $0xbe800000
DATA logt4<>+16(SB)/4, $0xbe800000
DATA logt4<>+20(SB)/4, $0xbe800000
DATA logt4<>+24(SB)/4, $0xbe800000
DATA logt4<>+28(SB)/4, $0xbe800000
GLOBL logt4<>(SB), RODATA|NOPTR, $32

DATA logt5<>+0(SB)/4, $0x3e4ccccd
DATA logt5<>+4(SB)/4, $0x3e4ccccd
DATA logt5<>+8(SB)/4, $0x3e4ccccd
DATA logt5<>+12(SB)/4, $0x3e4ccccd
DATA logt5<>+16(SB)/4, $0x3e4ccccd
DATA logt5<>+20(SB)/4, $0x3e4ccccd
DATA logt5<>+24(SB)/4, $0x3e4ccccd
DATA logt5<>+28(SB)/4, $0x3e4ccccd
GLOBL logt5<>(SB), RODATA|NOPTR, $32

DATA logt6<>+0(SB)/4, $0xbe2aaaab
DATA logt6<>+4(SB)/4, $0xbe2aaaab
DATA logt6<>+8(SB)/4, $0xbe2aaaab
DATA logt6<>+12(SB)/4, $0xbe2aaaab
DATA logt6<>+16(SB)/4, $0xbe2aaaab
DATA logt6<>+20(SB)/4, $0xbe2aaaab
DATA logt6<>+24(SB)/4, $0xbe2aaaab
DATA logt6<>+28(SB)/4, $0xbe2aaaab
GLOBL logt6<>(SB), RODATA|NOPTR, $32

DATA logtoff<>+0(SB)/4, $0x3f380000
DATA logtoff<>+4(SB)/4, $0x3f380000
DATA logtoff<>+8(SB)/4, $0x3f380000
DATA logtoff<>+12(SB)/4, $0x3f380000
DATA logtoff<>+16(SB)/4, $0x3f380000
DATA logtoff<>+20(SB)/4, $0x3f380000
DATA logtoff<>+24(SB)/4, $0x3f380000
DATA logtoff<>+28(SB)/4, $0x3f380000
GLOBL logtoff<>(SB), RODATA|NOPTR, $32

DATA logtexp<>+0(SB)/4, $0xff800000
DATA logtexp<>+4(SB)/4, $0xff800000
DATA logtexp<>+8(SB)/4, $0xff800000
DATA logtexp<>+12(SB)/4, $0xff800000
DATA logtexp<>+16(SB)/4, $0xff800000
DATA logtexp<>+20(SB)/4, $0xff800000
DATA logtexp<>+24(SB)/4, $0xff800000
DATA logtexp<>+28(SB)/4, $0xff800000
GLOBL logtexp<>(SB), RODATA|NOPTR, $32

// LOGT16CONST loads the constants of LOGT16 into Z17, Z18 and Z21..Z31.
#define LOGT16CONST \
	VBROADCASTSS minnorm<>(SB), Z31; \
	VBROADCASTSS logtoff<>(SB), Z30; \
	VBROADCASTSS logtexp<>(SB), Z29; \
	VBROADCASTSS one<>(SB), Z28;     \
	VBROADCASTSS logt6<>(SB), Z27;   \
	VBROADCASTSS logt5<>(SB), Z26;   \
	VBROADCASTSS logt4<>(SB), Z25;   \
	VBROADCASTSS logt3<>(SB), Z24;   \
	VBROADCASTSS logt2<>(SB), Z23;   \
	VMOVUPS      loginvc<>(SB), Z22; \
	VMOVUPS      loglogc<>(SB), Z21; \
	VBROADCASTSS logq1<>(SB), Z18;   \
	VBROADCASTSS logq2<>(SB), Z17

// LOGT16 is LOGT8 on 16 lanes: Z3 = log(max(Z0, smallest normal)), with
// Z0 clobbered, Z2, Z4..Z6 scratch and the constants of LOGT16CONST. Same
// operations on the same constants, so the same results as LOGT8.
#define LOGT16 \
	VMAXPS      Z31, Z0, Z0;  \
	VPSUBD      Z30, Z0, Z2;  \
	VPSRAD      $23, Z2, Z4;  \
	VPSRLD      $20, Z2, Z5;  \
	VPANDD      Z29, Z2, Z2;  \
	VPSUBD      Z2, Z0, Z2;   \
	VCVTDQ2PS   Z4, Z4;       \
	VPERMPS     Z22, Z5, Z6;  \
	VPERMPS     Z21, Z5, Z5;  \
	VFMSUB213PS Z28, Z6, Z2;  \
	VMULPS      Z2, Z2, Z6;   \
	VMOVAPS     Z27, Z3;      \
	VFMADD213PS Z26, Z2, Z3;  \
	VFMADD213PS Z25, Z2, Z3;  \
	VFMADD213PS Z24, Z2, Z3;  \
	VFMADD213PS Z23, Z2, Z3;  \
	VFMADD213PS Z2, Z6, Z3;   \
	VFMADD231PS Z18, Z4, Z3;  \
	VFMADD231PS Z17, Z4, Z5;  \
	VADDPS      Z5, Z3, Z3

// LOGT8 sets Y2 = log(max(Y0, smallest normal)) on 8 lanes (Y0 is
// clobbered; Y3..Y6 scratch), by a table of 8 entries instead of LOG8's
// long polynomial: x = 2^k * z with z in [0.71875, 1.4375), the interval j
// of z (3 bits of its mantissa, VPERMPS) gives c with r = z/c - 1 (one FMA
// with 1/c; |r| <= 1/16), and log x = k*ln2 + log c + log(1+r), log(1+r) by
// its Taylor polynomial of degree 6 (truncation below 2^-27 relative), ln2
// split as LOG8 does so that k*ln2 loses nothing. Within 2 ulp of log x
// (TestLogT8). NaN and +Inf as LOG8: NaN gives log of the smallest normal
// and +Inf a finite value; callers pass neither.
#define LOGT8 \
	VMAXPS       minnorm<>(SB), Y0, Y0;  \
	VPSUBD       logtoff<>(SB), Y0, Y3;  \
	VPSRAD       $23, Y3, Y4;            \
	VPSRLD       $20, Y3, Y5;            \
	VPAND        logtexp<>(SB), Y3, Y3;  \
	VPSUBD       Y3, Y0, Y3;             \
	VCVTDQ2PS    Y4, Y4;                 \
	VPERMPS      loginvc<>(SB), Y5, Y6;  \
	VPERMPS      loglogc<>(SB), Y5, Y5;  \
	VFMSUB213PS  one<>(SB), Y6, Y3;      \
	VMULPS       Y3, Y3, Y6;             \
	VMOVUPS      logt6<>(SB), Y2;        \
	VFMADD213PS  logt5<>(SB), Y3, Y2;    \
	VFMADD213PS  logt4<>(SB), Y3, Y2;    \
	VFMADD213PS  logt3<>(SB), Y3, Y2;    \
	VFMADD213PS  logt2<>(SB), Y3, Y2;    \
	VFMADD213PS  Y3, Y6, Y2;             \
	VFMADD231PS  logq1<>(SB), Y4, Y2;    \
	VFMADD231PS  logq2<>(SB), Y4, Y5;    \
	VADDPS       Y5, Y2, Y2

// LOG8 sets Y2 = log(max(Y0, smallest normal)) on 8 lanes (Cephes logf:
// x = m*2^e with m in [sqrt(1/2), sqrt(2)), log x = e*ln2 + log(m),
// log(1+f) = f - f^2/2 + f^3*P(f)); Y3..Y6 are scratch.
#define LOG8 \
	VMAXPS       minnorm<>(SB), Y0, Y2; \
	VPSRLD       $23, Y2, Y3;           \
	VPAND        mantmask<>(SB), Y2, Y2; \
	VPOR         half<>(SB), Y2, Y2;    \
	VPSUBD       i126<>(SB), Y3, Y3;    \
	VCVTDQ2PS    Y3, Y3;                \
	VCMPPS       $1, sqrthf<>(SB), Y2, Y4; \
	VANDPS       Y2, Y4, Y5;            \
	VSUBPS       one<>(SB), Y2, Y2;     \
	VANDPS       one<>(SB), Y4, Y6;     \
	VSUBPS       Y6, Y3, Y3;            \
	VADDPS       Y5, Y2, Y2;            \
	VMULPS       Y2, Y2, Y4;            \
	VMOVUPS      logp0<>(SB), Y6;       \
	VFMADD213PS  logp1<>(SB), Y2, Y6;   \
	VFMADD213PS  logp2<>(SB), Y2, Y6;   \
	VFMADD213PS  logp3<>(SB), Y2, Y6;   \
	VFMADD213PS  logp4<>(SB), Y2, Y6;   \
	VFMADD213PS  logp5<>(SB), Y2, Y6;   \
	VFMADD213PS  logp6<>(SB), Y2, Y6;   \
	VFMADD213PS  logp7<>(SB), Y2, Y6;   \
	VFMADD213PS  logp8<>(SB), Y2, Y6;   \
	VMULPS       Y2, Y6, Y6;            \
	VMULPS       Y4, Y6, Y6;            \
	VFMADD231PS  logq1<>(SB), Y3, Y6;   \
	VFNMADD231PS half<>(SB), Y4, Y6;    \
	VADDPS       Y6, Y2, Y2;            \
	VFMADD231PS  logq2<>(SB), Y3, Y2

// XLOGX8 accumulates 8 lanes of x (at off(SI)) and y (at off(DI)): min x
// into Y15, sum x into Y14, sum x*y (float64 products) into Y13, sum x log x
// into Y12. log is Cephes logf: x = m*2^e with m in [sqrt(1/2), sqrt(2)),
// log x = e*ln2 + log(m), log(1+f) = f - f^2/2 + f^3*P(f).
#define XLOGX8(off) \
	VMOVUPS      off(SI)(AX*4), Y0;     \
	VMOVUPS      off(DI)(AX*4), Y1;     \
	VMINPS       Y0, Y15, Y15;          \
	VCVTPS2PD    X0, Y2;                \
	VEXTRACTF128 $1, Y0, X3;            \
	VCVTPS2PD    X3, Y3;                \
	VADDPD       Y2, Y14, Y14;          \
	VADDPD       Y3, Y14, Y14;          \
	VCVTPS2PD    X1, Y4;                \
	VEXTRACTF128 $1, Y1, X5;            \
	VCVTPS2PD    X5, Y5;                \
	VFMADD231PD  Y2, Y4, Y13;           \
	VFMADD231PD  Y3, Y5, Y13;           \
	LOG8;                               \
	VMULPS       Y0, Y2, Y2;            \
	ADD8PD(Y2, X2, Y3, Y4, X4, Y12, Y12)

// func xLogXDotAVX2(x, y, pf *float32, n int) (xlogx, sum, dot float64, mn float32)
// pf: n floats to prefetch into cache (the next row), one line per 16.
TEXT ·xLogXDotAVX2(SB), NOSPLIT, $0-60
	MOVQ    x+0(FP), SI
	MOVQ    y+8(FP), DI
	MOVQ    pf+16(FP), R8
	MOVQ    n+24(FP), CX
	VMOVUPS (SI), Y15
	VXORPD  Y14, Y14, Y14
	VXORPD  Y13, Y13, Y13
	VXORPD  Y12, Y12, Y12
	XORQ    AX, AX

xlloop:
	PREFETCHT0 (R8)(AX*4)
	XLOGX8(0)
	XLOGX8(32)
	ADDQ $16, AX
	CMPQ AX, CX
	JLT  xlloop

	HSUMPD(Y12, X12, X0)
	VMOVSD X12, xlogx+32(FP)
	HSUMPD(Y14, X14, X0)
	VMOVSD X14, sum+40(FP)
	HSUMPD(Y13, X13, X0)
	VMOVSD X13, dot+48(FP)
	HREDPS(VMINPS, Y15, X15, X0)
	VMOVSS X15, mn+56(FP)
	VZEROUPPER
	RET

// func scaleShiftAVX2(x *float32, n int, alpha, beta float32)
TEXT ·scaleShiftAVX2(SB), NOSPLIT, $0-24
	MOVQ         x+0(FP), SI
	MOVQ         n+8(FP), CX
	VBROADCASTSS alpha+16(FP), Y14
	VBROADCASTSS beta+20(FP), Y15
	XORQ         AX, AX

ssloop:
	VMOVUPS     (SI)(AX*4), Y0
	VMOVUPS     32(SI)(AX*4), Y1
	VFMADD213PS Y15, Y14, Y0
	VFMADD213PS Y15, Y14, Y1
	VMOVUPS     Y0, (SI)(AX*4)
	VMOVUPS     Y1, 32(SI)(AX*4)
	ADDQ        $16, AX
	CMPQ        AX, CX
	JLT         ssloop
	VZEROUPPER
	RET

// func axpbyAVX2(x, y *float32, n int, alpha, beta float32)
TEXT ·axpbyAVX2(SB), NOSPLIT, $0-32
	MOVQ         x+0(FP), SI
	MOVQ         y+8(FP), DI
	MOVQ         n+16(FP), CX
	VBROADCASTSS alpha+24(FP), Y14
	VBROADCASTSS beta+28(FP), Y15
	XORQ         AX, AX

abloop:
	VMULPS      (DI)(AX*4), Y15, Y0
	VMULPS      32(DI)(AX*4), Y15, Y1
	VFMADD231PS (SI)(AX*4), Y14, Y0
	VFMADD231PS 32(SI)(AX*4), Y14, Y1
	VMOVUPS     Y0, (DI)(AX*4)
	VMOVUPS     Y1, 32(DI)(AX*4)
	ADDQ        $16, AX
	CMPQ        AX, CX
	JLT         abloop
	VZEROUPPER
	RET

// EXP16 sets X = exp(a*X - b) for the 16 lanes of zmm X: the polynomial of
// EXP8, with the scaling by 2^n done by VSCALEFPS (which also rounds
// subnormal results correctly). Constants: Z15 a, Z14 b, Z13 log2e, Z12 lo,
// Z11 hi, Z10 C1, Z9 C2, Z8..Z3 p0..p5, Z2 one. N, Y, T are scratch.
#define EXP16(X, N, Y, T) \
	VFMSUB213PS  Z14, Z15, X; \
	VMAXPS       X, Z12, X;   \
	VMINPS       X, Z11, X;   \
	VMULPS       Z13, X, N;   \
	VRNDSCALEPS  $0, N, N;    \
	VFNMADD231PS Z10, N, X;   \
	VFNMADD231PS Z9, N, X;    \
	VMOVAPS      Z8, Y;       \
	VFMADD213PS  Z7, X, Y;    \
	VFMADD213PS  Z6, X, Y;    \
	VFMADD213PS  Z5, X, Y;    \
	VFMADD213PS  Z4, X, Y;    \
	VFMADD213PS  Z3, X, Y;    \
	VMULPS       X, X, T;     \
	VFMADD213PS  X, T, Y;     \
	VADDPS       Z2, Y, Y;    \
	VSCALEFPS    N, Y, X

// ADD16PD adds the 16 float32 lanes of zmm V as float64 into Z0 and Z1;
// T0, T1 (ymm name YT1) are scratch.
#define ADD16PD(V, YV, T0, T1, YT1) \
	VCVTPS2PD     YV, T0;     \
	VEXTRACTF64X4 $1, V, YT1; \
	VCVTPS2PD     YT1, T1;    \
	VADDPD        T0, Z0, Z0; \
	VADDPD        T1, Z1, Z1

// func expSumAVX512(dst, x, pf *float32, n int, a, b float32) float64
// n > 0 a multiple of 16. Arguments below lo = -103.9 give 0; between -103.9
// and -87.3 the result is subnormal.
TEXT ·expSumAVX512(SB), NOSPLIT, $0-48
	MOVQ         dst+0(FP), DI
	MOVQ         x+8(FP), SI
	MOVQ         pf+16(FP), R8
	MOVQ         n+24(FP), CX
	VBROADCASTSS a+32(FP), Z15
	VBROADCASTSS b+36(FP), Z14
	VBROADCASTSS log2e<>(SB), Z13
	VBROADCASTSS explo512<>(SB), Z12
	VBROADCASTSS exphi<>(SB), Z11
	VBROADCASTSS expc1<>(SB), Z10
	VBROADCASTSS expc2<>(SB), Z9
	VBROADCASTSS expp0<>(SB), Z8
	VBROADCASTSS expp1<>(SB), Z7
	VBROADCASTSS expp2<>(SB), Z6
	VBROADCASTSS expp3<>(SB), Z5
	VBROADCASTSS expp4<>(SB), Z4
	VBROADCASTSS expp5<>(SB), Z3
	VBROADCASTSS one<>(SB), Z2
	VXORPD       Z0, Z0, Z0
	VXORPD       Z1, Z1, Z1
	XORQ         AX, AX
	MOVQ         CX, DX
	ANDQ         $-32, DX
	JZ           es512tail

es512loop:
	PREFETCHT0 (R8)(AX*4)
	PREFETCHT0 64(R8)(AX*4)
	VMOVUPS (SI)(AX*4), Z16
	VMOVUPS 64(SI)(AX*4), Z20
	EXP16(Z16, Z17, Z18, Z19)
	EXP16(Z20, Z21, Z22, Z23)
	VMOVUPS Z16, (DI)(AX*4)
	VMOVUPS Z20, 64(DI)(AX*4)
	ADD16PD(Z16, Y16, Z17, Z18, Y18)
	ADD16PD(Z20, Y20, Z21, Z22, Y22)
	ADDQ    $32, AX
	CMPQ    AX, DX
	JLT     es512loop

es512tail:
	CMPQ    AX, CX
	JGE     es512done
	PREFETCHT0 (R8)(AX*4)
	VMOVUPS (SI)(AX*4), Z16
	EXP16(Z16, Z17, Z18, Z19)
	VMOVUPS Z16, (DI)(AX*4)
	ADD16PD(Z16, Y16, Z17, Z18, Y18)

es512done:
	VADDPD        Z1, Z0, Z0
	VEXTRACTF64X4 $1, Z0, Y1
	VADDPD        Y1, Y0, Y0
	HSUMPD(Y0, X0, X1)
	VMOVSD        X0, ret+40(FP)
	VZEROUPPER
	RET

// XLOGX16 is XLOGX8 on 16 lanes, with AVX-512's exponent and mantissa
// extraction: x = m*2^e with m in [1, 2), halved (and e raised) above
// sqrt(2). Accumulators: Z16 min x, Z15 sum x, Z14 sum x*y, Z13 sum x log x.
// Constants: Z31 smallest normal, Z30 sqrt(2), Z29 0.5, Z28 1, Z27..Z19 the
// polynomial, Z18 q1, Z17 q2.
#define XLOGX16 \
	VMOVUPS       (SI)(AX*4), Z0; \
	VMOVUPS       (DI)(AX*4), Z1; \
	VMINPS        Z0, Z16, Z16;   \
	VCVTPS2PD     Y0, Z2;         \
	VEXTRACTF64X4 $1, Z0, Y3;     \
	VCVTPS2PD     Y3, Z3;         \
	VADDPD        Z2, Z15, Z15;   \
	VADDPD        Z3, Z15, Z15;   \
	VCVTPS2PD     Y1, Z4;         \
	VEXTRACTF64X4 $1, Z1, Y5;     \
	VCVTPS2PD     Y5, Z5;         \
	VFMADD231PD   Z2, Z4, Z14;    \
	VFMADD231PD   Z3, Z5, Z14;    \
	VMAXPS        Z31, Z0, Z2;    \
	VGETMANTPS    $0, Z2, Z3;     \
	VGETEXPPS     Z2, Z4;         \
	VCMPPS        $14, Z30, Z3, K1; \
	VMULPS        Z29, Z3, K1, Z3; \
	VADDPS        Z28, Z4, K1, Z4; \
	VSUBPS        Z28, Z3, Z3;    \
	VMULPS        Z3, Z3, Z5;     \
	VMOVAPS       Z27, Z6;        \
	VFMADD213PS   Z26, Z3, Z6;   \
	VFMADD213PS   Z25, Z3, Z6;   \
	VFMADD213PS   Z24, Z3, Z6;   \
	VFMADD213PS   Z23, Z3, Z6;   \
	VFMADD213PS   Z22, Z3, Z6;   \
	VFMADD213PS   Z21, Z3, Z6;   \
	VFMADD213PS   Z20, Z3, Z6;   \
	VFMADD213PS   Z19, Z3, Z6;   \
	VMULPS        Z3, Z6, Z6;     \
	VMULPS        Z5, Z6, Z6;     \
	VFMADD231PS   Z18, Z4, Z6;    \
	VFNMADD231PS  Z29, Z5, Z6;    \
	VADDPS        Z6, Z3, Z3;     \
	VFMADD231PS   Z17, Z4, Z3;    \
	VMULPS        Z0, Z3, Z3;     \
	VCVTPS2PD     Y3, Z6;         \
	VEXTRACTF64X4 $1, Z3, Y7;     \
	VCVTPS2PD     Y7, Z7;         \
	VADDPD        Z6, Z13, Z13;   \
	VADDPD        Z7, Z13, Z13

// func xLogXDotAVX512(x, y, pf *float32, n int) (xlogx, sum, dot float64, mn float32)
// n > 0 a multiple of 16; pf as xLogXDotAVX2.
TEXT ·xLogXDotAVX512(SB), NOSPLIT, $0-60
	MOVQ         x+0(FP), SI
	MOVQ         y+8(FP), DI
	MOVQ         pf+16(FP), R8
	MOVQ         n+24(FP), CX
	VBROADCASTSS minnorm<>(SB), Z31
	VBROADCASTSS sqrt2<>(SB), Z30
	VBROADCASTSS half<>(SB), Z29
	VBROADCASTSS one<>(SB), Z28
	VBROADCASTSS logp0<>(SB), Z27
	VBROADCASTSS logp1<>(SB), Z26
	VBROADCASTSS logp2<>(SB), Z25
	VBROADCASTSS logp3<>(SB), Z24
	VBROADCASTSS logp4<>(SB), Z23
	VBROADCASTSS logp5<>(SB), Z22
	VBROADCASTSS logp6<>(SB), Z21
	VBROADCASTSS logp7<>(SB), Z20
	VBROADCASTSS logp8<>(SB), Z19
	VBROADCASTSS logq1<>(SB), Z18
	VBROADCASTSS logq2<>(SB), Z17
	VMOVUPS      (SI), Z16
	VXORPD       Z15, Z15, Z15
	VXORPD       Z14, Z14, Z14
	VXORPD       Z13, Z13, Z13
	XORQ         AX, AX

xl512loop:
	PREFETCHT0 (R8)(AX*4)
	XLOGX16
	ADDQ $16, AX
	CMPQ AX, CX
	JLT  xl512loop

	VEXTRACTF64X4 $1, Z13, Y0
	VADDPD        Y0, Y13, Y13
	HSUMPD(Y13, X13, X0)
	VMOVSD        X13, xlogx+32(FP)
	VEXTRACTF64X4 $1, Z15, Y0
	VADDPD        Y0, Y15, Y15
	HSUMPD(Y15, X15, X0)
	VMOVSD        X15, sum+40(FP)
	VEXTRACTF64X4 $1, Z14, Y0
	VADDPD        Y0, Y14, Y14
	HSUMPD(Y14, X14, X0)
	VMOVSD        X14, dot+48(FP)
	VEXTRACTF32X8 $1, Z16, Y0
	VMINPS        Y0, Y16, Y0
	HREDPS(VMINPS, Y0, X0, X1)
	VMOVSS        X0, mn+56(FP)
	VZEROUPPER
	RET

// func logAVX512(dst, x *float32, n int)
// dst[i] = log(max(x[i], smallest normal)); n > 0 a multiple of 16.
// Registers as XLOGX16.
TEXT ·logAVX512(SB), NOSPLIT, $0-24
	MOVQ         dst+0(FP), DI
	MOVQ         x+8(FP), SI
	MOVQ         n+16(FP), CX
	LOGT16CONST
	XORQ         AX, AX

log512loop:
	VMOVUPS      (SI)(AX*4), Z0
	LOGT16
	VMOVUPS      Z3, (DI)(AX*4)
	ADDQ         $16, AX
	CMPQ         AX, CX
	JLT          log512loop
	VZEROUPPER
	RET

// func dotAVX2(x, y *float32, n int) float64
// sum x[i]*y[i] with float64 products and sums; n > 0 a multiple of 16.
TEXT ·dotAVX2(SB), NOSPLIT, $0-32
	MOVQ   x+0(FP), SI
	MOVQ   y+8(FP), DI
	MOVQ   n+16(FP), CX
	VXORPD Y10, Y10, Y10
	VXORPD Y11, Y11, Y11
	VXORPD Y12, Y12, Y12
	VXORPD Y13, Y13, Y13
	XORQ   AX, AX

dotloop:
	VCVTPS2PD   (SI)(AX*4), Y0
	VCVTPS2PD   16(SI)(AX*4), Y1
	VCVTPS2PD   32(SI)(AX*4), Y2
	VCVTPS2PD   48(SI)(AX*4), Y3
	VCVTPS2PD   (DI)(AX*4), Y4
	VCVTPS2PD   16(DI)(AX*4), Y5
	VCVTPS2PD   32(DI)(AX*4), Y6
	VCVTPS2PD   48(DI)(AX*4), Y7
	VFMADD231PD Y0, Y4, Y10
	VFMADD231PD Y1, Y5, Y11
	VFMADD231PD Y2, Y6, Y12
	VFMADD231PD Y3, Y7, Y13
	ADDQ        $16, AX
	CMPQ        AX, CX
	JLT         dotloop

	VADDPD Y11, Y10, Y10
	VADDPD Y13, Y12, Y12
	VADDPD Y12, Y10, Y10
	HSUMPD(Y10, X10, X11)
	VMOVSD X10, ret+24(FP)
	VZEROUPPER
	RET

// func mulShiftAVX2(y, x *float32, n int, alpha, beta float32)
// y[i] = alpha * y[i] * (x[i] + beta); n > 0 a multiple of 16.
TEXT ·mulShiftAVX2(SB), NOSPLIT, $0-32
	MOVQ         y+0(FP), DI
	MOVQ         x+8(FP), SI
	MOVQ         n+16(FP), CX
	VBROADCASTSS alpha+24(FP), Y14
	VBROADCASTSS beta+28(FP), Y15
	XORQ         AX, AX

msloop:
	VADDPS  (SI)(AX*4), Y15, Y0
	VADDPS  32(SI)(AX*4), Y15, Y1
	VMULPS  (DI)(AX*4), Y14, Y2
	VMULPS  32(DI)(AX*4), Y14, Y3
	VMULPS  Y2, Y0, Y0
	VMULPS  Y3, Y1, Y1
	VMOVUPS Y0, (DI)(AX*4)
	VMOVUPS Y1, 32(DI)(AX*4)
	ADDQ    $16, AX
	CMPQ    AX, CX
	JLT     msloop
	VZEROUPPER
	RET

// func logAVX2(dst, x *float32, n int)
// dst[i] = log(max(x[i], smallest normal)) by LOGT8; n > 0 a multiple of 16.
TEXT ·logAVX2(SB), NOSPLIT, $0-24
	MOVQ dst+0(FP), DI
	MOVQ x+8(FP), SI
	MOVQ n+16(FP), CX
	XORQ AX, AX

log2loop:
	VMOVUPS (SI)(AX*4), Y0
	LOGT8
	VMOVUPS Y2, (DI)(AX*4)
	ADDQ    $8, AX
	CMPQ    AX, CX
	JLT     log2loop
	VZEROUPPER
	RET

// EXPA8 sets X = exp(X) for the 8 lanes of X (the argument, already
// computed): EXP8 without its lower clamp, which the final mask makes
// redundant (arguments below lo give 0 whatever the polynomial made of
// them; NaN stays NaN). HI holds the upper clamp; N, Y, M, T are scratch.
#define EXPA8(X, N, Y, M, T, HI) \
	VCMPPS       $1, explo<>(SB), X, M;    \
	VMINPS       X, HI, X;                 \
	VMULPS       log2e<>(SB), X, N;        \
	VROUNDPS     $0, N, N;                 \
	VFNMADD231PS expc1<>(SB), N, X;        \
	VFNMADD231PS expc2<>(SB), N, X;        \
	VMOVUPS      expp0<>(SB), Y;           \
	VFMADD213PS  expp1<>(SB), X, Y;        \
	VFMADD213PS  expp2<>(SB), X, Y;        \
	VFMADD213PS  expp3<>(SB), X, Y;        \
	VFMADD213PS  expp4<>(SB), X, Y;        \
	VFMADD213PS  expp5<>(SB), X, Y;        \
	VMULPS       X, X, T;                  \
	VFMADD213PS  X, T, Y;                  \
	VADDPS       one<>(SB), Y, Y;          \
	VCVTPS2DQ    N, N;                     \
	VPADDD       i127<>(SB), N, N;         \
	VPSLLD       $23, N, N;                \
	VMULPS       N, Y, X;                  \
	VANDNPS      X, M, X

// EXPDIFF8 is one block of 8 lanes of ExpDiffDot at byte offset off (off2
// = off+16): arg = a*x - b (x at SI; a Y15, b Y14), d = arg - (c*y - f) in
// float64 (y at R9; c Y13, f Y12 as float64) in Y5, Y6, e = exp(arg) (upper
// clamp Y11) stored to dst (DI) after x and y were read, e added into Y7,
// Y8 and e*d into Y9, Y10 as float64.
#define EXPDIFF8(off, off2) \
	VMOVUPS      off(SI)(AX*4), Y0;     \
	VFMSUB213PS  Y14, Y15, Y0;          \
	VCVTPS2PD    X0, Y5;                \
	VEXTRACTF128 $1, Y0, X1;            \
	VCVTPS2PD    X1, Y6;                \
	VCVTPS2PD    off(R9)(AX*4), Y1;     \
	VCVTPS2PD    off2(R9)(AX*4), Y2;    \
	VFMSUB213PD  Y12, Y13, Y1;          \
	VFMSUB213PD  Y12, Y13, Y2;          \
	VSUBPD       Y1, Y5, Y5;            \
	VSUBPD       Y2, Y6, Y6;            \
	EXPA8(Y0, Y1, Y2, Y3, Y4, Y11);     \
	VCVTPS2PD    X0, Y1;                \
	VEXTRACTF128 $1, Y0, X2;            \
	VCVTPS2PD    X2, Y2;                \
	VADDPD       Y1, Y7, Y7;            \
	VADDPD       Y2, Y8, Y8;            \
	VFMADD231PD  Y1, Y5, Y9;            \
	VFMADD231PD  Y2, Y6, Y10;           \
	VMOVUPS      Y0, off(DI)(AX*4)

// func expDiffDotAVX2(dst, x, y, pf *float32, n int, a, b, c, f float32) (sum, dot float64)
// n > 0 a multiple of 16; pf as expSumAVX2.
TEXT ·expDiffDotAVX2(SB), NOSPLIT, $0-72
	MOVQ         dst+0(FP), DI
	MOVQ         x+8(FP), SI
	MOVQ         y+16(FP), R9
	MOVQ         pf+24(FP), R8
	MOVQ         n+32(FP), CX
	VBROADCASTSS a+40(FP), Y15
	VBROADCASTSS b+44(FP), Y14
	VBROADCASTSS c+48(FP), X13
	VCVTPS2PD    X13, Y13
	VBROADCASTSS f+52(FP), X12
	VCVTPS2PD    X12, Y12
	VMOVUPS      exphi<>(SB), Y11
	VXORPD       Y7, Y7, Y7
	VXORPD       Y8, Y8, Y8
	VXORPD       Y9, Y9, Y9
	VXORPD       Y10, Y10, Y10
	XORQ         AX, AX

edloop:
	PREFETCHT0 (R8)(AX*4)
	EXPDIFF8(0, 16)
	EXPDIFF8(32, 48)
	ADDQ       $16, AX
	CMPQ       AX, CX
	JLT        edloop

	VADDPD Y8, Y7, Y7
	HSUMPD(Y7, X7, X8)
	VMOVSD X7, sum+56(FP)
	VADDPD Y10, Y9, Y9
	HSUMPD(Y9, X9, X10)
	VMOVSD X9, dot+64(FP)
	VZEROUPPER
	RET

// EXPARG8 is one block of 8 lanes of ExpDiffDot with c = f = 0 at byte
// offset off: arg = a*x - b (x at SI; a Y15, b Y14), e = exp(arg) (upper
// clamp Y11) stored to dst (DI), e added into Y7, Y8 and e*arg into Y9,
// Y10 as float64.
#define EXPARG8(off) \
	VMOVUPS      off(SI)(AX*4), Y0;     \
	VFMSUB213PS  Y14, Y15, Y0;          \
	VCVTPS2PD    X0, Y5;                \
	VEXTRACTF128 $1, Y0, X1;            \
	VCVTPS2PD    X1, Y6;                \
	EXPA8(Y0, Y1, Y2, Y3, Y4, Y11);     \
	VCVTPS2PD    X0, Y1;                \
	VEXTRACTF128 $1, Y0, X2;            \
	VCVTPS2PD    X2, Y2;                \
	VADDPD       Y1, Y7, Y7;            \
	VADDPD       Y2, Y8, Y8;            \
	VFMADD231PD  Y1, Y5, Y9;            \
	VFMADD231PD  Y2, Y6, Y10;           \
	VMOVUPS      Y0, off(DI)(AX*4)

// func expArgDotAVX2(dst, x, pf *float32, n int, a, b float32) (sum, dot float64)
// ExpDiffDot with c = f = 0: dot = sum e*arg. n > 0 a multiple of 16.
TEXT ·expArgDotAVX2(SB), NOSPLIT, $0-56
	MOVQ         dst+0(FP), DI
	MOVQ         x+8(FP), SI
	MOVQ         pf+16(FP), R8
	MOVQ         n+24(FP), CX
	VBROADCASTSS a+32(FP), Y15
	VBROADCASTSS b+36(FP), Y14
	VMOVUPS      exphi<>(SB), Y11
	VXORPD       Y7, Y7, Y7
	VXORPD       Y8, Y8, Y8
	VXORPD       Y9, Y9, Y9
	VXORPD       Y10, Y10, Y10
	XORQ         AX, AX

ealoop:
	PREFETCHT0 (R8)(AX*4)
	EXPARG8(0)
	EXPARG8(32)
	ADDQ       $16, AX
	CMPQ       AX, CX
	JLT        ealoop

	VADDPD Y8, Y7, Y7
	HSUMPD(Y7, X7, X8)
	VMOVSD X7, sum+40(FP)
	VADDPD Y10, Y9, Y9
	HSUMPD(Y9, X9, X10)
	VMOVSD X9, dot+48(FP)
	VZEROUPPER
	RET

// func expDiffDotAVX512(dst, x, y, pf *float32, n int, a, b, c, f float32) (sum, dot float64)
// n > 0 a multiple of 16. Constants as EXP16 (Z15 a, Z14 b), c in Z20, f in
// Z21; sums in Z0, Z1 (e) and Z24, Z25 (e*d). Arguments below -103.9 give
// 0, as expSumAVX512.
TEXT ·expDiffDotAVX512(SB), NOSPLIT, $0-72
	MOVQ         dst+0(FP), DI
	MOVQ         x+8(FP), SI
	MOVQ         y+16(FP), R9
	MOVQ         pf+24(FP), R8
	MOVQ         n+32(FP), CX
	VBROADCASTSS a+40(FP), Z15
	VBROADCASTSS b+44(FP), Z14
	VBROADCASTSS c+48(FP), Y20
	VCVTPS2PD    Y20, Z20
	VBROADCASTSS f+52(FP), Y21
	VCVTPS2PD    Y21, Z21
	VBROADCASTSS log2e<>(SB), Z13
	VBROADCASTSS explo512<>(SB), Z12
	VBROADCASTSS exphi<>(SB), Z11
	VBROADCASTSS expc1<>(SB), Z10
	VBROADCASTSS expc2<>(SB), Z9
	VBROADCASTSS expp0<>(SB), Z8
	VBROADCASTSS expp1<>(SB), Z7
	VBROADCASTSS expp2<>(SB), Z6
	VBROADCASTSS expp3<>(SB), Z5
	VBROADCASTSS expp4<>(SB), Z4
	VBROADCASTSS expp5<>(SB), Z3
	VBROADCASTSS one<>(SB), Z2
	VXORPD       Z0, Z0, Z0
	VXORPD       Z1, Z1, Z1
	VXORPD       Z24, Z24, Z24
	VXORPD       Z25, Z25, Z25
	XORQ         AX, AX

ed512loop:
	PREFETCHT0    (R8)(AX*4)
	VMOVUPS       (SI)(AX*4), Z16
	VFMSUB213PS   Z14, Z15, Z16
	VCVTPS2PD     Y16, Z22
	VEXTRACTF64X4 $1, Z16, Y23
	VCVTPS2PD     Y23, Z23
	VCVTPS2PD     (R9)(AX*4), Z26
	VCVTPS2PD     32(R9)(AX*4), Z27
	VFMSUB213PD   Z21, Z20, Z26
	VFMSUB213PD   Z21, Z20, Z27
	VSUBPD        Z26, Z22, Z22
	VSUBPD        Z27, Z23, Z23
	VMAXPS        Z16, Z12, Z16
	VMINPS        Z16, Z11, Z16
	VMULPS        Z13, Z16, Z17
	VRNDSCALEPS   $0, Z17, Z17
	VFNMADD231PS  Z10, Z17, Z16
	VFNMADD231PS  Z9, Z17, Z16
	VMOVAPS       Z8, Z18
	VFMADD213PS   Z7, Z16, Z18
	VFMADD213PS   Z6, Z16, Z18
	VFMADD213PS   Z5, Z16, Z18
	VFMADD213PS   Z4, Z16, Z18
	VFMADD213PS   Z3, Z16, Z18
	VMULPS        Z16, Z16, Z19
	VFMADD213PS   Z16, Z19, Z18
	VADDPS        Z2, Z18, Z18
	VSCALEFPS     Z17, Z18, Z16
	VCVTPS2PD     Y16, Z17
	VEXTRACTF64X4 $1, Z16, Y18
	VCVTPS2PD     Y18, Z18
	VADDPD        Z17, Z0, Z0
	VADDPD        Z18, Z1, Z1
	VFMADD231PD   Z17, Z22, Z24
	VFMADD231PD   Z18, Z23, Z25
	VMOVUPS       Z16, (DI)(AX*4)
	ADDQ          $16, AX
	CMPQ          AX, CX
	JLT           ed512loop

	VADDPD        Z1, Z0, Z0
	VEXTRACTF64X4 $1, Z0, Y1
	VADDPD        Y1, Y0, Y0
	HSUMPD(Y0, X0, X1)
	VMOVSD        X0, sum+56(FP)
	VADDPD        Z25, Z24, Z24
	VEXTRACTF64X4 $1, Z24, Y25
	VADDPD        Y25, Y24, Y24
	VMOVAPD       Y24, Y0
	HSUMPD(Y0, X0, X1)
	VMOVSD        X0, dot+64(FP)
	VZEROUPPER
	RET

// LOGMIX8 is one block of 8 lanes of LogMixDot at byte offset off: m = cp*p
// + cq*e (p at R9, e at R10; cp in Y12, cq in Y13), lm = log m by LOG8 (in
// Y0, out Y2; Y3..Y6 scratch), PL = p*lm (float32) and DS = dst = e*((a*z -
// b) - lm) (z at SI; a in Y15, b in Y14), stored to DI after every read of
// the block.
#define LOGMIX8(off, PL, DS) \
	VMULPS       off(R9)(AX*4), Y12, Y0;  \
	VFMADD231PS  off(R10)(AX*4), Y13, Y0; \
	LOGT8;                                 \
	VMULPS       off(R9)(AX*4), Y2, PL;   \
	VMOVUPS      off(SI)(AX*4), DS;       \
	VFMSUB213PS  Y14, Y15, DS;            \
	VSUBPS       Y2, DS, DS;              \
	VMULPS       off(R10)(AX*4), DS, DS;  \
	VMOVUPS      DS, off(DI)(AX*4)

// func logMixDotAVX2(dst, z, p, e *float32, n int, cp, cq, a, b float32) (pl, ds float64)
// n > 0 a multiple of 16.
TEXT ·logMixDotAVX2(SB), NOSPLIT, $0-72
	MOVQ         dst+0(FP), DI
	MOVQ         z+8(FP), SI
	MOVQ         p+16(FP), R9
	MOVQ         e+24(FP), R10
	MOVQ         n+32(FP), CX
	VBROADCASTSS cp+40(FP), Y12
	VBROADCASTSS cq+44(FP), Y13
	VBROADCASTSS a+48(FP), Y15
	VBROADCASTSS b+52(FP), Y14
	VXORPD       Y8, Y8, Y8
	VXORPD       Y9, Y9, Y9
	VXORPD       Y10, Y10, Y10
	VXORPD       Y11, Y11, Y11
	XORQ         AX, AX

lmloop:
	LOGMIX8(0, Y7, Y1)
	LOGMIX8(32, Y3, Y5)
	VADDPS       Y7, Y3, Y3
	VADDPS       Y1, Y5, Y5
	VCVTPS2PD    X3, Y4
	VEXTRACTF128 $1, Y3, X3
	VCVTPS2PD    X3, Y3
	VADDPD       Y4, Y8, Y8
	VADDPD       Y3, Y9, Y9
	VCVTPS2PD    X5, Y4
	VEXTRACTF128 $1, Y5, X5
	VCVTPS2PD    X5, Y5
	VADDPD       Y4, Y10, Y10
	VADDPD       Y5, Y11, Y11
	ADDQ         $16, AX
	CMPQ AX, CX
	JLT  lmloop

	VADDPD Y9, Y8, Y8
	HSUMPD(Y8, X8, X9)
	VMOVSD X8, pl+56(FP)
	VADDPD Y11, Y10, Y10
	HSUMPD(Y10, X10, X11)
	VMOVSD X10, ds+64(FP)
	VZEROUPPER
	RET

// func logMixDotAVX512(dst, z, p, e *float32, n int, cp, cq, a, b float32) (pl, ds float64)
// n > 0 a multiple of 16. The logarithm of XLOGX16 (constants in Z17..Z31);
// cp Z12, cq Z13, b Z14, a Z15; sums Z8, Z9 (p*lm) and Z10, Z11 (dst).
TEXT ·logMixDotAVX512(SB), NOSPLIT, $0-72
	MOVQ         dst+0(FP), DI
	MOVQ         z+8(FP), SI
	MOVQ         p+16(FP), R9
	MOVQ         e+24(FP), R10
	MOVQ         n+32(FP), CX
	VBROADCASTSS cp+40(FP), Z12
	VBROADCASTSS cq+44(FP), Z13
	VBROADCASTSS a+48(FP), Z15
	VBROADCASTSS b+52(FP), Z14
	LOGT16CONST
	VXORPD       Z8, Z8, Z8
	VXORPD       Z9, Z9, Z9
	VXORPD       Z10, Z10, Z10
	VXORPD       Z11, Z11, Z11
	XORQ         AX, AX

lm512loop:
	VMULPS        (R9)(AX*4), Z12, Z0
	VFMADD231PS   (R10)(AX*4), Z13, Z0
	LOGT16
	VMULPS        (R9)(AX*4), Z3, Z4
	VCVTPS2PD     Y4, Z5
	VEXTRACTF64X4 $1, Z4, Y4
	VCVTPS2PD     Y4, Z4
	VADDPD        Z5, Z8, Z8
	VADDPD        Z4, Z9, Z9
	VMOVUPS       (SI)(AX*4), Z6
	VFMSUB213PS   Z14, Z15, Z6
	VSUBPS        Z3, Z6, Z6
	VMULPS        (R10)(AX*4), Z6, Z6
	VCVTPS2PD     Y6, Z5
	VEXTRACTF64X4 $1, Z6, Y4
	VCVTPS2PD     Y4, Z4
	VADDPD        Z5, Z10, Z10
	VADDPD        Z4, Z11, Z11
	VMOVUPS       Z6, (DI)(AX*4)
	ADDQ          $16, AX
	CMPQ          AX, CX
	JLT           lm512loop

	VADDPD        Z9, Z8, Z8
	VEXTRACTF64X4 $1, Z8, Y9
	VADDPD        Y9, Y8, Y8
	HSUMPD(Y8, X8, X9)
	VMOVSD        X8, pl+56(FP)
	VADDPD        Z11, Z10, Z10
	VEXTRACTF64X4 $1, Z10, Y11
	VADDPD        Y11, Y10, Y10
	HSUMPD(Y10, X10, X11)
	VMOVSD        X10, ds+64(FP)
	VZEROUPPER
	RET

// LOGMIXC8 is one block of 8 lanes of LogMixConst at byte offset off: m =
// pc + cq*e (e at R10; pc in Y12, cq in Y13), lm = log m by LOG8 (in Y0,
// out Y2; Y3..Y6 scratch), LM = lm, DS = dst = e*((a*z - b) - lm) (z at SI;
// a in Y15, b in Y14), stored to DI after every read of the block.
#define LOGMIXC8(off, LM, DS) \
	VMOVAPS      Y12, Y0;                 \
	VFMADD231PS  off(R10)(AX*4), Y13, Y0; \
	LOGT8;                                 \
	VMOVAPS      Y2, LM;                  \
	VMOVUPS      off(SI)(AX*4), DS;       \
	VFMSUB213PS  Y14, Y15, DS;            \
	VSUBPS       Y2, DS, DS;              \
	VMULPS       off(R10)(AX*4), DS, DS;  \
	VMOVUPS      DS, off(DI)(AX*4)

// func logMixConstAVX2(dst, z, e *float32, n int, pc, cq, a, b float32) (sl, ds float64)
// n > 0 a multiple of 16.
TEXT ·logMixConstAVX2(SB), NOSPLIT, $0-64
	MOVQ         dst+0(FP), DI
	MOVQ         z+8(FP), SI
	MOVQ         e+16(FP), R10
	MOVQ         n+24(FP), CX
	VBROADCASTSS pc+32(FP), Y12
	VBROADCASTSS cq+36(FP), Y13
	VBROADCASTSS a+40(FP), Y15
	VBROADCASTSS b+44(FP), Y14
	VXORPD       Y8, Y8, Y8
	VXORPD       Y9, Y9, Y9
	VXORPD       Y10, Y10, Y10
	VXORPD       Y11, Y11, Y11
	XORQ         AX, AX

lcloop:
	LOGMIXC8(0, Y7, Y1)
	LOGMIXC8(32, Y3, Y5)
	VADDPS       Y7, Y3, Y3
	VADDPS       Y1, Y5, Y5
	VCVTPS2PD    X3, Y4
	VEXTRACTF128 $1, Y3, X3
	VCVTPS2PD    X3, Y3
	VADDPD       Y4, Y8, Y8
	VADDPD       Y3, Y9, Y9
	VCVTPS2PD    X5, Y4
	VEXTRACTF128 $1, Y5, X5
	VCVTPS2PD    X5, Y5
	VADDPD       Y4, Y10, Y10
	VADDPD       Y5, Y11, Y11
	ADDQ         $16, AX
	CMPQ         AX, CX
	JLT          lcloop

	VADDPD Y9, Y8, Y8
	HSUMPD(Y8, X8, X9)
	VMOVSD X8, sl+48(FP)
	VADDPD Y11, Y10, Y10
	HSUMPD(Y10, X10, X11)
	VMOVSD X10, ds+56(FP)
	VZEROUPPER
	RET

// func logMixConstAVX512(dst, z, e *float32, n int, pc, cq, a, b float32) (sl, ds float64)
// n > 0 a multiple of 16. Registers as logMixDotAVX512 (pc in Z12).
TEXT ·logMixConstAVX512(SB), NOSPLIT, $0-64
	MOVQ         dst+0(FP), DI
	MOVQ         z+8(FP), SI
	MOVQ         e+16(FP), R10
	MOVQ         n+24(FP), CX
	VBROADCASTSS pc+32(FP), Z12
	VBROADCASTSS cq+36(FP), Z13
	VBROADCASTSS a+40(FP), Z15
	VBROADCASTSS b+44(FP), Z14
	LOGT16CONST
	VXORPD       Z8, Z8, Z8
	VXORPD       Z9, Z9, Z9
	VXORPD       Z10, Z10, Z10
	VXORPD       Z11, Z11, Z11
	XORQ         AX, AX

lc512loop:
	VMOVAPS       Z12, Z0
	VFMADD231PS   (R10)(AX*4), Z13, Z0
	LOGT16
	VCVTPS2PD     Y3, Z5
	VEXTRACTF64X4 $1, Z3, Y4
	VCVTPS2PD     Y4, Z4
	VADDPD        Z5, Z8, Z8
	VADDPD        Z4, Z9, Z9
	VMOVUPS       (SI)(AX*4), Z6
	VFMSUB213PS   Z14, Z15, Z6
	VSUBPS        Z3, Z6, Z6
	VMULPS        (R10)(AX*4), Z6, Z6
	VCVTPS2PD     Y6, Z5
	VEXTRACTF64X4 $1, Z6, Y4
	VCVTPS2PD     Y4, Z4
	VADDPD        Z5, Z10, Z10
	VADDPD        Z4, Z11, Z11
	VMOVUPS       Z6, (DI)(AX*4)
	ADDQ          $16, AX
	CMPQ          AX, CX
	JLT           lc512loop

	VADDPD        Z9, Z8, Z8
	VEXTRACTF64X4 $1, Z8, Y9
	VADDPD        Y9, Y8, Y8
	HSUMPD(Y8, X8, X9)
	VMOVSD        X8, sl+48(FP)
	VADDPD        Z11, Z10, Z10
	VEXTRACTF64X4 $1, Z10, Y11
	VADDPD        Y11, Y10, Y10
	HSUMPD(Y10, X10, X11)
	VMOVSD        X10, ds+56(FP)
	VZEROUPPER
	RET

// MULDIFF8 is one block of 8 lanes of MulDiff at byte offset off (off2 =
// off+16): r = (a*y - b) - (c*x - d) + s in float64 (y at DI, x at R9; a
// Y10, b Y11, c Y12, d Y13, s Y14 as float64), then y = alpha*e*r in float32
// (e at SI, alpha in Y15).
#define MULDIFF8(off, off2) \
	VCVTPS2PD   off(DI)(AX*4), Y0;      \
	VCVTPS2PD   off2(DI)(AX*4), Y1;     \
	VFMSUB213PD Y11, Y10, Y0;           \
	VFMSUB213PD Y11, Y10, Y1;           \
	VCVTPS2PD   off(R9)(AX*4), Y2;      \
	VCVTPS2PD   off2(R9)(AX*4), Y3;     \
	VFMSUB213PD Y13, Y12, Y2;           \
	VFMSUB213PD Y13, Y12, Y3;           \
	VSUBPD      Y2, Y0, Y0;             \
	VSUBPD      Y3, Y1, Y1;             \
	VADDPD      Y14, Y0, Y0;            \
	VADDPD      Y14, Y1, Y1;            \
	VCVTPD2PSY  Y0, X0;                 \
	VCVTPD2PSY  Y1, X1;                 \
	VINSERTF128 $1, X1, Y0, Y0;         \
	VMULPS      off(SI)(AX*4), Y15, Y1; \
	VMULPS      Y1, Y0, Y0;             \
	VMOVUPS     Y0, off(DI)(AX*4)

// func mulDiffAVX2(y, e, x *float32, n int, alpha, a, b, c, d float32, s float64)
// n > 0 a multiple of 16.
TEXT ·mulDiffAVX2(SB), NOSPLIT, $0-64
	MOVQ         y+0(FP), DI
	MOVQ         e+8(FP), SI
	MOVQ         x+16(FP), R9
	MOVQ         n+24(FP), CX
	VBROADCASTSS alpha+32(FP), Y15
	VBROADCASTSS a+36(FP), X10
	VCVTPS2PD    X10, Y10
	VBROADCASTSS b+40(FP), X11
	VCVTPS2PD    X11, Y11
	VBROADCASTSS c+44(FP), X12
	VCVTPS2PD    X12, Y12
	VBROADCASTSS d+48(FP), X13
	VCVTPS2PD    X13, Y13
	VBROADCASTSD s+56(FP), Y14
	XORQ         AX, AX

mdloop:
	MULDIFF8(0, 16)
	MULDIFF8(32, 48)
	ADDQ $16, AX
	CMPQ AX, CX
	JLT  mdloop
	VZEROUPPER
	RET

// func groupMaxMinAVX2(gmax, x *float32, grp, nstr int) (mx, mn float32)
// gmax[c] = max over s < nstr of x[s*grp+c], c < grp; grp > 0 a multiple of 32,
// nstr > 0. Returns the max and min of those x. Columns go 32 at a time
// (Y0..Y3), down the nstr rows; the min gathers in Y4..Y7 throughout, the
// max of the columns' maxima in Y12.
TEXT ·groupMaxMinAVX2(SB), NOSPLIT, $0-40
	MOVQ    gmax+0(FP), DI
	MOVQ    x+8(FP), SI
	MOVQ    grp+16(FP), CX
	MOVQ    nstr+24(FP), DX
	MOVQ    CX, R8
	SHLQ    $2, R8
	VMOVUPS (SI), Y4
	VMOVUPS Y4, Y5
	VMOVUPS Y4, Y6
	VMOVUPS Y4, Y7
	VMOVUPS Y4, Y12
	XORQ    AX, AX

gmcol:
	LEAQ    (SI)(AX*4), R9
	VMOVUPS (R9), Y0
	VMOVUPS 32(R9), Y1
	VMOVUPS 64(R9), Y2
	VMOVUPS 96(R9), Y3
	VMINPS  Y0, Y4, Y4
	VMINPS  Y1, Y5, Y5
	VMINPS  Y2, Y6, Y6
	VMINPS  Y3, Y7, Y7
	MOVQ    DX, BX
	DECQ    BX
	JZ      gmstore

gmrow:
	ADDQ    R8, R9
	VMOVUPS (R9), Y8
	VMOVUPS 32(R9), Y9
	VMOVUPS 64(R9), Y10
	VMOVUPS 96(R9), Y11
	VMAXPS  Y8, Y0, Y0
	VMAXPS  Y9, Y1, Y1
	VMAXPS  Y10, Y2, Y2
	VMAXPS  Y11, Y3, Y3
	VMINPS  Y8, Y4, Y4
	VMINPS  Y9, Y5, Y5
	VMINPS  Y10, Y6, Y6
	VMINPS  Y11, Y7, Y7
	DECQ    BX
	JNZ     gmrow

gmstore:
	VMOVUPS Y0, (DI)(AX*4)
	VMOVUPS Y1, 32(DI)(AX*4)
	VMOVUPS Y2, 64(DI)(AX*4)
	VMOVUPS Y3, 96(DI)(AX*4)
	VMAXPS  Y1, Y0, Y0
	VMAXPS  Y3, Y2, Y2
	VMAXPS  Y2, Y0, Y0
	VMAXPS  Y0, Y12, Y12
	ADDQ    $32, AX
	CMPQ    AX, CX
	JLT     gmcol

	HREDPS(VMAXPS, Y12, X12, X13)
	VMOVSS X12, mx+32(FP)
	VMINPS Y5, Y4, Y4
	VMINPS Y7, Y6, Y6
	VMINPS Y6, Y4, Y4
	HREDPS(VMINPS, Y4, X4, X5)
	VMOVSS X4, mn+36(FP)
	VZEROUPPER
	RET

// func indicesAboveAVX2(dst *int32, x *float32, n int, thr float32, lut *[256][8]int32) int
// Writes the i < n with x[i] > thr (ordered: NaN never is) into dst; n > 0
// a multiple of 16. Branch free: for each 8 lanes the compare mask m picks
// lut[m], the lanes above thr packed to the front, which plus the lanes'
// base index is stored at the count so far; the count grows by popcount(m).
TEXT ·indicesAboveAVX2(SB), NOSPLIT, $0-48
	MOVQ         dst+0(FP), DI
	MOVQ         x+8(FP), SI
	MOVQ         n+16(FP), CX
	VBROADCASTSS thr+24(FP), Y15
	MOVQ         lut+32(FP), R10
	MOVL         $8, BX
	VMOVD        BX, X13
	VPBROADCASTD X13, Y13
	VPXOR        Y14, Y14, Y14
	XORQ         AX, AX
	XORQ         R9, R9

ixloop:
	VCMPPS    $1, (SI)(AX*4), Y15, Y0
	VCMPPS    $1, 32(SI)(AX*4), Y15, Y1
	VMOVMSKPS Y0, BX
	VMOVMSKPS Y1, DX
	POPCNTL   BX, R11
	POPCNTL   DX, R12
	SHLQ      $5, BX
	SHLQ      $5, DX
	VPADDD    (R10)(BX*1), Y14, Y2
	VPADDD    Y13, Y14, Y14
	VPADDD    (R10)(DX*1), Y14, Y3
	VPADDD    Y13, Y14, Y14
	VMOVDQU   Y2, (DI)(R9*4)
	ADDQ      R11, R9
	VMOVDQU   Y3, (DI)(R9*4)
	ADDQ      R12, R9
	ADDQ      $16, AX
	CMPQ      AX, CX
	JLT       ixloop
	MOVQ      R9, ret+40(FP)
	VZEROUPPER
	RET

// func indicesAboveAVX512(dst *int32, x *float32, n int, thr float32) int
// indicesAboveAVX2 with VPCOMPRESSD: 16 lanes' indices (Z14) compressed by
// the compare mask and stored at the count so far.
TEXT ·indicesAboveAVX512(SB), NOSPLIT, $0-40
	MOVQ         dst+0(FP), DI
	MOVQ         x+8(FP), SI
	MOVQ         n+16(FP), CX
	VBROADCASTSS thr+24(FP), Z15
	MOVL         $16, BX
	VPBROADCASTD BX, Z13
	VMOVDQU32    iota16<>(SB), Z14
	XORQ         AX, AX
	XORQ         R9, R9

ix16loop:
	VCMPPS      $1, (SI)(AX*4), Z15, K1
	VPCOMPRESSD Z14, K1, Z0
	KMOVW       K1, BX
	POPCNTL     BX, BX
	VMOVDQU32   Z0, (DI)(R9*4)
	ADDQ        BX, R9
	VPADDD      Z13, Z14, Z14
	ADDQ        $16, AX
	CMPQ        AX, CX
	JLT         ix16loop
	MOVQ        R9, ret+32(FP)
	VZEROUPPER
	RET

DATA iota16<>+0(SB)/4, $0
DATA iota16<>+4(SB)/4, $1
DATA iota16<>+8(SB)/4, $2
DATA iota16<>+12(SB)/4, $3
DATA iota16<>+16(SB)/4, $4
DATA iota16<>+20(SB)/4, $5
DATA iota16<>+24(SB)/4, $6
DATA iota16<>+28(SB)/4, $7
DATA iota16<>+32(SB)/4, $8
DATA iota16<>+36(SB)/4, $9
DATA iota16<>+40(SB)/4, $10
DATA iota16<>+44(SB)/4, $11
DATA iota16<>+48(SB)/4, $12
DATA iota16<>+52(SB)/4, $13
DATA iota16<>+56(SB)/4, $14
DATA iota16<>+60(SB)/4, $15
GLOBL iota16<>(SB), RODATA|NOPTR, $64

// func topBoundAVX2(keys *int32, n int, tails *[32]int32, cnt, k int) (t int32, c int)
// topBoundGo over the n keys at keys (n >= 0 a multiple of 16) and the
// cnt - n in tails[0:16], which is padded with MinInt32 (no candidate
// reaches it) and repeated in tails[16:32] padded with MaxInt32 (for the
// min). res (offset binary) starts at the common prefix of the smallest and
// largest key and gains each lower bit, highest first, when at least k keys
// reach it, until exactly k do. A key reaches c unless c > key (VPCMPGTD);
// Y0..Y3 count those, negated.
TEXT ·topBoundAVX2(SB), NOSPLIT, $0-56
	MOVQ keys+0(FP), SI
	MOVQ n+8(FP), CX
	MOVQ tails+16(FP), DI
	MOVQ cnt+24(FP), R9
	MOVQ k+32(FP), R10
	LEAQ 16(CX), R11

	// The smallest (Y2) and largest (Y3) key.
	VMOVDQU 64(DI), Y2
	VPMINSD 96(DI), Y2, Y2
	VMOVDQU (DI), Y3
	VPMAXSD 32(DI), Y3, Y3
	XORQ    AX, AX
	CMPQ    AX, CX
	JGE     tbreduce

tbmm:
	VPMINSD (SI)(AX*4), Y2, Y2
	VPMINSD 32(SI)(AX*4), Y2, Y2
	VPMAXSD (SI)(AX*4), Y3, Y3
	VPMAXSD 32(SI)(AX*4), Y3, Y3
	ADDQ    $16, AX
	CMPQ    AX, CX
	JLT     tbmm

tbreduce:
	HREDPS(VPMINSD, Y2, X2, X4)
	HREDPS(VPMAXSD, Y3, X3, X4)
	VMOVD X2, R8
	VMOVD X3, DX
	XORL  $0x80000000, R8
	XORL  $0x80000000, DX
	XORL  R8, DX
	JZ    tbdone
	BSRL  DX, CX
	MOVL  $1, R12
	SHLL  CX, R12
	MOVL  R12, BX
	ADDL  BX, BX
	NEGL  BX
	ANDL  BX, R8
	MOVQ  n+8(FP), CX
	CMPQ  R9, R10
	JEQ   tbdone

	// The search runs in vector registers, every lane alike, so that
	// one bit's chain is compare, add, reduce, compare, or: res Y15, bit
	// Y14, the count at res Y10, the sign bit Y13, 16+n Y12, k-1 Y11.
	VMOVD        R8, X15
	VPBROADCASTD X15, Y15
	VMOVD        R12, X14
	VPBROADCASTD X14, Y14
	VMOVD        R9, X10
	VPBROADCASTD X10, Y10
	MOVL         $0x80000000, BX
	VMOVD        BX, X13
	VPBROADCASTD X13, Y13
	VMOVD        R11, X12
	VPBROADCASTD X12, Y12
	LEAQ         -1(R10), BX
	VMOVD        BX, X11
	VPBROADCASTD X11, Y11
	MOVQ         CX, DX
	ANDQ         $-32, DX

tbbit:
	VPOR     Y14, Y15, Y9
	VPXOR    Y13, Y9, Y8
	VPCMPGTD (DI), Y8, Y0
	VPCMPGTD 32(DI), Y8, Y1
	VPXOR    Y2, Y2, Y2
	VPXOR    Y3, Y3, Y3
	XORQ     AX, AX
	CMPQ     AX, DX
	JGE      tbhalf

tbchunk:
	VPCMPGTD (SI)(AX*4), Y8, Y4
	VPCMPGTD 32(SI)(AX*4), Y8, Y5
	VPCMPGTD 64(SI)(AX*4), Y8, Y6
	VPCMPGTD 96(SI)(AX*4), Y8, Y7
	VPADDD   Y4, Y0, Y0
	VPADDD   Y5, Y1, Y1
	VPADDD   Y6, Y2, Y2
	VPADDD   Y7, Y3, Y3
	ADDQ     $32, AX
	CMPQ     AX, DX
	JLT      tbchunk

tbhalf:
	CMPQ     AX, CX
	JGE      tbcount
	VPCMPGTD (SI)(AX*4), Y8, Y4
	VPCMPGTD 32(SI)(AX*4), Y8, Y5
	VPADDD   Y4, Y2, Y2
	VPADDD   Y5, Y3, Y3

tbcount:
	VPADDD     Y1, Y0, Y0
	VPADDD     Y3, Y2, Y2
	VPADDD     Y2, Y0, Y0
	VPERM2I128 $1, Y0, Y0, Y1
	VPADDD     Y1, Y0, Y0
	VPSHUFD    $0x4E, Y0, Y1
	VPADDD     Y1, Y0, Y0
	VPSHUFD    $0xB1, Y0, Y1
	VPADDD     Y1, Y0, Y0
	VPADDD     Y12, Y0, Y0
	VPCMPGTD   Y11, Y0, Y1
	VPAND      Y1, Y14, Y2
	VPOR       Y2, Y15, Y15
	VPBLENDVB  Y1, Y0, Y10, Y10
	VMOVD      X10, BX
	CMPQ       BX, R10
	JEQ        tbvdone
	VPSRLD     $1, Y14, Y14
	SHRL       $1, R12
	JNZ        tbbit

tbvdone:
	VMOVD X15, R8
	VMOVD X10, R9

tbdone:
	XORL $0x80000000, R8
	MOVL R8, t+40(FP)
	MOVQ R9, c+48(FP)
	VZEROUPPER
	RET

// func expSumStreamAVX512(dst, x *float32, n int, a, b float32) float64
// expSumAVX512 without prefetch, dst written with non-temporal stores (dst
// 64-byte aligned) and the sum accumulated in 32 float32 lanes, added in
// float64 at the end. n > 0 a multiple of 16.
TEXT ·expSumStreamAVX512(SB), NOSPLIT, $0-40
	MOVQ         dst+0(FP), DI
	MOVQ         x+8(FP), SI
	MOVQ         n+16(FP), CX
	VBROADCASTSS a+24(FP), Z15
	VBROADCASTSS b+28(FP), Z14
	VBROADCASTSS log2e<>(SB), Z13
	VBROADCASTSS explo512<>(SB), Z12
	VBROADCASTSS exphi<>(SB), Z11
	VBROADCASTSS expc1<>(SB), Z10
	VBROADCASTSS expc2<>(SB), Z9
	VBROADCASTSS expp0<>(SB), Z8
	VBROADCASTSS expp1<>(SB), Z7
	VBROADCASTSS expp2<>(SB), Z6
	VBROADCASTSS expp3<>(SB), Z5
	VBROADCASTSS expp4<>(SB), Z4
	VBROADCASTSS expp5<>(SB), Z3
	VBROADCASTSS one<>(SB), Z2
	VXORPS       Z0, Z0, Z0
	VXORPS       Z1, Z1, Z1
	XORQ         AX, AX
	MOVQ         CX, DX
	ANDQ         $-32, DX
	JZ           ess512tail

ess512loop:
	VMOVUPS  (SI)(AX*4), Z16
	VMOVUPS  64(SI)(AX*4), Z20
	EXP16(Z16, Z17, Z18, Z19)
	EXP16(Z20, Z21, Z22, Z23)
	VMOVNTPS Z16, (DI)(AX*4)
	VMOVNTPS Z20, 64(DI)(AX*4)
	VADDPS   Z16, Z0, Z0
	VADDPS   Z20, Z1, Z1
	ADDQ     $32, AX
	CMPQ     AX, DX
	JLT      ess512loop

ess512tail:
	CMPQ     AX, CX
	JGE      ess512done
	VMOVUPS  (SI)(AX*4), Z16
	EXP16(Z16, Z17, Z18, Z19)
	VMOVNTPS Z16, (DI)(AX*4)
	VADDPS   Z16, Z0, Z0

ess512done:
	VADDPS        Z1, Z0, Z0
	VEXTRACTF32X8 $1, Z0, Y1
	VCVTPS2PD     Y0, Z0
	VCVTPS2PD     Y1, Z1
	VADDPD        Z1, Z0, Z0
	VEXTRACTF64X4 $1, Z0, Y1
	VADDPD        Y1, Y0, Y0
	HSUMPD(Y0, X0, X1)
	VMOVSD        X0, ret+32(FP)
	VZEROUPPER
	RET

// func expSumStreamAVX2(dst, x *float32, n int, a, b float32) float64
// expSumAVX2 without prefetch, dst written with non-temporal stores (dst
// 32-byte aligned) and the sum accumulated in 16 float32 lanes, added in
// float64 at the end. n > 0 a multiple of 16.
TEXT ·expSumStreamAVX2(SB), NOSPLIT, $0-40
	MOVQ         dst+0(FP), DI
	MOVQ         x+8(FP), SI
	MOVQ         n+16(FP), CX
	VBROADCASTSS a+24(FP), Y15
	VBROADCASTSS b+28(FP), Y14
	VMOVUPS      explo<>(SB), Y12
	VMOVUPS      exphi<>(SB), Y11
	VXORPS       Y10, Y10, Y10
	VXORPS       Y13, Y13, Y13
	XORQ         AX, AX

essloop:
	VMOVUPS  (SI)(AX*4), Y0
	VMOVUPS  32(SI)(AX*4), Y5
	EXP8(Y0, Y1, Y2, Y3, Y4)
	EXP8(Y5, Y6, Y7, Y8, Y9)
	VMOVNTPS Y0, (DI)(AX*4)
	VMOVNTPS Y5, 32(DI)(AX*4)
	VADDPS   Y0, Y10, Y10
	VADDPS   Y5, Y13, Y13
	ADDQ     $16, AX
	CMPQ     AX, CX
	JLT      essloop

	VADDPS       Y13, Y10, Y10
	VEXTRACTF128 $1, Y10, X13
	VCVTPS2PD    X10, Y10
	VCVTPS2PD    X13, Y13
	VADDPD       Y13, Y10, Y10
	HSUMPD(Y10, X10, X13)
	VMOVSD       X10, ret+32(FP)
	VZEROUPPER
	RET

// func streamFence()
TEXT ·streamFence(SB), NOSPLIT, $0-0
	SFENCE
	RET
