package kernels

import (
	"fmt"
	"math"
)

// Row kernels for softmax-style losses: one vectorised pass over a row each.
// On amd64 with AVX2 and FMA they run in assembly (exp_amd64.s); elsewhere,
// and for the last few elements of a row, in the portable Go below, which
// uses the same polynomials. Sums are accumulated in float64 (ExpSumStream's
// in float32 lanes first).

// MaxMinSum returns the largest and smallest element of x and the float64 sum
// of its elements. A NaN element makes sum NaN (max and min are then
// unspecified). x must not be empty.
func MaxMinSum(x []float32) (mx, mn float32, sum float64) {
	if len(x) == 0 {
		panic("kernels: MaxMinSum of an empty slice")
	}
	return maxMinSum(x)
}

// ExpSum sets dst[i] = exp(a*x[i] - b), with a*x[i] - b rounded once (a fused
// multiply-add), and returns the float64 sum of dst. dst may be x. Accuracy:
// within 2 ulp of the exact exponential for arguments in [-87.3, 88];
// arguments below -87.33 (where the result would be subnormal) give 0, NaN
// gives NaN. Arguments above 88 are not supported (the result is
// unspecified but finite or +Inf).
func ExpSum(dst, x []float32, a, b float32) float64 {
	return ExpSumPrefetch(dst, x, a, b, nil)
}

// ExpSumPrefetch is ExpSum that also asks for the first len(x) floats of
// next (the row the caller reads next) to be brought into cache while it
// computes, so memory and arithmetic overlap. next may be nil or shorter
// (then nothing is prefetched).
func ExpSumPrefetch(dst, x []float32, a, b float32, next []float32) float64 {
	if len(dst) != len(x) {
		panic(fmt.Sprintf("kernels: ExpSum len(dst) = %d, len(x) = %d", len(dst), len(x)))
	}
	return expSum(dst, x, a, b, next)
}

// ExpSumStream is ExpSum for rows that are written once and read back much
// later (after megabytes of other traffic), such as a block of a softmax
// kept for the backward pass. Where dst is aligned to the vector width (64
// bytes with AVX-512, 32 with AVX2) it writes dst around the cache
// (non-temporal stores: no read of dst's lines first, no eviction of data in
// use), and it sums in float32 lanes (32 with AVX-512, 16 with AVX2) before
// adding them in float64, so it is meant for rows of up to a few thousand
// elements (the sum within about len(x)/16 float32 roundings, relative) whose
// lane sums stay within float32's range (with b the row's largest a*x[i], as
// in a softmax, every term is at most 1). The
// stores are weakly ordered: call StreamFence before other goroutines read
// dst (the goroutine that wrote it reads it as usual).
func ExpSumStream(dst, x []float32, a, b float32) float64 {
	if len(dst) != len(x) {
		panic(fmt.Sprintf("kernels: ExpSumStream len(dst) = %d, len(x) = %d", len(dst), len(x)))
	}
	return expSumStream(dst, x, a, b)
}

// StreamFence orders the stores of ExpSumStream made by this goroutine
// before its later stores (such as those that hand the data to another
// goroutine). One fence after many rows is enough; it costs a wait for the
// streamed stores to reach memory.
func StreamFence() { streamFence() }

// XLogXDot returns, in float64, xlogx = sum x[i]*log(x[i]) (with 0 log 0 =
// 0, and subnormal x[i] treated as the smallest normal float), sum = sum x[i]
// and dot = sum x[i]*y[i] (the products in float64), and the smallest x[i].
// It is meant for probabilities: for a negative x[i] xlogx is unspecified
// (min tells), a NaN makes sum NaN.
func XLogXDot(x, y []float32) (xlogx, sum, dot float64, mn float32) {
	return XLogXDotPrefetch(x, y, nil)
}

// XLogXDotPrefetch is XLogXDot that also prefetches the first len(x) floats
// of next, as ExpSumPrefetch.
func XLogXDotPrefetch(x, y, next []float32) (xlogx, sum, dot float64, mn float32) {
	if len(x) != len(y) || len(x) == 0 {
		panic(fmt.Sprintf("kernels: XLogXDot len(x) = %d, len(y) = %d, want equal and > 0", len(x), len(y)))
	}
	return xLogXDot(x, y, next)
}

// ScaleShift sets x[i] = alpha*x[i] + beta (one rounding).
func ScaleShift(x []float32, alpha, beta float32) {
	scaleShift(x, alpha, beta)
}

// Axpby sets y[i] = alpha*x[i] + beta*y[i].
func Axpby(alpha float32, x []float32, beta float32, y []float32) {
	if len(x) != len(y) {
		panic(fmt.Sprintf("kernels: Axpby len(x) = %d, len(y) = %d", len(x), len(y)))
	}
	axpby(alpha, x, beta, y)
}

// Log sets dst[i] = log(x[i]) for positive normal x[i] (within 2 ulp); zero
// and subnormal x[i] are raised to the smallest normal float (log =
// -87.34), negative x[i] and NaN give unspecified values. dst may be x.
func Log(dst, x []float32) {
	if len(dst) != len(x) {
		panic(fmt.Sprintf("kernels: Log len(dst) = %d, len(x) = %d", len(dst), len(x)))
	}
	logRow(dst, x)
}

