//go:build amd64 && !purego

#include "textflag.h"

// AVX2+FMA versions of the element-wise kernels of fastmath.go, 8 floats at
// a time; n is a multiple of 8 (the Go wrappers do the tail).

DATA fmc<>+0(SB)/4, $0x3f000000 // half
DATA fmc<>+4(SB)/4, $0x3f800000 // one
DATA fmc<>+8(SB)/4, $0x3f4c422a // s
DATA fmc<>+12(SB)/4, $0x3d372713 // c
DATA fmc<>+16(SB)/4, $0x3e095d4f // c3
DATA fmc<>+20(SB)/4, $0xc0000000 // neg2
DATA fmc<>+24(SB)/4, $0x40800000 // four
DATA fmc<>+28(SB)/4, $0x7fffffff // absmask
DATA fmc<>+32(SB)/4, $0x80000000 // signmask
DATA fmc<>+36(SB)/4, $0xff800000 // -Inf
DATA fmc<>+40(SB)/4, $0x00000008 // 8 (int)
GLOBL fmc<>(SB), RODATA|NOPTR, $44

DATA iota8<>+0(SB)/4, $0
DATA iota8<>+4(SB)/4, $1
DATA iota8<>+8(SB)/4, $2
DATA iota8<>+12(SB)/4, $3
DATA iota8<>+16(SB)/4, $4
DATA iota8<>+20(SB)/4, $5
DATA iota8<>+24(SB)/4, $6
DATA iota8<>+28(SB)/4, $7
GLOBL iota8<>(SB), RODATA|NOPTR, $32

