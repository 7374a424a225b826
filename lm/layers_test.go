package lm

import (
	"math"
	"testing"

	"github.com/klring/klring/kernels"
)

func randVec(r *RNG, n int, std float64) []float32 {
	v := make([]float32, n)
	for i := range v {
		v[i] = float32(r.NormFloat64() * std)
	}
	return v
}

// probe is a tensor x with its analytic gradient g, for checkDirectional.
type probe struct {
	name string
	x, g []float32
}

// checkDirectional compares, for each probe, the directional derivative g.d
// along a random unit direction d with the central difference
// (f(x+eps d) - f(x-eps d)) / 2eps, within tol relative plus abs absolute.
func checkDirectional(t *testing.T, layer string, probes []probe, f func() float64, eps, tol, abs float64) {
	t.Helper()
	r := NewRNG(99)
	for _, pr := range probes {
		x, g := pr.x, pr.g
		d := make([]float64, len(x))
		var nn float64
		for i := range d {
			d[i] = r.NormFloat64()
			nn += d[i] * d[i]
		}
		nn = math.Sqrt(nn)
		var analytic float64
		for i := range d {
			d[i] /= nn
			analytic += float64(g[i]) * d[i]
		}
		orig := append([]float32(nil), x...)
		for i := range x {
			x[i] = float32(float64(orig[i]) + eps*d[i])
		}
		fp := f()
		for i := range x {
			x[i] = float32(float64(orig[i]) - eps*d[i])
		}
		fm := f()
		copy(x, orig)
		numeric := (fp - fm) / (2 * eps)
		if diff := math.Abs(analytic - numeric); diff > tol*math.Max(math.Abs(analytic), math.Abs(numeric))+abs {
			t.Errorf("%s: d/d%s along a random direction = %.6g (backward); want %.6g (finite difference)", layer, pr.name, analytic, numeric)
		} else {
			t.Logf("%s: d/d%s: backward %.6g, finite difference %.6g", layer, pr.name, analytic, numeric)
		}
	}
}

func dotR(r []float32, y []float32) float64 {
	var s float64
	for i := range r {
		s += float64(r[i]) * float64(y[i])
	}
	return s
}

func TestLayerBackwardFiniteDifference(t *testing.T) {
	pool := newRunner(kernels.NewPool(2))
	r := NewRNG(1)
	const eps, tol = 1e-2, 1e-2

	t.Run("layernorm", func(t *testing.T) {
		N, C := 5, 7
		inp, w, b := randVec(r, N*C, 1), randVec(r, C, 1), randVec(r, C, 1)
		proj := randVec(r, N*C, 1)
		out, mean, rstd := make([]float32, N*C), make([]float32, N), make([]float32, N)
		f := func() float64 {
			layernormForward(pool, out, mean, rstd, inp, w, b, N, C)
			return dotR(proj, out)
		}
		f()
		dinp, dw, db := make([]float32, N*C), make([]float32, C), make([]float32, C)
		layernormBackward(pool, dinp, dw, db, proj, inp, w, mean, rstd, N, C)
		checkDirectional(t, "layernorm", []probe{{"inp", inp, dinp}, {"weight", w, dw}, {"bias", b, db}}, f, eps, tol, 1e-4)
	})
	t.Run("matmul", func(t *testing.T) {
		N, C, OC := 5, 6, 9
		inp, w, b := randVec(r, N*C, 1), randVec(r, OC*C, 1), randVec(r, OC, 1)
		proj := randVec(r, N*OC, 1)
		out := make([]float32, N*OC)
		f := func() float64 {
			matmulForward(pool, out, inp, w, b, N, C, OC)
			return dotR(proj, out)
		}
		dinp, dw, db := make([]float32, N*C), make([]float32, OC*C), make([]float32, OC)
		matmulBackward(pool, dinp, dw, db, proj, inp, w, N, C, OC)
		checkDirectional(t, "matmul", []probe{{"inp", inp, dinp}, {"weight", w, dw}, {"bias", b, db}}, f, eps, tol, 1e-4)
	})
	t.Run("attention", func(t *testing.T) {
		// T > attnBlock exercises more than one block of rows.
		B, T, C, NH := 2, attnBlock+6, 8, 2
		qkv := randVec(r, B*T*3*C, 1)
		proj := randVec(r, B*T*C, 1)
		out, lse := make([]float32, B*T*C), make([]float32, B*NH*T)
		scratch := make([]float32, 2*attnScratch(T))
		f := func() float64 {
			attentionForward(pool, out, lse, scratch, qkv, B, T, C, NH)
			return dotR(proj, out)
		}
		f()
		dqkv := make([]float32, len(qkv))
		attentionBackward(pool, dqkv, scratch, proj, qkv, lse, B, T, C, NH)
		checkDirectional(t, "attention", []probe{{"qkv", qkv, dqkv}}, f, eps, tol, 1e-4)
		// Causality: the output at t must not depend on inputs after t.
		f()
		before := append([]float32(nil), out...)
		for c := 0; c < 3*C; c++ {
			qkv[(T-1)*3*C+c] += 1 // last position of batch 0
		}
		f()
		for tt := 0; tt < T-1; tt++ {
			for c := 0; c < C; c++ {
				if i := tt*C + c; out[i] != before[i] {
					t.Fatalf("attention out[b=0,t=%d,c=%d] changed with the token at t=%d: causality broken", tt, c, T-1)
				}
			}
		}
	})
	t.Run("gelu", func(t *testing.T) {
		N := 64
		inp := randVec(r, N, 2)
		proj := randVec(r, N, 1)
		out := make([]float32, N)
		f := func() float64 {
			geluForward(pool, out, inp, N)
			return dotR(proj, out)
		}
		dinp := make([]float32, N)
		geluBackward(pool, dinp, inp, proj, N)
		checkDirectional(t, "gelu", []probe{{"inp", inp, dinp}}, f, eps, tol, 1e-4)
	})
	t.Run("encoder", func(t *testing.T) {
		B, T, C, V := 2, 3, 4, 5
		tokens := []int32{0, 4, 4, 1, 2, 0}
		wte, wpe := randVec(r, V*C, 1), randVec(r, T*C, 1)
		proj := randVec(r, B*T*C, 1)
		out := make([]float32, B*T*C)
		f := func() float64 {
			encoderForward(out, tokens, wte, wpe, B, T, C)
			return dotR(proj, out)
		}
		dwte, dwpe := make([]float32, V*C), make([]float32, T*C)
		encoderBackward(dwte, dwpe, proj, tokens, B, T, C)
		checkDirectional(t, "encoder", []probe{{"wte", wte, dwte}, {"wpe", wpe, dwpe}}, f, eps, tol, 1e-4)
	})
}

