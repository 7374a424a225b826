package lm

import "math"

// exp32 is e^x in float32 to about 1 ulp (Cephes expf): x = n ln2 + r with
// |r| <= ln2/2, a degree-6 polynomial for e^r, and 2^n put in the exponent.
// It is several times faster than math.Exp on float64.
func exp32(x float32) float32 {
	if x > 88.72 {
		return float32(math.Inf(1))
	}
	if x < -87.33 {
		if x != x { // NaN
			return x
		}
		return 0
	}
	const (
		log2e = 1.44269504088896341
		c1    = 0.693359375
		c2    = -2.12194440e-4
	)
	fn := x*log2e + 0.5
	n := int32(fn)
	if fn < 0 && float32(n) != fn {
		n-- // floor
	}
	nf := float32(n)
	r := x - nf*c1 - nf*c2
	p := float32(1.9875691500e-4)
	p = p*r + 1.3981999507e-3
	p = p*r + 8.3334519073e-3
	p = p*r + 4.1665795894e-2
	p = p*r + 1.6666665459e-1
	p = p*r + 5.0000001201e-1
	p = p*r*r + r + 1
	// 2^n; n is in [-126, 128] here; build it in two steps to stay normal.
	if n > 127 {
		return p * 2 * math.Float32frombits(uint32(n-1+127)<<23)
	}
	if n < -126 {
		return p * math.Float32frombits(uint32(n+64+127)<<23) * (1.0 / (1 << 32) / (1 << 32))
	}
	return p * math.Float32frombits(uint32(n+127)<<23)
}

// tanh32 is tanh in float32 through exp32: absolute error a few 1e-8.
func tanh32(x float32) float32 {
	ax := x
	if ax < 0 {
		ax = -ax
	}
	if ax > 9 {
		if x < 0 {
			return -1
		}
		return 1
	}
	var t float32
	if ax < 0.0625 {
		// Taylor to x^7 keeps relative accuracy near 0.
		x2 := ax * ax
		t = ax * (1 + x2*(-1.0/3+x2*(2.0/15+x2*(-17.0/315))))
	} else {
		e := exp32(-2 * ax)
		t = (1 - e) / (1 + e)
	}
	if x < 0 {
		return -t
	}
	return t
}