// EXP's constants, then GELU's (their values also in fmc), as whole
// vectors, each 8 times: used as memory operands, they cost no broadcast
// instruction and no register, so more of the next elements' work fits in
// the out-of-order window (on Zen 2 the exp-bound loops are limited by it).
DATA fmv<>+0(SB)/4, $0xc2aea8f6 // lo
DATA fmv<>+4(SB)/4, $0xc2aea8f6
DATA fmv<>+8(SB)/4, $0xc2aea8f6
DATA fmv<>+12(SB)/4, $0xc2aea8f6
DATA fmv<>+16(SB)/4, $0xc2aea8f6
DATA fmv<>+20(SB)/4, $0xc2aea8f6
DATA fmv<>+24(SB)/4, $0xc2aea8f6
DATA fmv<>+28(SB)/4, $0xc2aea8f6
DATA fmv<>+32(SB)/4, $0x42b00000 // hi
DATA fmv<>+36(SB)/4, $0x42b00000
DATA fmv<>+40(SB)/4, $0x42b00000
DATA fmv<>+44(SB)/4, $0x42b00000
DATA fmv<>+48(SB)/4, $0x42b00000
DATA fmv<>+52(SB)/4, $0x42b00000
DATA fmv<>+56(SB)/4, $0x42b00000
DATA fmv<>+60(SB)/4, $0x42b00000
DATA fmv<>+64(SB)/4, $0x4b400000 // magic
DATA fmv<>+68(SB)/4, $0x4b400000
DATA fmv<>+72(SB)/4, $0x4b400000
DATA fmv<>+76(SB)/4, $0x4b400000
DATA fmv<>+80(SB)/4, $0x4b400000
DATA fmv<>+84(SB)/4, $0x4b400000
DATA fmv<>+88(SB)/4, $0x4b400000
DATA fmv<>+92(SB)/4, $0x4b400000
DATA fmv<>+96(SB)/4, $0x3fb8aa3b // log2e
DATA fmv<>+100(SB)/4, $0x3fb8aa3b
DATA fmv<>+104(SB)/4, $0x3fb8aa3b
DATA fmv<>+108(SB)/4, $0x3fb8aa3b
DATA fmv<>+112(SB)/4, $0x3fb8aa3b
DATA fmv<>+116(SB)/4, $0x3fb8aa3b
DATA fmv<>+120(SB)/4, $0x3fb8aa3b
DATA fmv<>+124(SB)/4, $0x3fb8aa3b
DATA fmv<>+128(SB)/4, $0x3f318000 // c1
DATA fmv<>+132(SB)/4, $0x3f318000
DATA fmv<>+136(SB)/4, $0x3f318000
DATA fmv<>+140(SB)/4, $0x3f318000
DATA fmv<>+144(SB)/4, $0x3f318000
DATA fmv<>+148(SB)/4, $0x3f318000
DATA fmv<>+152(SB)/4, $0x3f318000
DATA fmv<>+156(SB)/4, $0x3f318000
DATA fmv<>+160(SB)/4, $0xb95e8083 // c2
DATA fmv<>+164(SB)/4, $0xb95e8083
DATA fmv<>+168(SB)/4, $0xb95e8083
DATA fmv<>+172(SB)/4, $0xb95e8083
DATA fmv<>+176(SB)/4, $0xb95e8083
DATA fmv<>+180(SB)/4, $0xb95e8083
DATA fmv<>+184(SB)/4, $0xb95e8083
DATA fmv<>+188(SB)/4, $0xb95e8083
DATA fmv<>+192(SB)/4, $0x39506967 // p0
DATA fmv<>+196(SB)/4, $0x39506967
DATA fmv<>+200(SB)/4, $0x39506967
DATA fmv<>+204(SB)/4, $0x39506967
DATA fmv<>+208(SB)/4, $0x39506967
DATA fmv<>+212(SB)/4, $0x39506967
DATA fmv<>+216(SB)/4, $0x39506967
DATA fmv<>+220(SB)/4, $0x39506967
DATA fmv<>+224(SB)/4, $0x3ab743ce // p1
DATA fmv<>+228(SB)/4, $0x3ab743ce
DATA fmv<>+232(SB)/4, $0x3ab743ce
DATA fmv<>+236(SB)/4, $0x3ab743ce
DATA fmv<>+240(SB)/4, $0x3ab743ce
DATA fmv<>+244(SB)/4, $0x3ab743ce
DATA fmv<>+248(SB)/4, $0x3ab743ce
DATA fmv<>+252(SB)/4, $0x3ab743ce
DATA fmv<>+256(SB)/4, $0x3c088908 // p2
DATA fmv<>+260(SB)/4, $0x3c088908
DATA fmv<>+264(SB)/4, $0x3c088908
DATA fmv<>+268(SB)/4, $0x3c088908
DATA fmv<>+272(SB)/4, $0x3c088908
DATA fmv<>+276(SB)/4, $0x3c088908
DATA fmv<>+280(SB)/4, $0x3c088908
DATA fmv<>+284(SB)/4, $0x3c088908
DATA fmv<>+288(SB)/4, $0x3d2aa9c1 // p3
DATA fmv<>+292(SB)/4, $0x3d2aa9c1
DATA fmv<>+296(SB)/4, $0x3d2aa9c1
DATA fmv<>+300(SB)/4, $0x3d2aa9c1
DATA fmv<>+304(SB)/4, $0x3d2aa9c1
DATA fmv<>+308(SB)/4, $0x3d2aa9c1
DATA fmv<>+312(SB)/4, $0x3d2aa9c1
DATA fmv<>+316(SB)/4, $0x3d2aa9c1
DATA fmv<>+320(SB)/4, $0x3e2aaaaa // p4
DATA fmv<>+324(SB)/4, $0x3e2aaaaa
DATA fmv<>+328(SB)/4, $0x3e2aaaaa
DATA fmv<>+332(SB)/4, $0x3e2aaaaa
DATA fmv<>+336(SB)/4, $0x3e2aaaaa
DATA fmv<>+340(SB)/4, $0x3e2aaaaa
DATA fmv<>+344(SB)/4, $0x3e2aaaaa
DATA fmv<>+348(SB)/4, $0x3e2aaaaa
DATA fmv<>+352(SB)/4, $0x3f000000 // p5
DATA fmv<>+356(SB)/4, $0x3f000000
DATA fmv<>+360(SB)/4, $0x3f000000
DATA fmv<>+364(SB)/4, $0x3f000000
DATA fmv<>+368(SB)/4, $0x3f000000
DATA fmv<>+372(SB)/4, $0x3f000000
DATA fmv<>+376(SB)/4, $0x3f000000
DATA fmv<>+380(SB)/4, $0x3f000000
DATA fmv<>+384(SB)/4, $0x3f800000 // one
DATA fmv<>+388(SB)/4, $0x3f800000
DATA fmv<>+392(SB)/4, $0x3f800000
DATA fmv<>+396(SB)/4, $0x3f800000
DATA fmv<>+400(SB)/4, $0x3f800000
DATA fmv<>+404(SB)/4, $0x3f800000
DATA fmv<>+408(SB)/4, $0x3f800000
DATA fmv<>+412(SB)/4, $0x3f800000
DATA fmv<>+416(SB)/4, $0x0000007f // i127
DATA fmv<>+420(SB)/4, $0x0000007f
DATA fmv<>+424(SB)/4, $0x0000007f
DATA fmv<>+428(SB)/4, $0x0000007f
DATA fmv<>+432(SB)/4, $0x0000007f
DATA fmv<>+436(SB)/4, $0x0000007f
DATA fmv<>+440(SB)/4, $0x0000007f
DATA fmv<>+444(SB)/4, $0x0000007f
DATA fmv<>+448(SB)/4, $0x3f000000 // half
DATA fmv<>+452(SB)/4, $0x3f000000
DATA fmv<>+456(SB)/4, $0x3f000000
DATA fmv<>+460(SB)/4, $0x3f000000
DATA fmv<>+464(SB)/4, $0x3f000000
DATA fmv<>+468(SB)/4, $0x3f000000
DATA fmv<>+472(SB)/4, $0x3f000000
DATA fmv<>+476(SB)/4, $0x3f000000
DATA fmv<>+480(SB)/4, $0x3f4c422a // s
DATA fmv<>+484(SB)/4, $0x3f4c422a
DATA fmv<>+488(SB)/4, $0x3f4c422a
DATA fmv<>+492(SB)/4, $0x3f4c422a
DATA fmv<>+496(SB)/4, $0x3f4c422a
DATA fmv<>+500(SB)/4, $0x3f4c422a
DATA fmv<>+504(SB)/4, $0x3f4c422a
DATA fmv<>+508(SB)/4, $0x3f4c422a
DATA fmv<>+512(SB)/4, $0x3d372713 // c
DATA fmv<>+516(SB)/4, $0x3d372713
DATA fmv<>+520(SB)/4, $0x3d372713
DATA fmv<>+524(SB)/4, $0x3d372713
DATA fmv<>+528(SB)/4, $0x3d372713
DATA fmv<>+532(SB)/4, $0x3d372713
DATA fmv<>+536(SB)/4, $0x3d372713
DATA fmv<>+540(SB)/4, $0x3d372713
DATA fmv<>+544(SB)/4, $0x3e095d4f // c3
DATA fmv<>+548(SB)/4, $0x3e095d4f
DATA fmv<>+552(SB)/4, $0x3e095d4f
DATA fmv<>+556(SB)/4, $0x3e095d4f
DATA fmv<>+560(SB)/4, $0x3e095d4f
DATA fmv<>+564(SB)/4, $0x3e095d4f
DATA fmv<>+568(SB)/4, $0x3e095d4f
DATA fmv<>+572(SB)/4, $0x3e095d4f
DATA fmv<>+576(SB)/4, $0xc0000000 // neg2
DATA fmv<>+580(SB)/4, $0xc0000000
DATA fmv<>+584(SB)/4, $0xc0000000
DATA fmv<>+588(SB)/4, $0xc0000000
DATA fmv<>+592(SB)/4, $0xc0000000
DATA fmv<>+596(SB)/4, $0xc0000000
DATA fmv<>+600(SB)/4, $0xc0000000
DATA fmv<>+604(SB)/4, $0xc0000000
DATA fmv<>+608(SB)/4, $0x40800000 // four
DATA fmv<>+612(SB)/4, $0x40800000
DATA fmv<>+616(SB)/4, $0x40800000
DATA fmv<>+620(SB)/4, $0x40800000
DATA fmv<>+624(SB)/4, $0x40800000
DATA fmv<>+628(SB)/4, $0x40800000
DATA fmv<>+632(SB)/4, $0x40800000
DATA fmv<>+636(SB)/4, $0x40800000
DATA fmv<>+640(SB)/4, $0x7fffffff // abs
DATA fmv<>+644(SB)/4, $0x7fffffff
DATA fmv<>+648(SB)/4, $0x7fffffff
DATA fmv<>+652(SB)/4, $0x7fffffff
DATA fmv<>+656(SB)/4, $0x7fffffff
DATA fmv<>+660(SB)/4, $0x7fffffff
DATA fmv<>+664(SB)/4, $0x7fffffff
DATA fmv<>+668(SB)/4, $0x7fffffff
DATA fmv<>+672(SB)/4, $0x80000000 // sign
DATA fmv<>+676(SB)/4, $0x80000000
DATA fmv<>+680(SB)/4, $0x80000000
DATA fmv<>+684(SB)/4, $0x80000000
DATA fmv<>+688(SB)/4, $0x80000000
DATA fmv<>+692(SB)/4, $0x80000000
DATA fmv<>+696(SB)/4, $0x80000000
DATA fmv<>+700(SB)/4, $0x80000000
GLOBL fmv<>(SB), RODATA|NOPTR, $704