// Dot returns sum x[i]*y[i] with the products and the sum in float64.
func Dot(x, y []float32) float64 {
	if len(x) != len(y) {
		panic(fmt.Sprintf("kernels: Dot len(x) = %d, len(y) = %d", len(x), len(y)))
	}
	return dot(x, y)
}

// MulShift sets y[i] = alpha * y[i] * (x[i] + beta).
func MulShift(y, x []float32, alpha, beta float32) {
	if len(x) != len(y) {
		panic(fmt.Sprintf("kernels: MulShift len(x) = %d, len(y) = %d", len(x), len(y)))
	}
	mulShift(y, x, alpha, beta)
}

// Constants of the exponential (Cephes expf): exp(x) = 2^n * exp(r) with
// n = round(x*log2(e)) and r = x - n*ln2 in [-ln2/2, ln2/2], ln2 split in
// two parts so r is exact, and exp(r) a degree 5 polynomial.
const (
	expLo  = -87.33654 // below: the result would be subnormal; it is 0
	expHi  = 88.0
	log2e  = 1.44269504088896341
	expC1  = 0.693359375
	expC2  = -2.12194440e-4
	expP0  = 1.9875691500e-4
	expP1  = 1.3981999507e-3
	expP2  = 8.3334519073e-3
	expP3  = 4.1665795894e-2
	expP4  = 1.6666665459e-1
	expP5  = 5.0000001201e-1
	sqrtHF = 0.707106781186547524
	logQ1  = -2.12194440e-4
	logQ2  = 0.693359375
)

// Coefficients of log(1+m) - m + m^2/2 = m^3 * P(m) for m in [sqrt(1/2)-1,
// sqrt(2)-1] (Cephes logf).
var logP = [9]float32{7.0376836292e-2, -1.1514610310e-1, 1.1676998740e-1, -1.2420140846e-1,
	1.4249322787e-1, -1.6668057665e-1, 2.0000714765e-1, -2.4999993993e-1, 3.3333331174e-1}

// expGo is the scalar exponential with the polynomial of the assembly.
func expGo(x float32) float32 {
	if x != x {
		return x
	}
	if x < expLo {
		return 0
	}
	x = min(x, expHi)
	n := float32(math.RoundToEven(float64(x * log2e)))
	r := x - n*expC1
	r -= n * expC2
	y := float32(expP0)
	y = y*r + expP1
	y = y*r + expP2
	y = y*r + expP3
	y = y*r + expP4
	y = y*r + expP5
	y = y*(r*r) + r + 1
	return y * math.Float32frombits(uint32(int32(n)+127)<<23)
}

// logGo is the scalar natural logarithm of a positive normal x with the
// polynomial of the assembly (smaller x are raised to the smallest normal).
func logGo(x float32) float32 {
	x = max(x, math.SmallestNonzeroFloat32*(1<<23)) // smallest normal
	bits := math.Float32bits(x)
	e := float32(int32(bits>>23) - 126)
	m := math.Float32frombits(bits&0x807fffff | 0x3f000000) // in [0.5, 1)
	if m < sqrtHF {
		e--
		m = m + m - 1
	} else {
		m--
	}
	z := m * m
	y := logP[0]
	for _, c := range logP[1:] {
		y = y*m + c
	}
	y = y * m * z
	y += e * logQ1
	y -= 0.5 * z
	return m + y + e*logQ2
}

func maxMinSumGo(x []float32) (mx, mn float32, sum float64) {
	mx, mn = x[0], x[0]
	for _, v := range x {
		mx = max(mx, v)
		mn = min(mn, v)
		sum += float64(v)
	}
	return mx, mn, sum
}

func expSumGo(dst, x []float32, a, b float32) float64 {
	dst = dst[:len(x)]
	s := 0.0
	for i, v := range x {
		e := expGo(float32(math.FMA(float64(a), float64(v), -float64(b))))
		dst[i] = e
		s += float64(e)
	}
	return s
}

func xLogXDotGo(x, y []float32) (xlogx, sum, dot float64, mn float32) {
	y = y[:len(x)]
	mn = x[0]
	for i, v := range x {
		mn = min(mn, v)
		sum += float64(v)
		dot += float64(v) * float64(y[i])
		xlogx += float64(v * logGo(v))
	}
	return xlogx, sum, dot, mn
}

func scaleShiftGo(x []float32, alpha, beta float32) {
	for i, v := range x {
		x[i] = float32(math.FMA(float64(alpha), float64(v), float64(beta)))
	}
}

func axpbyGo(alpha float32, x []float32, beta float32, y []float32) {
	x = x[:len(y)]
	for i, v := range y {
		y[i] = alpha*x[i] + beta*v
	}
}

func logRowGo(dst, x []float32) {
	dst = dst[:len(x)]
	for i, v := range x {
		dst[i] = logGo(v)
	}
}

func dotGo(x, y []float32) float64 {
	y = y[:len(x)]
	s := 0.0
	for i, v := range x {
		s += float64(v) * float64(y[i])
	}
	return s
}

func mulShiftGo(y, x []float32, alpha, beta float32) {
	x = x[:len(y)]
	for i, v := range y {
		y[i] = (alpha * v) * (x[i] + beta)
	}
}
