//go:build !amd64 || purego

package lm

const haveAVX2 = false

func geluFwdAVX2(out, inp *float32, n int)                       { panic("lm: no AVX2") }
func geluBwdAVX2(dinp, inp, dout *float32, n int)                { panic("lm: no AVX2") }
func expSubAVX2(x *float32, n int, sub float32) float32          { panic("lm: no AVX2") }
func adamwAVX2(p, grad, m, v *float32, n int, c *[10]float32)    { panic("lm: no AVX2") }
func softmaxRowFwdAVX2(x *float32, n, end int) (mx, sum float32) { panic("lm: no AVX2") }
func softmaxRowBwdAVX2(p, d *float32, n, end int, lse, scale float32) {
	panic("lm: no AVX2")
}
func maxAVX2(x *float32, n int) float32                        { panic("lm: no AVX2") }
func dotAVX2(a, b *float32, n int) float32                     { panic("lm: no AVX2") }
func scaleCopyAVX2(dst, src *float32, n int, a float32)        { panic("lm: no AVX2") }
func softmaxGradAVX2(d, p *float32, n int, dot, scale float32) { panic("lm: no AVX2") }

func attnTile6x16(k int, a *float32, lda, ak int, b *float32, ldb int, c *float32, ldc int, alpha *float32, as int, beta float32) {
	panic("lm: no AVX2")
}

func attnTranspose8(dst *float32, ldd int, src *float32, lds int, n8 int) { panic("lm: no AVX2") }

const haveAVX512 = false

func geluFwdAVX512(out, inp *float32, n int)                       { panic("lm: no AVX-512") }
func geluBwdAVX512(dinp, inp, dout *float32, n int)                { panic("lm: no AVX-512") }
func geluBwdSetAVX512(dinp, inp, dout *float32, n int)             { panic("lm: no AVX-512") }
func geluFwdGradAVX512(out, gp, inp, bias *float32, n int)         { panic("lm: no AVX-512") }
func expSubAVX512(x *float32, n int, sub float32) float32          { panic("lm: no AVX-512") }
func softmaxRowFwdAVX512(x *float32, n, end int) (mx, sum float32) { panic("lm: no AVX-512") }
func softmaxRowBwdAVX512(p, d *float32, n, end int, lse, scale float32) {
	panic("lm: no AVX-512")
}

func addAVX512(dst, src *float32, n int)                           { panic("lm: no AVX-512") }
func mulAVX512(dst, src *float32, n int)                           { panic("lm: no AVX-512") }
func resBiasSumAVX512(r, x, bias *float32, n int) float32          { panic("lm: no AVX-512") }
func lnOutAVX512(out, x, w, b *float32, n int, mean, rstd float32) { panic("lm: no AVX-512") }
func lnBwdDotsAVX512(d, x, w *float32, n int, mean, rstd float32) (a, b float32) {
	panic("lm: no AVX-512")
}
func lnBwdOutAVX512(di, d, x, w *float32, n int, mean, rstd, a, b float32) { panic("lm: no AVX-512") }
func lnColsAVX512(dw, db, d, x *float32, n int, mean, rstd float32)        { panic("lm: no AVX-512") }
func adamwAVX512(p, grad, m, v *float32, n int, c *[10]float32)            { panic("lm: no AVX-512") }
func scaleCopyAVX512(dst, src *float32, n int, a float32)                  { panic("lm: no AVX-512") }
func softmaxGradAVX512(d, p *float32, n int, dot, scale float32)           { panic("lm: no AVX-512") }