// EXP: Y4 = exp(Y0) as exp32 (Y0 clamped to [-87.33, 88]); clobbers Y0-Y3.
// The operations and their order are exp32's; the constants are memory
// operands (fmv).
#define EXP \
	VMAXPS fmv<>+0(SB), Y0, Y0; \
	VMINPS fmv<>+32(SB), Y0, Y0; \
	VMOVUPS fmv<>+96(SB), Y1; \
	VFMADD213PS fmv<>+64(SB), Y0, Y1; \
	VPSUBD fmv<>+64(SB), Y1, Y3; \
	VSUBPS fmv<>+64(SB), Y1, Y2; \
	VFNMADD231PS fmv<>+128(SB), Y2, Y0; \
	VFNMADD231PS fmv<>+160(SB), Y2, Y0; \
	VMOVUPS fmv<>+192(SB), Y4; \
	VFMADD213PS fmv<>+224(SB), Y0, Y4; \
	VFMADD213PS fmv<>+256(SB), Y0, Y4; \
	VFMADD213PS fmv<>+288(SB), Y0, Y4; \
	VFMADD213PS fmv<>+320(SB), Y0, Y4; \
	VFMADD213PS fmv<>+352(SB), Y0, Y4; \
	VMULPS Y0, Y0, Y1; \
	VFMADD213PS Y0, Y1, Y4; \
	VADDPS fmv<>+384(SB), Y4, Y4; \
	VPADDD fmv<>+416(SB), Y3, Y3; \
	VPSLLD $23, Y3, Y3; \
	VMULPS Y3, Y4, Y4

// EXP2: EXP on two blocks at once, their instructions interleaved (the
// same operations per block): A4 = exp(A0) and B4 = exp(B0); clobbers
// A0-A3 and B0-B3. One block's chain of about 20 dependent operations
// leaves the out-of-order window waiting (Zen 2); two in step keep the
// units busy.
#define EXP2(A0, A1, A2, A3, A4, B0, B1, B2, B3, B4) \
	VMAXPS fmv<>+0(SB), A0, A0; \
	VMAXPS fmv<>+0(SB), B0, B0; \
	VMINPS fmv<>+32(SB), A0, A0; \
	VMINPS fmv<>+32(SB), B0, B0; \
	VMOVUPS fmv<>+96(SB), A1; \
	VMOVUPS fmv<>+96(SB), B1; \
	VFMADD213PS fmv<>+64(SB), A0, A1; \
	VFMADD213PS fmv<>+64(SB), B0, B1; \
	VPSUBD fmv<>+64(SB), A1, A3; \
	VPSUBD fmv<>+64(SB), B1, B3; \
	VSUBPS fmv<>+64(SB), A1, A2; \
	VSUBPS fmv<>+64(SB), B1, B2; \
	VFNMADD231PS fmv<>+128(SB), A2, A0; \
	VFNMADD231PS fmv<>+128(SB), B2, B0; \
	VFNMADD231PS fmv<>+160(SB), A2, A0; \
	VFNMADD231PS fmv<>+160(SB), B2, B0; \
	VMOVUPS fmv<>+192(SB), A4; \
	VMOVUPS fmv<>+192(SB), B4; \
	VFMADD213PS fmv<>+224(SB), A0, A4; \
	VFMADD213PS fmv<>+224(SB), B0, B4; \
	VFMADD213PS fmv<>+256(SB), A0, A4; \
	VFMADD213PS fmv<>+256(SB), B0, B4; \
	VFMADD213PS fmv<>+288(SB), A0, A4; \
	VFMADD213PS fmv<>+288(SB), B0, B4; \
	VFMADD213PS fmv<>+320(SB), A0, A4; \
	VFMADD213PS fmv<>+320(SB), B0, B4; \
	VFMADD213PS fmv<>+352(SB), A0, A4; \
	VFMADD213PS fmv<>+352(SB), B0, B4; \
	VMULPS A0, A0, A1; \
	VMULPS B0, B0, B1; \
	VFMADD213PS A0, A1, A4; \
	VFMADD213PS B0, B1, B4; \
	VADDPS fmv<>+384(SB), A4, A4; \
	VADDPS fmv<>+384(SB), B4, B4; \
	VPADDD fmv<>+416(SB), A3, A3; \
	VPADDD fmv<>+416(SB), B3, B3; \
	VPSLLD $23, A3, A3; \
	VPSLLD $23, B3, B3; \
	VMULPS A3, A4, A4; \
	VMULPS B3, B4, B4


