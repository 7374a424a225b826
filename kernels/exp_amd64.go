package kernels

import (
	"math"

	"golang.org/x/sys/cpu"
)

// useAVX2Row reports whether the row kernels may run the AVX2+FMA assembly.
func useAVX2Row() bool { return cpu.X86.HasAVX2 && cpu.X86.HasFMA }

// The assembly kernels (exp_amd64.s) take n > 0, a multiple of 16.

//go:noescape
func maxMinSumAVX2(x *float32, n int) (mx, mn float32, sum float64)

//go:noescape
func expSumAVX2(dst, x *float32, n int, a, b float32) float64

//go:noescape
func xLogXDotAVX2(x, y *float32, n int) (xlogx, sum, dot float64, mn float32)

//go:noescape
func scaleShiftAVX2(x *float32, n int, alpha, beta float32)

//go:noescape
func axpbyAVX2(x, y *float32, n int, alpha, beta float32)

func maxMinSum(x []float32) (mx, mn float32, sum float64) {
	n := len(x) &^ 15
	if n == 0 || !useAVX2Row() {
		return maxMinSumGo(x)
	}
	mx, mn, sum = maxMinSumAVX2(&x[0], n)
	if n < len(x) {
		tmx, tmn, tsum := maxMinSumGo(x[n:])
		mx, mn, sum = max(mx, tmx), min(mn, tmn), sum+tsum
	}
	if math.IsNaN(sum) {
		mx, mn = float32(math.NaN()), float32(math.NaN())
	}
	return mx, mn, sum
}

func expSum(dst, x []float32, a, b float32) float64 {
	n := len(x) &^ 15
	if n == 0 || !useAVX2Row() {
		return expSumGo(dst, x, a, b)
	}
	s := expSumAVX2(&dst[0], &x[0], n, a, b)
	if n < len(x) {
		s += expSumGo(dst[n:], x[n:], a, b)
	}
	return s
}

func xLogXDot(x, y []float32) (xlogx, sum, dot float64, mn float32) {
	n := len(x) &^ 15
	if n == 0 || !useAVX2Row() {
		return xLogXDotGo(x, y)
	}
	xlogx, sum, dot, mn = xLogXDotAVX2(&x[0], &y[0], n)
	if n < len(x) {
		a, b, c, d := xLogXDotGo(x[n:], y[n:])
		xlogx, sum, dot, mn = xlogx+a, sum+b, dot+c, min(mn, d)
	}
	return xlogx, sum, dot, mn
}

func scaleShift(x []float32, alpha, beta float32) {
	n := len(x) &^ 15
	if n == 0 || !useAVX2Row() {
		scaleShiftGo(x, alpha, beta)
		return
	}
	scaleShiftAVX2(&x[0], n, alpha, beta)
	scaleShiftGo(x[n:], alpha, beta)
}

func axpby(alpha float32, x []float32, beta float32, y []float32) {
	n := len(y) &^ 15
	if n == 0 || !useAVX2Row() {
		axpbyGo(alpha, x, beta, y)
		return
	}
	axpbyAVX2(&x[0], &y[0], n, alpha, beta)
	axpbyGo(alpha, x[n:], beta, y[n:])
}