func TestBackwardAccumulates(t *testing.T) {
	pool := newRunner(kernels.NewPool(1))
	r := NewRNG(5)
	N, C := 3, 4
	inp, w := randVec(r, N*C, 1), randVec(r, C, 1)
	mean, rstd, out := make([]float32, N), make([]float32, N), make([]float32, N*C)
	layernormForward(pool, out, mean, rstd, inp, w, make([]float32, C), N, C)
	dout := randVec(r, N*C, 1)
	once := make([]float32, N*C)
	layernormBackward(pool, once, make([]float32, C), make([]float32, C), dout, inp, w, mean, rstd, N, C)
	twice := make([]float32, N*C)
	for range 2 {
		layernormBackward(pool, twice, make([]float32, C), make([]float32, C), dout, inp, w, mean, rstd, N, C)
	}
	for i := range once {
		if twice[i] != 2*once[i] {
			t.Fatalf("two layernormBackward calls: dinp[%d] = %g; want 2 x %g", i, twice[i], once[i])
		}
	}
}

func TestFastMath(t *testing.T) {
	worstExp, worstTanh := 0.0, 0.0
	for x := -87.0; x < 88.5; x += 0.001 {
		got, want := float64(exp32(float32(x))), math.Exp(float64(float32(x)))
		worstExp = max(worstExp, math.Abs(got-want)/want)
	}
	worstSech := 0.0
	for x := -50.0; x < 50; x += 0.0001 {
		th, s2 := tanhSech2(float32(x))
		want := math.Tanh(float64(float32(x)))
		worstTanh = max(worstTanh, math.Abs(float64(th)-want))
		c := math.Cosh(float64(float32(x)))
		if ws := 1 / (c * c); ws > 1e-36 { // inside float32's normal range
			worstSech = max(worstSech, math.Abs(float64(s2)-ws)/ws)
		}
	}
	if worstSech > 1e-6 {
		t.Errorf("tanhSech2: worst relative error of sech^2 %.3g; want <= 1e-6", worstSech)
	}
	if worstExp > 3e-7 {
		t.Errorf("exp32: worst relative error %.3g; want <= 3e-7", worstExp)
	}
	if worstTanh > 2e-7 {
		t.Errorf("tanhSech2: worst absolute error of tanh %.3g; want <= 2e-7", worstTanh)
	}
	t.Logf("exp32 worst rel %.3g, tanh worst abs %.3g, sech^2 worst rel %.3g", worstExp, worstTanh, worstSech)
	for _, c := range []struct{ in, want float32 }{{-100, 0}, {0, 1}, {float32(math.Inf(-1)), 0}, {88.5, float32(math.Exp(88.5))}} {
		if got := exp32(c.in); got != c.want {
			t.Errorf("exp32(%g) = %g; want %g", c.in, got, c.want)
		}
	}
	if got := exp32(100); !math.IsInf(float64(got), 1) {
		t.Errorf("exp32(100) = %g; want +Inf", got)
	}
	if got := exp32(float32(math.NaN())); got == got {
		t.Errorf("exp32(NaN) = %g; want NaN", got)
	}
}