// GELUTANH: from x in Y8: Y9 = x*x, z = sqrt(2/pi) x (1 + 0.044715 x*x),
// Y4 = e = exp(-2|z|), Y5 = 1/(1+e), Y6 = tanh(z) = sign(z) (1-e)/(1+e).
// Needs Y12 = 0.044715, Y13 = sqrt(2/pi), Y14 = 1; clobbers Y0-Y3, Y7, Y10, Y11.
#define GELUTANH \
	VMULPS Y8, Y8, Y9; \
	VMOVAPS Y14, Y10; \
	VFMADD231PS Y9, Y12, Y10; \
	VMULPS Y8, Y10, Y10; \
	VMULPS Y13, Y10, Y10; \
	VBROADCASTSS fmc<>+28(SB), Y11; \
	VANDPS Y10, Y11, Y11; \
	VBROADCASTSS fmc<>+32(SB), Y7; \
	VANDPS Y7, Y10, Y10; \
	VBROADCASTSS fmc<>+20(SB), Y0; \
	VMULPS Y11, Y0, Y0; \
	EXP; \
	VADDPS Y14, Y4, Y5; \
	VDIVPS Y5, Y14, Y5; \
	VSUBPS Y4, Y14, Y6; \
	VMULPS Y5, Y6, Y6; \
	VORPS Y10, Y6, Y6

#define GELUCONSTS \
	VBROADCASTSS fmc<>+0(SB), Y15; \
	VBROADCASTSS fmc<>+4(SB), Y14; \
	VBROADCASTSS fmc<>+8(SB), Y13; \
	VBROADCASTSS fmc<>+12(SB), Y12

// func geluFwdAVX2(out, inp *float32, n int)
TEXT ·geluFwdAVX2(SB), NOSPLIT, $0-24
	MOVQ out+0(FP), DI
	MOVQ inp+8(FP), SI
	MOVQ n+16(FP), CX
	GELUCONSTS

gfloop:
	CMPQ CX, $8
	JLT  gfdone
	VMOVUPS (SI), Y8
	GELUTANH
	// out = 0.5 x + 0.5 x tanh(z)
	VMULPS      Y15, Y8, Y7
	VFMADD213PS Y7, Y7, Y6
	VMOVUPS     Y6, (DI)
	ADDQ $32, SI
	ADDQ $32, DI
	SUBQ $8, CX
	JMP  gfloop

gfdone:
	VZEROUPPER
	RET

// func geluBwdAVX2(dinp, inp, dout *float32, n int)
TEXT ·geluBwdAVX2(SB), NOSPLIT, $0-32
	MOVQ dinp+0(FP), DI
	MOVQ inp+8(FP), SI
	MOVQ dout+16(FP), DX
	MOVQ n+24(FP), CX
	GELUCONSTS

gbloop:
	CMPQ CX, $8
	JLT  gbdone
	VMOVUPS (SI), Y8
	GELUTANH
	// sech^2(z) = 4e/(1+e)^2
	VMULPS       Y5, Y5, Y5
	VMULPS       Y4, Y5, Y5
	VBROADCASTSS fmc<>+24(SB), Y1
	VMULPS       Y1, Y5, Y5
	// g = 0.5 (1 + th) + 0.5 x sech^2 sqrt(2/pi) (1 + 3*0.044715 x^2)
	VBROADCASTSS fmc<>+16(SB), Y1
	VFMADD213PS  Y14, Y9, Y1
	VMULPS       Y13, Y1, Y1
	VMULPS       Y5, Y1, Y1
	VMULPS       Y15, Y8, Y2
	VMULPS       Y2, Y1, Y1
	VFMADD231PS  Y6, Y15, Y1
	VADDPS       Y15, Y1, Y1
	VMOVUPS      (DX), Y2
	VFMADD213PS  (DI), Y2, Y1
	VMOVUPS      Y1, (DI)
	ADDQ $32, SI
	ADDQ $32, DI
	ADDQ $32, DX
	SUBQ $8, CX
	JMP  gbloop

gbdone:
	VZEROUPPER
	RET

// func geluBwdSetAVX2(dinp, inp, dout *float32, n int)
// dinp = gelu'(inp) * dout (dinp may be dout): geluBwdAVX2 without the add.
TEXT ·geluBwdSetAVX2(SB), NOSPLIT, $0-32
	MOVQ dinp+0(FP), DI
	MOVQ inp+8(FP), SI
	MOVQ dout+16(FP), DX
	MOVQ n+24(FP), CX
	GELUCONSTS

gsloop:
	CMPQ CX, $8
	JLT  gsdone
	VMOVUPS (SI), Y8
	GELUTANH
	VMULPS       Y5, Y5, Y5
	VMULPS       Y4, Y5, Y5
	VBROADCASTSS fmc<>+24(SB), Y1
	VMULPS       Y1, Y5, Y5
	VBROADCASTSS fmc<>+16(SB), Y1
	VFMADD213PS  Y14, Y9, Y1
	VMULPS       Y13, Y1, Y1
	VMULPS       Y5, Y1, Y1
	VMULPS       Y15, Y8, Y2
	VMULPS       Y2, Y1, Y1
	VFMADD231PS  Y6, Y15, Y1
	VADDPS       Y15, Y1, Y1
	VMULPS       (DX), Y1, Y1
	VMOVUPS      Y1, (DI)
	ADDQ $32, SI
	ADDQ $32, DI
	ADDQ $32, DX
	SUBQ $8, CX
	JMP  gsloop

