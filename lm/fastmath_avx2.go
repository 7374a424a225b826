//go:build amd64 && !purego

package lm

import "golang.org/x/sys/cpu"

// haveAVX2 selects the assembly versions of the element-wise kernels. It is
// set once from the CPU's features and never changes.
var haveAVX2 = cpu.X86.HasAVX2 && cpu.X86.HasFMA

// geluFwdAVX2 is geluForwardGo over n (a multiple of 8) floats.
//
//go:noescape
func geluFwdAVX2(out, inp *float32, n int)

// geluBwdAVX2 is geluBackwardGo over n (a multiple of 8) floats.
//
//go:noescape
func geluBwdAVX2(dinp, inp, dout *float32, n int)

// expSubAVX2 is expSubGo over n (a multiple of 8) floats.
//
//go:noescape
func expSubAVX2(x *float32, n int, sub float32) float32

// softmaxRowFwdAVX2 and softmaxRowBwdAVX2 are softmaxRowFwdAVX512 and
// softmaxRowBwdAVX512 on AVX2 (end a multiple of 8), with their bits.
//
//go:noescape
func softmaxRowFwdAVX2(x *float32, n, end int) (mx, sum float32)

//go:noescape
func softmaxRowBwdAVX2(p, d *float32, n, end int, lse, scale float32)

// adamwAVX2 is adamwGo over n (a multiple of 8) parameters.
//
//go:noescape
func adamwAVX2(p, grad, m, v *float32, n int, c *[10]float32)

// maxAVX2 is the largest of x[:n], n a positive multiple of 8.
//
//go:noescape
func maxAVX2(x *float32, n int) float32

// scaleCopyAVX2 sets dst[i] = a*src[i] for n (a multiple of 8) floats.
//
//go:noescape
func scaleCopyAVX2(dst, src *float32, n int, a float32)

// dotAVX2 is the dot product of a[:n] and b[:n], n a multiple of 8.
//
//go:noescape
func dotAVX2(a, b *float32, n int) float32

// softmaxGradAVX2 is softmaxGradGo over n (a multiple of 8) floats.
//
//go:noescape
func softmaxGradAVX2(d, p *float32, n int, dot, scale float32)

// attnTile6x16 is one 6x16 tile of c = alpha*a@b + beta*c, a read in place
// (6 rows lda apart, k steps ak apart: ak = 1 for a row-major a; lda = 1 and
// ak its leading dimension for a transposed one), b k steps of 16 values ldb
// apart (attn_avx2_amd64.s). Row i of the product is scaled by alpha[i*as]
// (as = 0: one alpha for all six).
//
//go:noescape
func attnTile6x16(k int, a *float32, lda, ak int, b *float32, ldb int, c *float32, ldc int, alpha *float32, as int, beta float32)

// attnTranspose8 transposes 8 rows of src (lds apart) and 8*n8 columns into
// dst: dst[p*ldd+i] = src[i*lds+p] (attn_avx2_amd64.s).
//
//go:noescape
func attnTranspose8(dst *float32, ldd int, src *float32, lds int, n8 int)
