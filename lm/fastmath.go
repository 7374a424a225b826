package lm

import "math"

// exp32 is e^x in float32 to about 1 ulp (Cephes expf): x = n ln2 + r with
// |r| <= ln2/2, a degree-6 polynomial for e^r, and 2^n put in the exponent.
// n is rounded with the 1.5*2^23 trick, so the hot path has no branch that
// the data decides. Results below 2^-126 flush to zero.
func exp32(x float32) float32 {
	if !(x > -87.33) { // also NaN
		if x != x {
			return x
		}
		return 0
	}
	if x > 88.72 {
		return float32(math.Inf(1))
	}
	const (
		log2e = 1.44269504088896341
		c1    = 0.693359375
		c2    = -2.12194440e-4
		magic = 12582912 // 1.5 * 2^23: adding it rounds to an integer
	)
	t := x*log2e + magic
	n := int32(math.Float32bits(t)) - int32(math.Float32bits(magic))
	nf := t - magic
	r := x - nf*c1 - nf*c2
	p := float32(1.9875691500e-4)
	p = p*r + 1.3981999507e-3
	p = p*r + 8.3334519073e-3
	p = p*r + 4.1665795894e-2
	p = p*r + 1.6666665459e-1
	p = p*r + 5.0000001201e-1
	p = p*r*r + r + 1
	if n > 127 { // x in (88.38, 88.72]: 2^128 is not a float32, 2 * 2^127 is
		return p * 2 * math.Float32frombits(254<<23)
	}
	return p * math.Float32frombits(uint32(n+127)<<23)
}

// tanhSech2 returns tanh(z) and sech^2(z) = 1 - tanh^2(z) from one exp32:
// with e = exp(-2|z|), tanh = sign(z) (1-e)/(1+e) and sech^2 = 4e/(1+e)^2, both
// accurate in absolute terms (and sech^2 relatively, where it is tiny).
func tanhSech2(z float32) (th, sech2 float32) {
	a := z
	if a < 0 {
		a = -a
	}
	e := exp32(-2 * a)
	r := 1 / (1 + e)
	th = (1 - e) * r
	sech2 = 4 * e * r * r
	if z < 0 {
		th = -th
	}
	return th, sech2
}

// geluSlice writes out[i] = gelu(inp[i]) (tanh approximation) for i < len(inp).
func geluSlice(out, inp []float32) {
	n := len(inp)
	out = out[:n]
	done := 0
	if haveAVX2 && n >= 8 {
		done = n &^ 7
		if haveAVX512 {
			geluFwdAVX512(&out[0], &inp[0], done)
		} else {
			geluFwdAVX2(&out[0], &inp[0], done)
		}
	}
	for i := done; i < n; i++ {
		x := inp[i]
		th, _ := tanhSech2(geluScale * x * (1 + geluCubic*x*x))
		hx := 0.5 * x
		out[i] = hx + hx*th
	}
}

// geluGradSlice adds dout[i] * gelu'(inp[i]) into dinp[i].
func geluGradSlice(dinp, inp, dout []float32) {
	n := len(inp)
	dinp, dout = dinp[:n], dout[:n]
	done := 0
	if haveAVX2 && n >= 8 {
		done = n &^ 7
		if haveAVX512 {
			geluBwdAVX512(&dinp[0], &inp[0], &dout[0], done)
		} else {
			geluBwdAVX2(&dinp[0], &inp[0], &dout[0], done)
		}
	}
	for i := done; i < n; i++ {
		x := inp[i]
		th, sech2 := tanhSech2(geluScale * x * (1 + geluCubic*x*x))
		g := 0.5*(1+th) + 0.5*x*sech2*geluScale*(1+3*geluCubic*x*x)
		dinp[i] += g * dout[i]
	}
}

// expSub replaces x[i] by exp(x[i] - sub) and returns their sum.
func expSub(x []float32, sub float32) float32 {
	n := len(x)
	done := 0
	var sum float32
	if haveAVX2 && n >= 8 {
		done = n &^ 7
		if haveAVX512 {
			sum = expSubAVX512(&x[0], done, sub)
		} else {
			sum = expSubAVX2(&x[0], done, sub)
		}
	}
	for i := done; i < n; i++ {
		e := exp32(x[i] - sub)
		x[i] = e
		sum += e
	}
	return sum
}

