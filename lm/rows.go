package lm

import "math"

// Row kernels of the fused epilogues (layers.go): the residual add, the
// LayerNorm passes and the bias and parameter-gradient sums, over one row of
// C (or a range of columns) at a time, so that a row handed over by
// kernels.Pool.SgemmThen is read from L1. On amd64 with AVX2 the bulk of each
// row runs in rows_avx2_amd64.s, 8 floats at a time with 8 partial sums
// reduced in a fixed order (with AVX-512, rows_avx512_amd64.s, most of them
// 16 at a time, with the same bits); the Go loops below do the tail and
// everything under -tags purego. No kernel here is on the replicas' bit-identical path
// (AdamW and the gradient norm, optim.go); sums may differ in the last bits
// between the assembly and the Go loop.

// addRow sets dst[i] += src[i].
func addRow(dst, src []float32) {
	n := len(dst)
	src = src[:n]
	done := 0
	if haveAVX2 && n >= 8 {
		done = n &^ 7
		if haveAVX512 {
			addAVX512(&dst[0], &src[0], done)
		} else {
			addAVX2(&dst[0], &src[0], done)
		}
	}
	for i := done; i < n; i++ {
		dst[i] += src[i]
	}
}

// mulRow sets dst[i] *= src[i].
func mulRow(dst, src []float32) {
	n := len(dst)
	src = src[:n]
	done := 0
	if haveAVX2 && n >= 8 {
		done = n &^ 7
		if haveAVX512 {
			mulAVX512(&dst[0], &src[0], done)
		} else {
			mulAVX2(&dst[0], &src[0], done)
		}
	}
	for i := done; i < n; i++ {
		dst[i] *= src[i]
	}
}

// geluFwdGradRow sets out[i] = gelu(x) and gp[i] = gelu'(x), x = inp[i] +
// bias[i] (gp may be inp, out may be neither inp nor bias): the forward
// keeps gelu' for the backward instead of inp, and adds the bias in the
// same pass.
func geluFwdGradRow(out, gp, inp, bias []float32) {
	n := len(inp)
	out, gp, bias = out[:n], gp[:n], bias[:n]
	done := 0
	if haveAVX2 && n >= 8 {
		done = n &^ 7
		if haveAVX512 {
			geluFwdGradAVX512(&out[0], &gp[0], &inp[0], &bias[0], done)
		} else {
			geluFwdGradAVX2(&out[0], &gp[0], &inp[0], &bias[0], done)
		}
	}
	for i := done; i < n; i++ {
		x := inp[i] + bias[i]
		th, sech2 := tanhSech2(geluScale * x * (1 + geluCubic*x*x))
		hx := 0.5 * x
		out[i] = hx + hx*th
		gp[i] = 0.5*(1+th) + 0.5*x*sech2*geluScale*(1+3*geluCubic*x*x)
	}
}

// resBiasSumRow sets r[i] = x[i] + (r[i] + bias[i]) and returns the sum of
// the new r (x == nil: r[i] + bias[i]).
func resBiasSumRow(r, x, bias []float32) float32 {
	n := len(r)
	bias = bias[:n]
	done := 0
	var s float32
	if x == nil {
		addRow(r, bias)
		return sumRow(r)
	}
	x = x[:n]
	if haveAVX2 && n >= 8 {
		done = n &^ 7
		if haveAVX512 {
			s = resBiasSumAVX512(&r[0], &x[0], &bias[0], done)
		} else {
			s = resBiasSumAVX2(&r[0], &x[0], &bias[0], done)
		}
	}
	for i := done; i < n; i++ {
		v := x[i] + (r[i] + bias[i])
		r[i] = v
		s += v
	}
	return s
}

// sumRow returns the sum of x.
func sumRow(x []float32) float32 {
	n := len(x)
	done := 0
	var s float32
	if haveAVX2 && n >= 8 {
		done = n &^ 7
		s = sumAVX2(&x[0], done)
	}
	for _, v := range x[done:] {
		s += v
	}
	return s
}

// sqDevRow returns sum (x[i] - mean)^2.
func sqDevRow(x []float32, mean float32) float32 {
	n := len(x)
	done := 0
	var s float32
	if haveAVX2 && n >= 8 {
		done = n &^ 7
		s = sqDevAVX2(&x[0], done, mean)
	}
	for _, v := range x[done:] {
		d := v - mean
		s += d * d
	}
	return s
}

// lnRow normalises x into out: out = (x - mean) * rstd * w + b, and returns
// mean and rstd (epsilon 1e-5).
func lnRow(out, x, w, b []float32, sum float32) (mean, rstd float32) {
	n := len(x)
	out, w, b = out[:n], w[:n], b[:n]
	mean = sum / float32(n)
	v := sqDevRow(x, mean) / float32(n)
	rstd = float32(1 / math.Sqrt(float64(v)+1e-5))
	done := 0
	if haveAVX2 && n >= 8 {
		done = n &^ 7
		if haveAVX512 {
			lnOutAVX512(&out[0], &x[0], &w[0], &b[0], done, mean, rstd)
		} else {
			lnOutAVX2(&out[0], &x[0], &w[0], &b[0], done, mean, rstd)
		}
	}
	for i := done; i < n; i++ {
		out[i] = (x[i]-mean)*rstd*w[i] + b[i]
	}
	return mean, rstd
}

// lnBackwardRow adds the LayerNorm backward of one row into di:
// di += (w*d - mean(w*d) - norm*mean(w*d*norm)) * rstd, norm = (x-mean)*rstd.
func lnBackwardRow(di, d, x, w []float32, mean, rstd float32) {
	n := len(x)
	di, d, w = di[:n], d[:n], w[:n]
	done := 0
	var a, b float32
	if haveAVX2 && n >= 8 {
		done = n &^ 7
		if haveAVX512 {
			a, b = lnBwdDotsAVX512(&d[0], &x[0], &w[0], done, mean, rstd)
		} else {
			a, b = lnBwdDotsAVX2(&d[0], &x[0], &w[0], done, mean, rstd)
		}
	}
	for i := done; i < n; i++ {
		dn := w[i] * d[i]
		a += dn
		b += dn * ((x[i] - mean) * rstd)
	}
	a /= float32(n)
	b /= float32(n)
	if haveAVX2 && n >= 8 {
		if haveAVX512 {
			lnBwdOutAVX512(&di[0], &d[0], &x[0], &w[0], done, mean, rstd, a, b)
		} else {
			lnBwdOutAVX2(&di[0], &d[0], &x[0], &w[0], done, mean, rstd, a, b)
		}
	}
	for i := done; i < n; i++ {
		norm := (x[i] - mean) * rstd
		di[i] += (w[i]*d[i] - a - norm*b) * rstd
	}
}

// lnParamGradRow adds one row's share of the LayerNorm parameter gradients:
// db += d, dw += (x - mean) * rstd * d.
func lnParamGradRow(dw, db, d, x []float32, mean, rstd float32) {
	n := len(x)
	dw, db, d = dw[:n], db[:n], d[:n]
	done := 0
	if haveAVX2 && n >= 8 {
		done = n &^ 7
		if haveAVX512 {
			lnColsAVX512(&dw[0], &db[0], &d[0], &x[0], done, mean, rstd)
		} else {
			lnColsAVX2(&dw[0], &db[0], &d[0], &x[0], done, mean, rstd)
		}
	}
	for i := done; i < n; i++ {
		db[i] += d[i]
		dw[i] += (x[i] - mean) * rstd * d[i]
	}
}
