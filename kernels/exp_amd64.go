package kernels

import (
	"math"
	"unsafe"

	"golang.org/x/sys/cpu"
)

// useAVX2Row reports whether the row kernels may run the AVX2+FMA assembly.
func useAVX2Row() bool { return cpu.X86.HasAVX2 && cpu.X86.HasFMA }

// useAVX512Row reports whether ExpSum and XLogXDot may run their AVX-512
// assembly (AVX-512 F and DQ).
func useAVX512Row() bool { return cpu.X86.HasAVX512F && cpu.X86.HasAVX512DQ }

// The assembly kernels (exp_amd64.s) take n > 0, a multiple of 16.

//go:noescape
func maxMinSumAVX2(x *float32, n int) (mx, mn float32, sum float64)

//go:noescape
func expSumAVX2(dst, x, pf *float32, n int, a, b float32) float64

//go:noescape
func expSumStreamAVX512(dst, x *float32, n int, a, b float32) float64

//go:noescape
func expSumStreamAVX2(dst, x *float32, n int, a, b float32) float64

func streamFence()

//go:noescape
func expSumAVX512(dst, x, pf *float32, n int, a, b float32) float64

//go:noescape
func xLogXDotAVX2(x, y, pf *float32, n int) (xlogx, sum, dot float64, mn float32)

//go:noescape
func xLogXDotAVX512(x, y, pf *float32, n int) (xlogx, sum, dot float64, mn float32)

//go:noescape
func logAVX512(dst, x *float32, n int)

//go:noescape
func logAVX2(dst, x *float32, n int)

//go:noescape
func dotAVX2(x, y *float32, n int) float64

//go:noescape
func mulShiftAVX2(y, x *float32, n int, alpha, beta float32)

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

// prefetchPtr returns where an assembly kernel over n floats may prefetch:
// next when it holds n floats, else x itself (already cached: a no-op).
func prefetchPtr(x, next []float32, n int) *float32 {
	if len(next) >= n {
		return &next[0]
	}
	return &x[0]
}

func expSum(dst, x []float32, a, b float32, next []float32) float64 {
	n := len(x) &^ 15
	if n == 0 || !useAVX2Row() {
		return expSumGo(dst, x, a, b)
	}
	pf := prefetchPtr(x, next, n)
	var s float64
	if useAVX512Row() {
		s = expSumAVX512(&dst[0], &x[0], pf, n, a, b)
	} else {
		s = expSumAVX2(&dst[0], &x[0], pf, n, a, b)
	}
	if n < len(x) {
		s += expSumGo(dst[n:], x[n:], a, b)
	}
	return s
}

func expSumStream(dst, x []float32, a, b float32) float64 {
	n := len(x) &^ 15
	if n == 0 || !useAVX2Row() {
		return expSumGo(dst, x, a, b)
	}
	align := uintptr(32)
	if useAVX512Row() {
		align = 64
	}
	if uintptr(unsafe.Pointer(&dst[0]))%align != 0 {
		return expSum(dst, x, a, b, nil)
	}
	var s float64
	if align == 64 {
		s = expSumStreamAVX512(&dst[0], &x[0], n, a, b)
	} else {
		s = expSumStreamAVX2(&dst[0], &x[0], n, a, b)
	}
	if n < len(x) {
		s += expSumGo(dst[n:], x[n:], a, b)
	}
	return s
}

