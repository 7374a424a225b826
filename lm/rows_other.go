//go:build !amd64 || purego

package lm

func addAVX2(dst, src *float32, n int)                           { panic("lm: no AVX2") }
func resBiasSumAVX2(r, x, bias *float32, n int) float32          { panic("lm: no AVX2") }
func sumAVX2(x *float32, n int) float32                          { panic("lm: no AVX2") }
func sqDevAVX2(x *float32, n int, mean float32) float32          { panic("lm: no AVX2") }
func lnOutAVX2(out, x, w, b *float32, n int, mean, rstd float32) { panic("lm: no AVX2") }
func lnBwdDotsAVX2(d, x, w *float32, n int, mean, rstd float32) (a, b float32) {
	panic("lm: no AVX2")
}
func lnBwdOutAVX2(di, d, x, w *float32, n int, mean, rstd, a, b float32) { panic("lm: no AVX2") }
func lnColsAVX2(dw, db, d, x *float32, n int, mean, rstd float32)        { panic("lm: no AVX2") }
func geluBwdSetAVX2(dinp, inp, dout *float32, n int)                     { panic("lm: no AVX2") }
func sumSquaresAVX2(x *float32, n int, acc *[16]float64)                 { panic("lm: no AVX2") }

func mulAVX2(dst, src *float32, n int)                   { panic("lm: no AVX2") }
func geluFwdGradAVX2(out, gp, inp, bias *float32, n int) { panic("lm: no AVX2") }