gsdone:
	VZEROUPPER
	RET

// func geluFwdGradAVX2(out, gp, inp, bias *float32, n int)
// With x = inp + bias: out = gelu(x) and gp = gelu'(x), both from one tanh
// (gp may be inp; out may be neither inp nor bias: it holds -2|z| and then
// the exponentials between the passes): the forward keeps the derivative
// for backward instead of the input.
TEXT ·geluFwdGradAVX2(SB), NOSPLIT, $0-40
	MOVQ out+0(FP), DI
	MOVQ gp+8(FP), DX
	MOVQ inp+16(FP), SI
	MOVQ bias+24(FP), R8
	MOVQ n+32(FP), CX

	// In blocks of at most 128 floats, three passes, each a short chain of
	// dependent operations per 8 floats, so that the out-of-order window
	// overlaps the 8-float groups (one pass of the whole chain, about 50
	// operations long, left it waiting): -2|z| into out, exp in
	// place, then tanh, gelu and gelu' (x and z computed again, the same
	// operations as the first pass). The operations are GELUTANH's and
	// the gradient's below, in the same order.
gfgblock:
	CMPQ CX, $8
	JLT  gfgdone
	MOVQ CX, BX
	CMPQ BX, $128
	JLE  gfgsized
	MOVQ $128, BX

gfgsized:
	XORQ AX, AX

gfgz:
	VMOVUPS (SI)(AX*4), Y8
	VADDPS (R8)(AX*4), Y8, Y8
	VMULPS Y8, Y8, Y9
	VMOVUPS fmv<>+384(SB), Y3
	VFMADD231PS fmv<>+512(SB), Y9, Y3
	VMULPS Y8, Y3, Y3
	VMULPS fmv<>+480(SB), Y3, Y3
	VANDPS fmv<>+640(SB), Y3, Y11
	VMULPS fmv<>+576(SB), Y11, Y0
	VMOVUPS Y0, (DI)(AX*4)
	ADDQ $8, AX
	CMPQ AX, BX
	JLT  gfgz

	XORQ AX, AX

gfgexp:
	VMOVUPS (DI)(AX*4), Y0
	EXP
	VMOVUPS Y4, (DI)(AX*4)
	ADDQ $8, AX
	CMPQ AX, BX
	JLT  gfgexp

	XORQ AX, AX

gfgout:
	VMOVUPS (SI)(AX*4), Y8
	VADDPS (R8)(AX*4), Y8, Y8
	VMULPS Y8, Y8, Y9
	VMOVUPS fmv<>+384(SB), Y10
	VFMADD231PS fmv<>+512(SB), Y9, Y10
	VMULPS Y8, Y10, Y10
	VMULPS fmv<>+480(SB), Y10, Y10
	VANDPS fmv<>+672(SB), Y10, Y10
	VMOVUPS (DI)(AX*4), Y4
	VADDPS fmv<>+384(SB), Y4, Y5
	VMOVUPS fmv<>+384(SB), Y11
	VDIVPS Y5, Y11, Y11
	VMOVUPS fmv<>+384(SB), Y3
	VSUBPS Y4, Y3, Y3
	VMULPS Y11, Y3, Y3
	VORPS Y10, Y3, Y3
	VMULPS Y11, Y11, Y11
	VMULPS Y4, Y11, Y11
	VMULPS fmv<>+608(SB), Y11, Y11
	VMOVUPS fmv<>+544(SB), Y5
	VFMADD213PS fmv<>+384(SB), Y9, Y5
	VMULPS fmv<>+480(SB), Y5, Y5
	VMULPS Y11, Y5, Y5
	VMULPS fmv<>+448(SB), Y8, Y6
	VMULPS Y6, Y5, Y5
	VFMADD231PS fmv<>+448(SB), Y3, Y5
	VADDPS fmv<>+448(SB), Y5, Y5
	VFMADD213PS Y6, Y6, Y3
	VMOVUPS Y3, (DI)(AX*4)
	VMOVUPS Y5, (DX)(AX*4)
	ADDQ $8, AX
	CMPQ AX, BX
	JLT  gfgout

	LEAQ (SI)(BX*4), SI
	LEAQ (R8)(BX*4), R8
	LEAQ (DI)(BX*4), DI
	LEAQ (DX)(BX*4), DX
	SUBQ BX, CX
	JMP  gfgblock

gfgdone:
	VZEROUPPER
	RET

// func expSubAVX2(x *float32, n int, sub float32) float32
// x[i] = exp(x[i] - sub); returns the sum of the new x[i] (8 partial sums,
// then a fixed reduction order).
TEXT ·expSubAVX2(SB), NOSPLIT, $0-28
	MOVQ         x+0(FP), SI
	MOVQ         n+8(FP), CX
	VBROADCASTSS sub+16(FP), Y15
	VXORPS       Y8, Y8, Y8

exloop2:
	// Two blocks at a time while there are; the sum in the same order.
	CMPQ CX, $16
	JLT  exloop
	VMOVUPS (SI), Y0
	VMOVUPS 32(SI), Y5
	VSUBPS  Y15, Y0, Y0
	VSUBPS  Y15, Y5, Y5
	EXP2(Y0, Y1, Y2, Y3, Y4, Y5, Y6, Y7, Y9, Y10)
	VMOVUPS Y4, (SI)
	VADDPS  Y4, Y8, Y8
	VMOVUPS Y10, 32(SI)
	VADDPS  Y10, Y8, Y8
	ADDQ $64, SI
	SUBQ $16, CX
	JMP  exloop2

