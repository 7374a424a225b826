package kernels

import (
	"fmt"
	"math"
	"math/bits"
	"slices"
)

// Row kernels for losses against a second row of logits (a teacher's):
// ExpDiffDot, LogMixDot, LogMixConst, MulDiff, and for a top-k selection
// GroupMaxMin, IndicesAbove and TopBound. Like the kernels of exp.go they
// run in AVX2 (and, for the exp and log heavy ExpDiffDot, LogMixDot and
// LogMixConst, and IndicesAbove, AVX-512) assembly where the CPU has it, in
// the Go loops below elsewhere and for the last elements of a row, and
// accumulate their sums in float64.

// ExpDiffDot sets dst[i] = exp(arg) with arg = a*x[i] - b, rounded once,
// as ExpSum does, and returns in float64 sum = sum dst[i] and dot = sum
// dst[i]*d, where d = arg - (c*y[i] - f) is computed in float64 (from the
// float32 arg; c*y[i] - f is exact there), as are the products: the
// difference of two log-probabilities keeps its digits when both are large
// (with c = f = 0, d is the argument itself). It also prefetches the first
// len(x) floats of next (may be nil), as ExpSumPrefetch. dst may be x or y:
// every element is read before it is written. Accuracy and range of the
// exponential as ExpSum.
func ExpDiffDot(dst, x, y []float32, a, b, c, f float32, next []float32) (sum, dot float64) {
	if len(dst) != len(x) || len(y) != len(x) {
		panic(fmt.Sprintf("kernels: ExpDiffDot len(dst) = %d, len(x) = %d, len(y) = %d, want equal", len(dst), len(x), len(y)))
	}
	return expDiffDot(dst, x, y, a, b, c, f, next)
}

// LogMixDot computes, for every i, the mixture m = cp*p[i] + cq*e[i] and its
// logarithm lm = log(m) (m below the smallest normal float is raised to it,
// as Log), writes dst[i] = e[i] * ((a*z[i] - b) - lm), with a*z[i] - b
// rounded once, and returns in float64 pl = sum p[i]*lm (each product
// rounded to float32) and ds = sum dst[i]. dst may be z or e. Accuracy: lm
// within 2 ulp of log(m) where m is a positive normal float.
func LogMixDot(dst, z, p, e []float32, cp, cq, a, b float32) (pl, ds float64) {
	if len(dst) != len(z) || len(p) != len(z) || len(e) != len(z) {
		panic(fmt.Sprintf("kernels: LogMixDot len(dst) = %d, len(z) = %d, len(p) = %d, len(e) = %d, want equal",
			len(dst), len(z), len(p), len(e)))
	}
	return logMixDot(dst, z, p, e, cp, cq, a, b)
}

// LogMixConst is LogMixDot with every p[i] equal: m = pc + cq*e[i], lm =
// log(m), dst[i] = e[i] * ((a*z[i] - b) - lm), and it returns sl = sum lm
// and ds = sum dst[i] in float64. dst may be z or e.
func LogMixConst(dst, z, e []float32, pc, cq, a, b float32) (sl, ds float64) {
	if len(dst) != len(z) || len(e) != len(z) {
		panic(fmt.Sprintf("kernels: LogMixConst len(dst) = %d, len(z) = %d, len(e) = %d, want equal", len(dst), len(z), len(e)))
	}
	return logMixConst(dst, z, e, pc, cq, a, b)
}

// MulDiff sets y[i] = alpha * e[i] * r with r = (a*y[i] - b) - (c*x[i] - d)
// + s computed in float64 (the products of float32 values are exact there)
// and rounded to float32 once, so r keeps its digits when two large
// arguments cancel (the gradient of reverse KL against a target whose log p
// is far below the model's log q). x may be y.
func MulDiff(y, e, x []float32, alpha, a, b, c, d float32, s float64) {
	if len(e) != len(y) || len(x) != len(y) {
		panic(fmt.Sprintf("kernels: MulDiff len(y) = %d, len(e) = %d, len(x) = %d, want equal", len(y), len(e), len(x)))
	}
	mulDiff(y, e, x, alpha, a, b, c, d, s)
}

func expDiffDotGo(dst, x, y []float32, a, b, c, f float32) (sum, dot float64) {
	x, y = x[:len(dst)], y[:len(dst)]
	for i := range dst {
		arg := float32(math.FMA(float64(a), float64(x[i]), -float64(b)))
		d := float64(arg) - math.FMA(float64(c), float64(y[i]), -float64(f))
		e := expGo(arg)
		sum += float64(e)
		dot += float64(e) * d
		dst[i] = e
	}
	return sum, dot
}

func logMixDotGo(dst, z, p, e []float32, cp, cq, a, b float32) (pl, ds float64) {
	z, p, e = z[:len(dst)], p[:len(dst)], e[:len(dst)]
	for i := range dst {
		pv, ev := p[i], e[i]
		m := float32(math.FMA(float64(cq), float64(ev), float64(cp*pv)))
		lm := logGo(m)
		pl += float64(pv * lm)
		arg := float32(math.FMA(float64(a), float64(z[i]), -float64(b)))
		v := ev * (arg - lm)
		ds += float64(v)
		dst[i] = v
	}
	return pl, ds
}