func xLogXDot(x, y, next []float32) (xlogx, sum, dot float64, mn float32) {
	n := len(x) &^ 15
	if n == 0 || !useAVX2Row() {
		return xLogXDotGo(x, y)
	}
	if useAVX512Row() {
		xlogx, sum, dot, mn = xLogXDotAVX512(&x[0], &y[0], prefetchPtr(x, next, n), n)
	} else {
		xlogx, sum, dot, mn = xLogXDotAVX2(&x[0], &y[0], prefetchPtr(x, next, n), n)
	}
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

func logRow(dst, x []float32) {
	n := len(x) &^ 15
	if n == 0 || !useAVX2Row() {
		logRowGo(dst, x)
		return
	}
	if useAVX512Row() {
		logAVX512(&dst[0], &x[0], n)
	} else {
		logAVX2(&dst[0], &x[0], n)
	}
	logRowGo(dst[n:], x[n:])
}

func dot(x, y []float32) float64 {
	n := len(x) &^ 15
	if n == 0 || !useAVX2Row() {
		return dotGo(x, y)
	}
	return dotAVX2(&x[0], &y[0], n) + dotGo(x[n:], y[n:])
}

func mulShift(y, x []float32, alpha, beta float32) {
	n := len(y) &^ 15
	if n == 0 || !useAVX2Row() {
		mulShiftGo(y, x, alpha, beta)
		return
	}
	mulShiftAVX2(&y[0], &x[0], n, alpha, beta)
	mulShiftGo(y[n:], x[n:], alpha, beta)
}

//go:noescape
func expDiffDotAVX2(dst, x, y, pf *float32, n int, a, b, c, f float32) (sum, dot float64)

//go:noescape
func expArgDotAVX2(dst, x, pf *float32, n int, a, b float32) (sum, dot float64)

//go:noescape
func expDiffDotAVX512(dst, x, y, pf *float32, n int, a, b, c, f float32) (sum, dot float64)

//go:noescape
func logMixDotAVX2(dst, z, p, e *float32, n int, cp, cq, a, b float32) (pl, ds float64)

//go:noescape
func logMixDotAVX512(dst, z, p, e *float32, n int, cp, cq, a, b float32) (pl, ds float64)

//go:noescape
func logMixConstAVX2(dst, z, e *float32, n int, pc, cq, a, b float32) (sl, ds float64)

//go:noescape
func logMixConstAVX512(dst, z, e *float32, n int, pc, cq, a, b float32) (sl, ds float64)

//go:noescape
func mulDiffAVX2(y, e, x *float32, n int, alpha, a, b, c, d float32, s float64)

func expDiffDot(dst, x, y []float32, a, b, c, f float32, next []float32) (sum, dot float64) {
	n := len(x) &^ 15
	if n == 0 || !useAVX2Row() {
		return expDiffDotGo(dst, x, y, a, b, c, f)
	}
	pf := prefetchPtr(x, next, n)
	switch {
	case useAVX512Row():
		sum, dot = expDiffDotAVX512(&dst[0], &x[0], &y[0], pf, n, a, b, c, f)
	case c == 0 && f == 0:
		sum, dot = expArgDotAVX2(&dst[0], &x[0], pf, n, a, b)
	default:
		sum, dot = expDiffDotAVX2(&dst[0], &x[0], &y[0], pf, n, a, b, c, f)
	}
	if n < len(x) {
		s2, d2 := expDiffDotGo(dst[n:], x[n:], y[n:], a, b, c, f)
		sum, dot = sum+s2, dot+d2
	}
	return sum, dot
}

func logMixDot(dst, z, p, e []float32, cp, cq, a, b float32) (pl, ds float64) {
	n := len(z) &^ 15
	if n == 0 || !useAVX2Row() {
		return logMixDotGo(dst, z, p, e, cp, cq, a, b)
	}
	if useAVX512Row() {
		pl, ds = logMixDotAVX512(&dst[0], &z[0], &p[0], &e[0], n, cp, cq, a, b)
	} else {
		pl, ds = logMixDotAVX2(&dst[0], &z[0], &p[0], &e[0], n, cp, cq, a, b)
	}
	if n < len(z) {
		p2, d2 := logMixDotGo(dst[n:], z[n:], p[n:], e[n:], cp, cq, a, b)
		pl, ds = pl+p2, ds+d2
	}
	return pl, ds
}

func logMixConst(dst, z, e []float32, pc, cq, a, b float32) (sl, ds float64) {
	n := len(z) &^ 15
	if n == 0 || !useAVX2Row() {
		return logMixConstGo(dst, z, e, pc, cq, a, b)
	}
	if useAVX512Row() {
		sl, ds = logMixConstAVX512(&dst[0], &z[0], &e[0], n, pc, cq, a, b)
	} else {
		sl, ds = logMixConstAVX2(&dst[0], &z[0], &e[0], n, pc, cq, a, b)
	}
	if n < len(z) {
		s2, d2 := logMixConstGo(dst[n:], z[n:], e[n:], pc, cq, a, b)
		sl, ds = sl+s2, ds+d2
	}
	return sl, ds
}

func mulDiff(y, e, x []float32, alpha, a, b, c, d float32, s float64) {
	n := len(y) &^ 15
	if n == 0 || !useAVX2Row() {
		mulDiffGo(y, e, x, alpha, a, b, c, d, s)
		return
	}
	mulDiffAVX2(&y[0], &e[0], &x[0], n, alpha, a, b, c, d, s)
	mulDiffGo(y[n:], e[n:], x[n:], alpha, a, b, c, d, s)
}