exloop:
	CMPQ CX, $8
	JLT  exdone
	VMOVUPS (SI), Y0
	VSUBPS  Y15, Y0, Y0
	EXP
	VMOVUPS Y4, (SI)
	VADDPS  Y4, Y8, Y8
	ADDQ $32, SI
	SUBQ $8, CX
	JMP  exloop

exdone:
	VEXTRACTF128 $1, Y8, X0
	VADDPS       X8, X0, X0
	VHADDPS      X0, X0, X0
	VHADDPS      X0, X0, X0
	VZEROUPPER
	MOVSS        X0, ret+24(FP)
	RET

// func softmaxRowFwdAVX2(x *float32, n, end int) (mx, sum float32)
// softmaxRowFwdAVX512 on AVX2: mx = the largest of x[:n], x[i] = exp(x[i] -
// mx) for i < n and 0 for n <= i < end (end a multiple of 8, 0 < n <= end),
// sum = what expSubAVX2 returns over x[:n8], n8 = n rounded up to 8, with
// x[n:n8] set to -Inf first. Y13 holds the lane indices of the block, Y10
// n, Y6 the lanes below n.
TEXT ·softmaxRowFwdAVX2(SB), NOSPLIT, $0-32
	MOVQ         x+0(FP), SI
	MOVQ         n+8(FP), BX
	MOVQ         end+16(FP), R8
	VBROADCASTSS fmc<>+36(SB), Y7
	VPBROADCASTD fmc<>+40(SB), Y11
	VMOVQ        BX, X10
	VPBROADCASTD X10, Y10
	VMOVAPS      Y7, Y12
	MOVQ         BX, R10
	ANDQ         $-8, R10
	XORQ         AX, AX

afmax:
	// Whole blocks of 8 below n, then the last one with the lanes from
	// n on as -Inf.
	CMPQ   AX, R10
	JGE    afmaxlast
	VMAXPS (SI)(AX*4), Y12, Y12
	ADDQ   $8, AX
	JMP    afmax

afmaxlast:
	CMPQ         AX, BX
	JGE          afmaxdone
	VMOVQ        AX, X13
	VPBROADCASTD X13, Y13
	VPADDD       iota8<>(SB), Y13, Y13
	VPCMPGTD     Y13, Y10, Y6
	VBLENDVPS    Y6, (SI)(AX*4), Y7, Y0
	VMAXPS       Y0, Y12, Y12

afmaxdone:
	VEXTRACTF128 $1, Y12, X0
	VMAXPS       X0, X12, X0
	VPERMILPS    $0x4e, X0, X1
	VMAXPS       X1, X0, X0
	VPERMILPS    $0xb1, X0, X1
	VMAXPS       X1, X0, X0
	VBROADCASTSS X0, Y15
	MOVQ         BX, R9
	ADDQ         $7, R9
	ANDQ         $-8, R9
	VXORPS       Y8, Y8, Y8
	XORQ         AX, AX

	LEAQ -8(R10), R11

afexpfull2:
	// Whole blocks below n, two at a time while there are (the sum in the
	// same order), as expSubAVX2 does them.
	CMPQ    AX, R11
	JGE     afexpfull
	VMOVUPS (SI)(AX*4), Y0
	VMOVUPS 32(SI)(AX*4), Y5
	VSUBPS  Y15, Y0, Y0
	VSUBPS  Y15, Y5, Y5
	EXP2(Y0, Y1, Y2, Y3, Y4, Y5, Y6, Y9, Y12, Y14)
	VADDPS  Y4, Y8, Y8
	VMOVUPS Y4, (SI)(AX*4)
	VADDPS  Y14, Y8, Y8
	VMOVUPS Y14, 32(SI)(AX*4)
	ADDQ    $16, AX
	JMP     afexpfull2

afexpfull:
	// Whole blocks below n as expSubAVX2 does them, then the rest of the
	// row with the lanes from n on masked.
	CMPQ    AX, R10
	JGE     afexptail
	VMOVUPS (SI)(AX*4), Y0
	VSUBPS  Y15, Y0, Y0
	EXP
	VADDPS  Y4, Y8, Y8
	VMOVUPS Y4, (SI)(AX*4)
	ADDQ    $8, AX
	JMP     afexpfull

afexptail:
	VMOVQ        AX, X13
	VPBROADCASTD X13, Y13
	VPADDD       iota8<>(SB), Y13, Y13

afexp:
	CMPQ      AX, R8
	JGE       afexpdone
	VPCMPGTD  Y13, Y10, Y6
	VMOVUPS   (SI)(AX*4), Y0
	VSUBPS    Y15, Y0, Y0
	VBLENDVPS Y6, Y0, Y7, Y0
	EXP
	CMPQ      AX, R9
	JGE       afnosum
	VADDPS    Y4, Y8, Y8

afnosum:
	VANDPS  Y6, Y4, Y4
	VMOVUPS Y4, (SI)(AX*4)
	VPADDD  Y11, Y13, Y13
	ADDQ    $8, AX
	JMP     afexp

afexpdone:
	VEXTRACTF128 $1, Y8, X0
	VADDPS       X8, X0, X0
	VHADDPS      X0, X0, X0
	VHADDPS      X0, X0, X0
	VMOVSS       X15, mx+24(FP)
	VMOVSS       X0, sum+28(FP)
	VZEROUPPER
	RET