func BenchmarkFastMath(b *testing.B) {
	xs := make([]float32, 4096)
	for i := range xs {
		xs[i] = float32(i)/512 - 4
	}
	var sink float32
	b.Run("exp32", func(b *testing.B) {
		for b.Loop() {
			for _, x := range xs {
				sink += exp32(x)
			}
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(xs)), "ns/value")
	})
	b.Run("tanhSech2", func(b *testing.B) {
		for b.Loop() {
			for _, x := range xs {
				th, _ := tanhSech2(x)
				sink += th
			}
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(xs)), "ns/value")
	})
	ys := make([]float32, len(xs))
	b.Run("geluSlice", func(b *testing.B) {
		for b.Loop() {
			geluSlice(ys, xs)
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(xs)), "ns/value")
	})
	b.Run("geluGradSlice", func(b *testing.B) {
		for b.Loop() {
			geluGradSlice(ys, xs, xs)
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(xs)), "ns/value")
	})
	b.Run("expSub", func(b *testing.B) {
		for b.Loop() {
			copy(ys, xs)
			sink += expSub(ys, 1)
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(xs)), "ns/value")
	})
	gp, bias := make([]float32, len(xs)), make([]float32, len(xs))
	b.Run("geluFwdGradRow", func(b *testing.B) {
		for b.Loop() {
			geluFwdGradRow(ys, gp, xs, bias)
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(xs)), "ns/value")
	})
	b.Run("geluGradSetSlice", func(b *testing.B) {
		for b.Loop() {
			geluGradSetSlice(ys, xs, gp)
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(xs)), "ns/value")
	})
	// The LayerNorm rows and AdamW over xs as rows of 256 (small's C).
	w, bias := xs[:256], ys[:256]
	b.Run("lnRow", func(b *testing.B) {
		for b.Loop() {
			for r := 0; r < len(xs); r += 256 {
				lnRow(gp[r:r+256], xs[r:r+256], w, bias, 1)
			}
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(xs)), "ns/value")
	})
	b.Run("lnBackwardRow", func(b *testing.B) {
		for b.Loop() {
			for r := 0; r < len(xs); r += 256 {
				lnBackwardRow(gp[r:r+256], ys[r:r+256], xs[r:r+256], w, 0.1, 1.3)
			}
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(xs)), "ns/value")
	})
	m, v := make([]float32, len(xs)), make([]float32, len(xs))
	c := [10]float32{0.9, 0.1, 0.95, 0.05, 1, 1, 1e-8, 1e-6, 1, 1}
	b.Run("adamwSlice", func(b *testing.B) {
		for b.Loop() {
			adamwSlice(ys, xs, m, v, &c)
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(xs)), "ns/value")
	})
	b.Logf("AVX2 %v, AVX-512 %v", haveAVX2, haveAVX512)
	_ = sink
}