func logMixConstGo(dst, z, e []float32, pc, cq, a, b float32) (sl, ds float64) {
	z, e = z[:len(dst)], e[:len(dst)]
	for i := range dst {
		ev := e[i]
		lm := logGo(float32(math.FMA(float64(cq), float64(ev), float64(pc))))
		sl += float64(lm)
		arg := float32(math.FMA(float64(a), float64(z[i]), -float64(b)))
		v := ev * (arg - lm)
		ds += float64(v)
		dst[i] = v
	}
	return sl, ds
}

func mulDiffGo(y, e, x []float32, alpha, a, b, c, d float32, s float64) {
	e, x = e[:len(y)], x[:len(y)]
	for i, v := range y {
		u := math.FMA(float64(a), float64(v), -float64(b))
		w := math.FMA(float64(c), float64(x[i]), -float64(d))
		y[i] = (alpha * e[i]) * float32(u-w+s)
	}
}

// The top-k selection kernels: GroupMaxMin gives a threshold that at least k
// elements of a row reach (the k-th largest of more than k group maxima),
// IndicesAbove lists the few elements above it in one branch-free pass, and
// TopBound finds the k largest of their OrderKeys exactly.

// GroupMaxMin sets gmax[g] to the largest of x[g], x[g+G], x[g+2G], ...
// (G = len(gmax), 1 <= G <= len(x)) and returns the largest and smallest
// element of x. A zero may come out with either sign when x holds both; with
// a NaN in x the results are unspecified.
func GroupMaxMin(gmax, x []float32) (mx, mn float32) {
	if len(gmax) < 1 || len(gmax) > len(x) {
		panic(fmt.Sprintf("kernels: GroupMaxMin len(gmax) = %d, len(x) = %d, want 1 <= len(gmax) <= len(x)", len(gmax), len(x)))
	}
	return groupMaxMin(gmax, x)
}

// IndicesAbove writes the indices i with x[i] > thr into dst, in increasing
// order, and returns how many it wrote. NaN is never above. dst must hold
// len(x) indices (the kernels store whole vectors past the last one).
func IndicesAbove(dst []int32, x []float32, thr float32) int {
	if len(dst) < len(x) {
		panic(fmt.Sprintf("kernels: IndicesAbove len(dst) = %d, want >= len(x) = %d", len(dst), len(x)))
	}
	return indicesAbove(dst, x, thr)
}

// OrderKey maps v to an int32 that orders as v does (-0 below +0, NaNs
// beyond the infinities by their bits); FromOrderKey inverts it.
func OrderKey(v float32) int32 {
	u := int32(math.Float32bits(v))
	return u ^ int32(uint32(u>>31)>>1)
}

// FromOrderKey is the float32 whose OrderKey is k.
func FromOrderKey(k int32) float32 {
	return math.Float32frombits(uint32(k ^ int32(uint32(k>>31)>>1)))
}

// TopBound returns a key t and n, the number of keys >= t, such that the
// k largest keys (1 <= k <= len(keys)) are those above t and, of those equal
// to t, as many as make k: at most k keys are above t and at least k reach
// it. t is the k-th largest key unless n = k. It searches over the bits of t,
// highest first, from the common prefix of the smallest and largest key,
// counting the keys that reach each candidate, and stops when exactly k do.
func TopBound(keys []int32, k int) (t int32, n int) {
	if k < 1 || k > len(keys) {
		panic(fmt.Sprintf("kernels: TopBound k = %d, len(keys) = %d", k, len(keys)))
	}
	return topBound(keys, k)
}

func groupMaxMinGo(gmax, x []float32) (mx, mn float32) {
	G := len(gmax)
	copy(gmax, x[:G])
	mx, mn = x[0], x[0]
	for i, v := range x {
		g := i % G
		if v > gmax[g] {
			gmax[g] = v
		}
		mx, mn = max(mx, v), min(mn, v)
	}
	return mx, mn
}

func indicesAboveGo(dst []int32, x []float32, thr float32) int {
	n := 0
	for i, v := range x {
		if v > thr {
			dst[n] = int32(i)
			n++
		}
	}
	return n
}

// topBoundGo: res, in offset binary (u = key ^ MinInt32 orders as the key
// does, unsigned), is the largest value with at least k keys at or above it
// after each bit, and the search ends early when exactly k are.
func topBoundGo(keys []int32, k int) (t int32, n int) {
	lo, hi := slices.Min(keys), slices.Max(keys)
	res, diff := uint32(lo)^1<<31, uint32(lo^hi)
	n = len(keys)
	if diff == 0 {
		return lo, n
	}
	bit := uint32(1) << (31 - bits.LeadingZeros32(diff))
	res &^= 2*bit - 1
	for ; bit != 0 && n != k; bit >>= 1 {
		c := int32((res | bit) ^ 1<<31)
		m := 0
		for _, v := range keys {
			if v >= c {
				m++
			}
		}
		if m >= k {
			res, n = res|bit, m
		}
	}
	return int32(res ^ 1<<31), n
}