// func softmaxRowBwdAVX2(p, d *float32, n, end int, lse, scale float32)
// softmaxRowBwdAVX512 on AVX2 (end a multiple of 8): p[i] = exp(p[i] - lse)
// for i < n, dot = sum p[i]*d[i] over i < n as dotSlice gives it, d[i] =
// (d[i] - dot) * p[i] * scale, p and d 0 from n to end.
TEXT ·softmaxRowBwdAVX2(SB), NOSPLIT, $0-40
	MOVQ         p+0(FP), SI
	MOVQ         d+8(FP), DI
	MOVQ         n+16(FP), BX
	MOVQ         end+24(FP), R8
	VBROADCASTSS lse+32(FP), Y15
	VPBROADCASTD fmc<>+40(SB), Y11
	VMOVQ        BX, X10
	VPBROADCASTD X10, Y10
	VMOVDQU      iota8<>(SB), Y13
	MOVQ         BX, R9
	ANDQ         $-8, R9
	VXORPS       Y8, Y8, Y8
	XORQ         AX, AX
	LEAQ         -8(R8), R12

abexp2:
	// Two blocks at a time while there are (the dot in the same order).
	CMPQ        AX, R12
	JGE         abexp
	VMOVUPS     (SI)(AX*4), Y0
	VMOVUPS     32(SI)(AX*4), Y5
	VSUBPS      Y15, Y0, Y0
	VSUBPS      Y15, Y5, Y5
	EXP2(Y0, Y1, Y2, Y3, Y4, Y5, Y7, Y9, Y12, Y14)
	VPCMPGTD    Y13, Y10, Y6
	VANDPS      Y6, Y4, Y4
	VMOVUPS     Y4, (SI)(AX*4)
	LEAQ        8(AX), DX
	CMPQ        DX, R9
	JGT         ab2nodot1
	VFMADD231PS (DI)(AX*4), Y4, Y8

ab2nodot1:
	VPADDD      Y11, Y13, Y13
	VPCMPGTD    Y13, Y10, Y6
	VANDPS      Y6, Y14, Y14
	VMOVUPS     Y14, 32(SI)(AX*4)
	LEAQ        16(AX), DX
	CMPQ        DX, R9
	JGT         ab2nodot2
	VFMADD231PS 32(DI)(AX*4), Y14, Y8

ab2nodot2:
	VPADDD Y11, Y13, Y13
	ADDQ   $16, AX
	JMP    abexp2

abexp:
	CMPQ        AX, R8
	JGE         abexpdone
	VPCMPGTD    Y13, Y10, Y6
	VMOVUPS     (SI)(AX*4), Y0
	VSUBPS      Y15, Y0, Y0
	EXP
	VANDPS      Y6, Y4, Y4
	VMOVUPS     Y4, (SI)(AX*4)
	LEAQ        8(AX), DX
	CMPQ        DX, R9
	JGT         abnodot
	VFMADD231PS (DI)(AX*4), Y4, Y8

abnodot:
	VPADDD Y11, Y13, Y13
	ADDQ   $8, AX
	JMP    abexp

abexpdone:
	VEXTRACTF128 $1, Y8, X1
	VADDPS       X1, X8, X0
	VHADDPS      X0, X0, X0
	VHADDPS      X0, X0, X0
	MOVQ         R9, AX

abtail:
	CMPQ   AX, BX
	JGE    abtaildone
	VMOVSS (SI)(AX*4), X1
	VMULSS (DI)(AX*4), X1, X1
	VADDSS X1, X0, X0
	INCQ   AX
	JMP    abtail

abtaildone:
	VBROADCASTSS scale+36(FP), Y14
	VBROADCASTSS X0, Y12
	VMOVDQU      iota8<>(SB), Y13
	XORQ         AX, AX

abgrad:
	CMPQ     AX, R8
	JGE      abdone
	VPCMPGTD Y13, Y10, Y6
	VMOVUPS  (DI)(AX*4), Y0
	VSUBPS   Y12, Y0, Y0
	VMULPS   (SI)(AX*4), Y0, Y0
	VMULPS   Y14, Y0, Y0
	VANDPS   Y6, Y0, Y0
	VMOVUPS  Y0, (DI)(AX*4)
	VPADDD   Y11, Y13, Y13
	ADDQ     $8, AX
	JMP      abgrad

abdone:
	VZEROUPPER
	RET

// func adamwAVX2(p, grad, m, v *float32, n int, c *[10]float32)
// c = {b1, 1-b1, b2, 1-b2, c1, c2, eps, step, keep, clip}. The same operations in
// the same order as adamwSlice's Go loop, without fused multiply-adds, so
// the result is bit-identical on every CPU.
TEXT ·adamwAVX2(SB), NOSPLIT, $0-48
	MOVQ p+0(FP), DI
	MOVQ grad+8(FP), SI
	MOVQ m+16(FP), R8
	MOVQ v+24(FP), R9
	MOVQ n+32(FP), CX
	MOVQ c+40(FP), AX
	VBROADCASTSS 0(AX), Y7
	VBROADCASTSS 4(AX), Y8
	VBROADCASTSS 8(AX), Y9
	VBROADCASTSS 12(AX), Y10
	VBROADCASTSS 16(AX), Y11
	VBROADCASTSS 20(AX), Y12
	VBROADCASTSS 24(AX), Y13
	VBROADCASTSS 28(AX), Y14
	VBROADCASTSS 32(AX), Y15
	VBROADCASTSS 36(AX), Y6