// TestSliceKernels compares the slice kernels (assembly where the CPU has
// AVX2) with the scalar formulas, on lengths that leave a tail.
func TestSliceKernels(t *testing.T) {
	r := NewRNG(8)
	for _, n := range []int{1, 7, 8, 9, 64, 101} {
		x := randVec(r, n, 3)
		if n > 3 {
			x[0], x[1], x[2], x[3] = 0, 20, -20, 1e-4
		}
		out := make([]float32, n)
		geluSlice(out, x)
		dout := randVec(r, n, 1)
		dinp := randVec(r, n, 1)
		dinp0 := append([]float32(nil), dinp...)
		geluGradSlice(dinp, x, dout)
		e := append([]float32(nil), x...)
		sum := expSub(e, 1.5)
		var want float64
		for i, v := range x {
			xd := float64(v)
			th := math.Tanh(geluScale * (xd + geluCubic*xd*xd*xd))
			if g := 0.5 * xd * (1 + th); math.Abs(float64(out[i])-g) > 1e-6*(1+math.Abs(g)) {
				t.Errorf("n=%d: gelu(%g) = %g; want %g", n, v, out[i], g)
			}
			dg := 0.5*(1+th) + 0.5*xd*(1-th*th)*geluScale*(1+3*geluCubic*xd*xd)
			if w := float64(dinp0[i]) + dg*float64(dout[i]); math.Abs(float64(dinp[i])-w) > 1e-6*(1+math.Abs(w)) {
				t.Errorf("n=%d: gelu backward at %g = %g; want %g", n, v, dinp[i], w)
			}
			ex := math.Exp(float64(v - 1.5)) // the argument rounded as the kernel rounds it
			want += ex
			if math.Abs(float64(e[i])-ex) > 3e-7*ex {
				t.Errorf("n=%d: exp(%g - 1.5) = %g; want %g", n, v, e[i], ex)
			}
		}
		if math.Abs(float64(sum)-want) > 1e-6*want {
			t.Errorf("n=%d: expSub sum = %g; want %g", n, sum, want)
		}
	}
	t.Logf("AVX2 kernels: %v", haveAVX2)
}

// TestSliceReductions checks maxSlice, dotSlice, scaleCopy and softmaxGrad
// on lengths that leave a tail, against plain loops.
func TestSliceReductions(t *testing.T) {
	r := NewRNG(12)
	for i, n := range []int{1, 5, 8, 13, 64, 99, 517, 40} {
		a, b := randVec(r, n, 1), randVec(r, n, 1)
		a[[]int{n / 2, 0, n - 1}[i%3]] = 7 // the maximum in the middle, first or last
		sc := make([]float32, n)
		scaleCopy(sc, a, -1.5)
		for j := range sc {
			if sc[j] != -1.5*a[j] {
				t.Errorf("scaleCopy(n=%d)[%d] = %g; want %g", n, j, sc[j], -1.5*a[j])
			}
		}
		want := float32(math.Inf(-1))
		var dot float64
		for i := range a {
			want = max(want, a[i])
			dot += float64(a[i]) * float64(b[i])
		}
		if got := maxSlice(a); got != want {
			t.Errorf("maxSlice(n=%d) = %g; want %g", n, got, want)
		}
		if got := dotSlice(a, b); math.Abs(float64(got)-dot) > 1e-5*(1+math.Abs(dot)) {
			t.Errorf("dotSlice(n=%d) = %g; want %g", n, got, dot)
		}
		d := append([]float32(nil), b...)
		softmaxGrad(d, a, 0.5, 2)
		for i := range d {
			if w := a[i] * (b[i] - 0.5) * 2; math.Abs(float64(d[i]-w)) > 1e-6*(1+math.Abs(float64(w))) {
				t.Errorf("softmaxGrad(n=%d)[%d] = %g; want %g", n, i, d[i], w)
			}
		}
	}
}

// TestAdamWSliceMatchesGo: the assembly AdamW gives the same bits as the Go
// loop (what keeps replicas on different CPUs identical).
func TestAdamWSliceMatchesGo(t *testing.T) {
	if !haveAVX2 {
		t.Log("no AVX2: only the Go loop runs here")
	}
	r := NewRNG(13)
	n := 203
	p, g, m, v := randVec(r, n, 1), randVec(r, n, 1e-3), randVec(r, n, 1e-3), randVec(r, n, 1e-6)
	for i := range v {
		v[i] = float32(math.Abs(float64(v[i])))
	}
	for _, clip := range []float32{1, 0.37} {
		c := [10]float32{0.9, 1 - float32(0.9), 0.95, 1 - float32(0.95), 1.5, 2.5, 1e-8, 1e-3, 0.999, clip}
		p1, m1, v1 := append([]float32(nil), p...), append([]float32(nil), m...), append([]float32(nil), v...)
		adamwSlice(p1, g, m1, v1, &c) // assembly for the first 200
		p2, m2, v2 := append([]float32(nil), p...), append([]float32(nil), m...), append([]float32(nil), v...)
		for i := range p2 { // the Go tail loop, one element at a time
			adamwSlice(p2[i:i+1], g[i:i+1], m2[i:i+1], v2[i:i+1], &c)
		}
		for i := range p1 {
			if math.Float32bits(p1[i]) != math.Float32bits(p2[i]) || m1[i] != m2[i] || v1[i] != v2[i] {
				t.Fatalf("clip %g: adamwSlice[%d]: assembly p,m,v = %g,%g,%g; Go %g,%g,%g", clip, i, p1[i], m1[i], v1[i], p2[i], m2[i], v2[i])
			}
		}
	}
}
