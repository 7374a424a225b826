//go:build amd64 && !purego

package lm

import "golang.org/x/sys/cpu"

// haveAVX512 selects the AVX-512 versions of the element-wise kernels
// (fastmath_avx512_amd64.s), which give the same bits as the AVX2 ones. It is
// set once from the CPU's features and never changes.
var haveAVX512 = haveAVX2 && cpu.X86.HasAVX512F && cpu.X86.HasAVX512DQ &&
	cpu.X86.HasAVX512BW && cpu.X86.HasAVX512VL

// The AVX-512 kernels take n a multiple of 8, as their AVX2 versions do.

//go:noescape
func geluFwdAVX512(out, inp *float32, n int)

//go:noescape
func geluBwdAVX512(dinp, inp, dout *float32, n int)

//go:noescape
func geluBwdSetAVX512(dinp, inp, dout *float32, n int)

//go:noescape
func geluFwdGradAVX512(out, gp, inp, bias *float32, n int)

//go:noescape
func expSubAVX512(x *float32, n int, sub float32) float32

// softmaxRowFwdAVX512 and softmaxRowBwdAVX512 are one row of attention's
// softmax, forward and backward, in one call each (softmaxRowFwd,
// softmaxRowBwd); end is a multiple of 16.
//
//go:noescape
func softmaxRowFwdAVX512(x *float32, n, end int) (mx, sum float32)

//go:noescape
func softmaxRowBwdAVX512(p, d *float32, n, end int, lse, scale float32)

// Those of rows_avx512_amd64.s: the row kernels, AdamW and the small kernels.

//go:noescape
func addAVX512(dst, src *float32, n int)

//go:noescape
func mulAVX512(dst, src *float32, n int)

//go:noescape
func resBiasSumAVX512(r, x, bias *float32, n int) float32

//go:noescape
func lnOutAVX512(out, x, w, b *float32, n int, mean, rstd float32)

//go:noescape
func lnBwdDotsAVX512(d, x, w *float32, n int, mean, rstd float32) (a, b float32)

//go:noescape
func lnBwdOutAVX512(di, d, x, w *float32, n int, mean, rstd, a, b float32)

//go:noescape
func lnColsAVX512(dw, db, d, x *float32, n int, mean, rstd float32)

//go:noescape
func adamwAVX512(p, grad, m, v *float32, n int, c *[10]float32)

//go:noescape
func scaleCopyAVX512(dst, src *float32, n int, a float32)

//go:noescape
func softmaxGradAVX512(d, p *float32, n int, dot, scale float32)
