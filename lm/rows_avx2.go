//go:build amd64 && !purego

package lm

// Assembly of rows.go (rows_avx2_amd64.s); n is a multiple of 8.

//go:noescape
func addAVX2(dst, src *float32, n int)

//go:noescape
func resBiasSumAVX2(r, x, bias *float32, n int) float32

//go:noescape
func sumAVX2(x *float32, n int) float32

//go:noescape
func sqDevAVX2(x *float32, n int, mean float32) float32

//go:noescape
func lnOutAVX2(out, x, w, b *float32, n int, mean, rstd float32)

//go:noescape
func lnBwdDotsAVX2(d, x, w *float32, n int, mean, rstd float32) (a, b float32)

//go:noescape
func lnBwdOutAVX2(di, d, x, w *float32, n int, mean, rstd, a, b float32)

//go:noescape
func lnColsAVX2(dw, db, d, x *float32, n int, mean, rstd float32)

//go:noescape
func geluBwdSetAVX2(dinp, inp, dout *float32, n int)

//go:noescape
func sumSquaresAVX2(x *float32, n int, acc *[16]float64)

//go:noescape
func mulAVX2(dst, src *float32, n int)

// geluFwdGradAVX2 is geluFwdGradRow's loop over n (a multiple of 8) floats
// (fastmath_avx2_amd64.s). gp may be inp; out may be neither inp nor bias:
// it holds -2|z| and then the exponentials between the kernel's passes.
//
//go:noescape
func geluFwdGradAVX2(out, gp, inp, bias *float32, n int)
