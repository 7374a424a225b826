package kernels

import (
	"fmt"
	"math"
)

// Row kernels for losses against a second row of logits (a teacher's):
// ExpDot2, LogMixDot, MulDiff and NextAbove. Like the kernels of exp.go they
// run in AVX2 (and, for the exp and log heavy ExpDot2 and LogMixDot,
// AVX-512) assembly where the CPU has it, in the Go loops below elsewhere and
// for the last elements of a row, and accumulate their sums in float64.

// ExpDot2 sets dst[i] = exp(a*x[i] - b) as ExpSum does and returns, in
// float64, sum = sum dst[i], dy = sum dst[i]*y[i] and dw = sum dst[i]*w[i]
// (each product in float64). It also prefetches the first len(x) floats of
// next (may be nil) as ExpSumPrefetch. dst may be x, y or w: every element
// is read before it is written. Accuracy and range as ExpSum.
func ExpDot2(dst, x, y, w []float32, a, b float32, next []float32) (sum, dy, dw float64) {
	if len(dst) != len(x) || len(y) != len(x) || len(w) != len(x) {
		panic(fmt.Sprintf("kernels: ExpDot2 len(dst) = %d, len(x) = %d, len(y) = %d, len(w) = %d, want equal",
			len(dst), len(x), len(y), len(w)))
	}
	return expDot2(dst, x, y, w, a, b, next)
}

// LogMixDot computes, for every i, the mixture m = cp*p[i] + cq*e[i] and its
// logarithm lm = log(m) (m below the smallest normal float is raised to it,
// as Log), and returns pl = sum p[i]*lm and el = sum e[i]*lm in float64. It
// writes dst[i] = e[i] * ((a*z[i] - b) - lm), with a*z[i] - b rounded once.
// dst may be z or e. Accuracy: lm within 2 ulp of log(m) where m is a
// positive normal float.
func LogMixDot(dst, z, p, e []float32, cp, cq, a, b float32) (pl, el float64) {
	if len(dst) != len(z) || len(p) != len(z) || len(e) != len(z) {
		panic(fmt.Sprintf("kernels: LogMixDot len(dst) = %d, len(z) = %d, len(p) = %d, len(e) = %d, want equal",
			len(dst), len(z), len(p), len(e)))
	}
	return logMixDot(dst, z, p, e, cp, cq, a, b)
}

// MulDiff sets y[i] = alpha * e[i] * (((a*y[i] - b) - (c*x[i] - d)) + s),
// with a*y[i] - b and c*x[i] - d each rounded once. x may be y.
func MulDiff(y, e, x []float32, alpha, a, b, c, d, s float32) {
	if len(e) != len(y) || len(x) != len(y) {
		panic(fmt.Sprintf("kernels: MulDiff len(y) = %d, len(e) = %d, len(x) = %d, want equal", len(y), len(e), len(x)))
	}
	mulDiff(y, e, x, alpha, a, b, c, d, s)
}

// NextAbove returns the smallest i >= from with x[i] > thr, or len(x) when
// there is none. NaN is never above. It is the scan of a top-k selection:
// most elements of a row fall below the running threshold and are passed
// over 16 at a time.
func NextAbove(x []float32, from int, thr float32) int {
	if from < 0 || from > len(x) {
		panic(fmt.Sprintf("kernels: NextAbove from %d, len(x) = %d", from, len(x)))
	}
	return nextAbove(x, from, thr)
}

func expDot2Go(dst, x, y, w []float32, a, b float32) (sum, dy, dw float64) {
	x, y, w = x[:len(dst)], y[:len(dst)], w[:len(dst)]
	for i := range dst {
		yv, wv := float64(y[i]), float64(w[i])
		e := expGo(float32(math.FMA(float64(a), float64(x[i]), -float64(b))))
		f := float64(e)
		sum += f
		dy += f * yv
		dw += f * wv
		dst[i] = e
	}
	return sum, dy, dw
}

func logMixDotGo(dst, z, p, e []float32, cp, cq, a, b float32) (pl, el float64) {
	z, p, e = z[:len(dst)], p[:len(dst)], e[:len(dst)]
	for i := range dst {
		pv, ev := p[i], e[i]
		m := float32(math.FMA(float64(cq), float64(ev), float64(cp*pv)))
		lm := logGo(m)
		pl += float64(pv) * float64(lm)
		el += float64(ev) * float64(lm)
		arg := float32(math.FMA(float64(a), float64(z[i]), -float64(b)))
		dst[i] = ev * (arg - lm)
	}
	return pl, el
}

func mulDiffGo(y, e, x []float32, alpha, a, b, c, d, s float32) {
	e, x = e[:len(y)], x[:len(y)]
	for i, v := range y {
		u := float32(math.FMA(float64(a), float64(v), -float64(b)))
		w := float32(math.FMA(float64(c), float64(x[i]), -float64(d)))
		y[i] = (alpha * e[i]) * ((u - w) + s)
	}
}

func nextAboveGo(x []float32, from int, thr float32) int {
	for i := from; i < len(x); i++ {
		if x[i] > thr {
			return i
		}
	}
	return len(x)
}