// adamwSlice applies one AdamW update to p, m, v from g; c = {b1, 1-b1, b2,
// 1-b2, c1, c2, eps, step, keep, clip} (see AdamW.step; each gradient is
// first multiplied by clip). Every product is rounded on its own (explicit
// conversions forbid fused multiply-adds), so the Go loop and the assembly
// give the same bits on every CPU.
func adamwSlice(p, g, m, v []float32, c *[10]float32) {
	n := len(p)
	g, m, v = g[:n], m[:n], v[:n]
	done := 0
	if haveAVX2 && n >= 8 {
		done = n &^ 7
		if haveAVX512 {
			adamwAVX512(&p[0], &g[0], &m[0], &v[0], done, c)
		} else {
			adamwAVX2(&p[0], &g[0], &m[0], &v[0], done, c)
		}
	}
	b1, omb1, b2, omb2, c1, c2, eps, step, keep, clip := c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7], c[8], c[9]
	for i := done; i < n; i++ {
		gi := float32(g[i] * clip)
		mi := float32(b1*m[i]) + float32(omb1*gi)
		vi := float32(b2*v[i]) + float32(float32(omb2*gi)*gi)
		m[i], v[i] = mi, vi
		den := float32(math.Sqrt(float64(float32(vi*c2)))) + eps
		upd := float32(step*float32(mi*c1)) / den
		p[i] = float32(p[i]*keep) - upd
	}
}

// maxSlice is the largest element of a non-empty x.
func maxSlice(x []float32) float32 {
	n := len(x)
	done := 0
	var mx float32
	if haveAVX2 && n >= 8 {
		done = n &^ 7
		mx = maxAVX2(&x[0], done)
	} else {
		mx = x[0]
	}
	for _, v := range x[done:] {
		if v > mx {
			mx = v
		}
	}
	return mx
}

// scaleCopy sets dst[i] = a*src[i] for the len(dst) first elements of src.
func scaleCopy(dst, src []float32, a float32) {
	n := len(dst)
	src = src[:n]
	done := 0
	if haveAVX2 && n >= 8 {
		done = n &^ 7
		if haveAVX512 {
			scaleCopyAVX512(&dst[0], &src[0], done, a)
		} else {
			scaleCopyAVX2(&dst[0], &src[0], done, a)
		}
	}
	for i := done; i < n; i++ {
		dst[i] = a * src[i]
	}
}

// dotSlice is the dot product of a and b[:len(a)].
func dotSlice(a, b []float32) float32 {
	n := len(a)
	b = b[:n]
	done := 0
	var s float32
	if haveAVX2 && n >= 8 {
		done = n &^ 7
		s = dotAVX2(&a[0], &b[0], done)
	}
	for i := done; i < n; i++ {
		s += a[i] * b[i]
	}
	return s
}

// softmaxGrad sets d[i] = p[i] * (d[i] - dot) * scale: the softmax backward
// of one row, given dot = sum_j p[j] d[j].
func softmaxGrad(d, p []float32, dot, scale float32) {
	n := len(d)
	p = p[:n]
	done := 0
	if haveAVX2 && n >= 8 {
		done = n &^ 7
		if haveAVX512 {
			softmaxGradAVX512(&d[0], &p[0], done, dot, scale)
		} else {
			softmaxGradAVX2(&d[0], &p[0], done, dot, scale)
		}
	}
	for i := done; i < n; i++ {
		d[i] = (d[i] - dot) * p[i] * scale
	}
}

// geluGradSetSlice sets dinp[i] = dout[i] * gelu'(inp[i]); dinp may be dout.
func geluGradSetSlice(dinp, inp, dout []float32) {
	n := len(inp)
	dinp, dout = dinp[:n], dout[:n]
	done := 0
	if haveAVX2 && n >= 8 {
		done = n &^ 7
		if haveAVX512 {
			geluBwdSetAVX512(&dinp[0], &inp[0], &dout[0], done)
		} else {
			geluBwdSetAVX2(&dinp[0], &inp[0], &dout[0], done)
		}
	}
	for i := done; i < n; i++ {
		x := inp[i]
		th, sech2 := tanhSech2(geluScale * x * (1 + geluCubic*x*x))
		g := 0.5*(1+th) + 0.5*x*sech2*geluScale*(1+3*geluCubic*x*x)
		dinp[i] = g * dout[i]
	}
}