adloop:
	CMPQ CX, $8
	JLT  addone
	VMOVUPS (SI), Y0
	// g = g*clip
	VMULPS  Y6, Y0, Y0
	VMOVUPS (R8), Y1
	VMOVUPS (R9), Y2
	VMOVUPS (DI), Y3
	// m = b1*m + (1-b1)*g
	VMULPS  Y7, Y1, Y4
	VMULPS  Y8, Y0, Y5
	VADDPS  Y5, Y4, Y1
	VMOVUPS Y1, (R8)
	// v = b2*v + ((1-b2)*g)*g
	VMULPS  Y9, Y2, Y4
	VMULPS  Y10, Y0, Y5
	VMULPS  Y0, Y5, Y5
	VADDPS  Y5, Y4, Y2
	VMOVUPS Y2, (R9)
	// den = sqrt(v*c2) + eps
	VMULPS  Y12, Y2, Y4
	VSQRTPS Y4, Y4
	VADDPS  Y13, Y4, Y4
	// p = p*keep - (step*(m*c1))/den
	VMULPS  Y11, Y1, Y5
	VMULPS  Y14, Y5, Y5
	VDIVPS  Y4, Y5, Y5
	VMULPS  Y15, Y3, Y3
	VSUBPS  Y5, Y3, Y3
	VMOVUPS Y3, (DI)
	ADDQ $32, SI
	ADDQ $32, DI
	ADDQ $32, R8
	ADDQ $32, R9
	SUBQ $8, CX
	JMP  adloop

addone:
	VZEROUPPER
	RET

// func maxAVX2(x *float32, n int) float32
// Four accumulators over 32 floats at a time (the max of a row is the same
// in any order), then 8 at a time.
TEXT ·maxAVX2(SB), NOSPLIT, $0-20
	MOVQ    x+0(FP), SI
	MOVQ    n+8(FP), CX
	VMOVUPS (SI), Y0
	VMOVAPS Y0, Y1
	VMOVAPS Y0, Y2
	VMOVAPS Y0, Y3

mx4loop:
	CMPQ   CX, $32
	JLT    mx4done
	VMAXPS (SI), Y0, Y0
	VMAXPS 32(SI), Y1, Y1
	VMAXPS 64(SI), Y2, Y2
	VMAXPS 96(SI), Y3, Y3
	ADDQ   $128, SI
	SUBQ   $32, CX
	JMP    mx4loop

mx4done:
	VMAXPS Y1, Y0, Y0
	VMAXPS Y3, Y2, Y2
	VMAXPS Y2, Y0, Y0

mxloop:
	CMPQ CX, $8
	JLT  mxdone
	VMAXPS (SI), Y0, Y0
	ADDQ   $32, SI
	SUBQ   $8, CX
	JMP    mxloop

mxdone:
	VEXTRACTF128 $1, Y0, X1
	VMAXPS       X1, X0, X0
	VPERMILPS    $0x4e, X0, X1
	VMAXPS       X1, X0, X0
	VPERMILPS    $0xb1, X0, X1
	VMAXPS       X1, X0, X0
	VZEROUPPER
	MOVSS        X0, ret+16(FP)
	RET

// func scaleCopyAVX2(dst, src *float32, n int, a float32)
// dst[i] = a*src[i], 32 floats at a time, then 8; src is prefetched 1 KiB
// ahead (it streams from memory).
TEXT ·scaleCopyAVX2(SB), NOSPLIT, $0-28
	MOVQ         dst+0(FP), DI
	MOVQ         src+8(FP), SI
	MOVQ         n+16(FP), CX
	VBROADCASTSS a+24(FP), Y15

sc4loop:
	CMPQ       CX, $32
	JLT        scloop
	PREFETCHT0 1024(SI)
	PREFETCHT0 1088(SI)
	VMULPS     (SI), Y15, Y0
	VMULPS     32(SI), Y15, Y1
	VMULPS     64(SI), Y15, Y2
	VMULPS     96(SI), Y15, Y3
	VMOVUPS    Y0, (DI)
	VMOVUPS    Y1, 32(DI)
	VMOVUPS    Y2, 64(DI)
	VMOVUPS    Y3, 96(DI)
	ADDQ       $128, SI
	ADDQ       $128, DI
	SUBQ       $32, CX
	JMP        sc4loop

scloop:
	CMPQ    CX, $8
	JLT     scdone
	VMULPS  (SI), Y15, Y0
	VMOVUPS Y0, (DI)
	ADDQ    $32, SI
	ADDQ    $32, DI
	SUBQ    $8, CX
	JMP     scloop

scdone:
	VZEROUPPER
	RET

// func dotAVX2(a, b *float32, n int) float32
TEXT ·dotAVX2(SB), NOSPLIT, $0-28
	MOVQ   a+0(FP), SI
	MOVQ   b+8(FP), DI
	MOVQ   n+16(FP), CX
	VXORPS Y0, Y0, Y0

dtloop:
	CMPQ CX, $8
	JLT  dtdone
	VMOVUPS     (SI), Y1
	VFMADD231PS (DI), Y1, Y0
	ADDQ $32, SI
	ADDQ $32, DI
	SUBQ $8, CX
	JMP  dtloop

dtdone:
	VEXTRACTF128 $1, Y0, X1
	VADDPS       X1, X0, X0
	VHADDPS      X0, X0, X0
	VHADDPS      X0, X0, X0
	VZEROUPPER
	MOVSS        X0, ret+24(FP)
	RET

// func softmaxGradAVX2(d, p *float32, n int, dot, scale float32)
// d[i] = p[i] * (d[i] - dot) * scale
TEXT ·softmaxGradAVX2(SB), NOSPLIT, $0-32
	MOVQ         d+0(FP), DI
	MOVQ         p+8(FP), SI
	MOVQ         n+16(FP), CX
	VBROADCASTSS dot+24(FP), Y14
	VBROADCASTSS scale+28(FP), Y15

sgloop:
	CMPQ CX, $8
	JLT  sgdone
	VMOVUPS (DI), Y0
	VSUBPS  Y14, Y0, Y0
	VMULPS  (SI), Y0, Y0
	VMULPS  Y15, Y0, Y0
	VMOVUPS Y0, (DI)
	ADDQ $32, SI
	ADDQ $32, DI
	SUBQ $8, CX
	JMP  sgloop

sgdone:
	VZEROUPPER
	RET
