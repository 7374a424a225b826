package lm

import (
	"fmt"
	"math"
	"testing"

	"github.com/klring/klring/kernels"
)

// TestRowKernels checks the row kernels of the fused epilogues against plain
// float64 loops, on lengths that leave a tail after the assembly's blocks.
func TestRowKernels(t *testing.T) {
	r := NewRNG(21)
	for _, n := range []int{1, 7, 8, 9, 64, 101, 128} {
		x, y, bias := randVec(r, n, 1), randVec(r, n, 1), randVec(r, n, 0.5)
		w, b := randVec(r, n, 1), randVec(r, n, 0.2)
		tol := func(want float64) float64 { return 2e-6 * (float64(n) + math.Abs(want)) }

		// resBiasSumRow: r = x + (r + bias), returns the sum.
		res := append([]float32(nil), y...)
		sum := resBiasSumRow(res, x, bias)
		var want float64
		for i := range res {
			v := float64(x[i]) + float64(y[i]) + float64(bias[i])
			want += v
			if math.Abs(float64(res[i])-v) > 1e-6*(1+math.Abs(v)) {
				t.Fatalf("n=%d: resBiasSumRow[%d] = %g; want %g", n, i, res[i], v)
			}
		}
		if math.Abs(float64(sum)-want) > tol(want) {
			t.Errorf("n=%d: resBiasSumRow sum = %g; want %g", n, sum, want)
		}
		if got := sumRow(res); math.Abs(float64(got)-want) > tol(want) {
			t.Errorf("n=%d: sumRow = %g; want %g", n, got, want)
		}

		// lnRow against a float64 LayerNorm.
		out := make([]float32, n)
		mean, rstd := lnRow(out, res, w, b, sum)
		m64 := want / float64(n)
		var v64 float64
		for _, v := range res {
			v64 += (float64(v) - m64) * (float64(v) - m64)
		}
		s64 := 1 / math.Sqrt(v64/float64(n)+1e-5)
		if math.Abs(float64(mean)-m64) > 1e-5 || math.Abs(float64(rstd)-s64) > 1e-4*s64 {
			t.Errorf("n=%d: lnRow mean, rstd = %g, %g; want %g, %g", n, mean, rstd, m64, s64)
		}
		for i := range out {
			o := (float64(res[i])-m64)*s64*float64(w[i]) + float64(b[i])
			if math.Abs(float64(out[i])-o) > 1e-4*(1+math.Abs(o)) {
				t.Fatalf("n=%d: lnRow[%d] = %g; want %g", n, i, out[i], o)
			}
		}

		// lnBackwardRow and lnParamGradRow against float64 formulas.
		d := randVec(r, n, 1)
		di := randVec(r, n, 1)
		di0 := append([]float32(nil), di...)
		lnBackwardRow(di, d, res, w, mean, rstd)
		var a64, b64 float64
		for i := range d {
			norm := (float64(res[i]) - float64(mean)) * float64(rstd)
			a64 += float64(w[i]) * float64(d[i])
			b64 += float64(w[i]) * float64(d[i]) * norm
		}
		a64 /= float64(n)
		b64 /= float64(n)
		for i := range di {
			norm := (float64(res[i]) - float64(mean)) * float64(rstd)
			g := float64(di0[i]) + (float64(w[i])*float64(d[i])-a64-norm*b64)*float64(rstd)
			if math.Abs(float64(di[i])-g) > 1e-4*(1+math.Abs(g)) {
				t.Fatalf("n=%d: lnBackwardRow[%d] = %g; want %g", n, i, di[i], g)
			}
		}
		dw, db := randVec(r, n, 1), randVec(r, n, 1)
		dw0, db0 := append([]float32(nil), dw...), append([]float32(nil), db...)
		lnParamGradRow(dw, db, d, res, mean, rstd)
		for i := range dw {
			norm := (float64(res[i]) - float64(mean)) * float64(rstd)
			if g := float64(dw0[i]) + norm*float64(d[i]); math.Abs(float64(dw[i])-g) > 1e-5*(1+math.Abs(g)) {
				t.Fatalf("n=%d: lnParamGradRow dw[%d] = %g; want %g", n, i, dw[i], g)
			}
			if g := db0[i] + d[i]; db[i] != g {
				t.Fatalf("n=%d: lnParamGradRow db[%d] = %g; want %g", n, i, db[i], g)
			}
		}

		// addRow is exact; geluGradSetSlice equals geluGradSlice from zero.
		sum2 := append([]float32(nil), x...)
		addRow(sum2, y)
		for i := range sum2 {
			if sum2[i] != x[i]+y[i] {
				t.Fatalf("n=%d: addRow[%d] = %g; want %g", n, i, sum2[i], x[i]+y[i])
			}
		}
		// geluFwdGradRow: gelu and gelu' of x + bias (here y) from one
		// tanh, gp in place of x.
		gout, gp := make([]float32, n), append([]float32(nil), x...)
		geluFwdGradRow(gout, gp, gp, y)
		wout, ones := make([]float32, n), make([]float32, n)
		geluSlice(wout, sum2)
		for i := range ones {
			ones[i] = 1
		}
		wgp := make([]float32, n)
		geluGradSetSlice(wgp, sum2, ones)
		for i := range gout {
			if math.Abs(float64(gout[i]-wout[i])) > 1e-6*(1+math.Abs(float64(wout[i]))) || math.Abs(float64(gp[i]-wgp[i])) > 1e-6 {
				t.Fatalf("n=%d: geluFwdGradRow(%g + %g) = %g, %g; want %g, %g", n, x[i], y[i], gout[i], gp[i], wout[i], wgp[i])
			}
		}
		prod := append([]float32(nil), x...)
		mulRow(prod, y)
		for i := range prod {
			if prod[i] != x[i]*y[i] {
				t.Fatalf("n=%d: mulRow[%d] = %g; want %g", n, i, prod[i], x[i]*y[i])
			}
		}
		set := append([]float32(nil), d...)
		geluGradSetSlice(set, x, set)
		acc := make([]float32, n)
		geluGradSlice(acc, x, d)
		for i := range set {
			if math.Abs(float64(set[i]-acc[i])) > 1e-6*(1+math.Abs(float64(acc[i]))) {
				t.Fatalf("n=%d: geluGradSetSlice[%d] = %g; geluGradSlice gives %g", n, i, set[i], acc[i])
			}
		}
	}
}

// refSquares is the gradient norm's order written out plainly: blocks of
// normBlock in order, 16 lanes per block, lanes summed in order.
func refSquares(g []float32) float64 {
	var total float64
	for lo := 0; lo < len(g); lo += normBlock {
		var lanes [16]float64
		for i, v := range g[lo:min(lo+normBlock, len(g))] {
			lanes[i%16] += float64(v) * float64(v)
		}
		var s float64
		for _, l := range lanes {
			s += l
		}
		total += s
	}
	return total
}

// TestStepClipMatchesUnfused: the fused clip + AdamW pass leaves the same
// bits as ClipGradNorm then Step, for any number of threads, clipping or
// not; the norm is the plainly written order's; a non-finite norm skips.
func TestStepClipMatchesUnfused(t *testing.T) {
	cfg := Config{Vocab: 300, NEmbd: 32, NLayer: 2, NHead: 2, Ctx: 16}
	layout := cfg.Layout()
	n := cfg.NumParams()
	r := NewRNG(5)
	grads0 := randVec(r, n+2, 1e-2) // with the trainer's two trailing slots
	params0 := randVec(r, n, 0.1)
	want := math.Sqrt(refSquares(grads0[:n]))
	for _, maxNorm := range []float64{0, want / 3, want * 2} {
		// Unfused, one thread: the reference.
		ref, err := NewAdamW(layout, DefaultAdamWOptions(), kernels.NewPool(1))
		if err != nil {
			t.Fatal(err)
		}
		pRef, gRef := append([]float32(nil), params0...), append([]float32(nil), grads0...)
		for step := 0; step < 3; step++ {
			g := append([]float32(nil), gRef...)
			if norm := ClipGradNorm(g[:n], maxNorm); norm != want {
				t.Fatalf("ClipGradNorm = %.17g; want %.17g", norm, want)
			}
			ref.Step(pRef, g, 1e-3)
		}
		for _, threads := range []int{1, 2, 3} {
			t.Run(fmt.Sprintf("max=%.3g/threads=%d", maxNorm, threads), func(t *testing.T) {
				opt, err := NewAdamW(layout, DefaultAdamWOptions(), kernels.NewPool(threads))
				if err != nil {
					t.Fatal(err)
				}
				p, g := append([]float32(nil), params0...), append([]float32(nil), grads0...)
				for step := 0; step < 3; step++ {
					if norm := opt.StepClip(p, g, 1e-3, maxNorm); norm != want {
						t.Fatalf("StepClip norm = %.17g; want %.17g", norm, want)
					}
				}
				for i := range g {
					if g[i] != grads0[i] {
						t.Fatalf("StepClip changed grads[%d]", i)
					}
				}
				for i := range p {
					if math.Float32bits(p[i]) != math.Float32bits(pRef[i]) ||
						math.Float32bits(opt.State.M[i]) != math.Float32bits(ref.State.M[i]) ||
						math.Float32bits(opt.State.V[i]) != math.Float32bits(ref.State.V[i]) {
						t.Fatalf("param %d: fused p,m,v = %g,%g,%g; unfused %g,%g,%g", i, p[i], opt.State.M[i], opt.State.V[i], pRef[i], ref.State.M[i], ref.State.V[i])
					}
				}
			})
		}
	}
	// A non-finite gradient: the norm is returned, nothing moves.
	opt, err := NewAdamW(layout, DefaultAdamWOptions(), kernels.NewPool(2))
	if err != nil {
		t.Fatal(err)
	}
	p, g := append([]float32(nil), params0...), append([]float32(nil), grads0...)
	g[n/2] = float32(math.Inf(1))
	if norm := opt.StepClip(p, g, 1e-3, 1); !math.IsInf(norm, 1) {
		t.Errorf("StepClip with an infinite gradient: norm = %g; want +Inf", norm)
	}
	if opt.State.T != 0 {
		t.Errorf("StepClip with an infinite gradient took a step (T = %d)", opt.State.T)
	}
	for i := range p {
		if p[i] != params0[i] {
			t.Fatalf("StepClip with an infinite gradient changed param %d", i)
		}
	}
}

// TestAttentionTilesMatchGemm: attention on the tile kernel (every head size
// it takes: 16, 32, 48 and 64, so AVX-512's value tiles run alone, beside an
// AVX2 tile, or not at all; T not a multiple of 6 or 16, so the panels of keys
// come odd and even, in one block of rows or three) gives what the Pool.Sgemm
// path gives, forward and backward (added to a gradient already there), for
// any number of threads.
func TestAttentionTilesMatchGemm(t *testing.T) {
	const B, NH = 2, 2
	for _, tc := range []struct{ T, HS int }{{37, 16}, {37, 32}, {37, 48}, {37, 64}, {101, 32}, {101, 48}} {
		T, HS := tc.T, tc.HS
		C := NH * HS
		if haveAVX2 && !attnFastOK(HS, T, attnScratch(T)) {
			t.Fatalf("HS %d: the tile path does not run", HS)
		}
		r := NewRNG(31)
		qkv := randVec(r, B*T*3*C, 1)
		dout := randVec(r, B*T*C, 1)
		dqkv0 := randVec(r, B*T*3*C, 1)
		run := func(threads int, noTiles bool) (out, lse, dqkv []float32) {
			rn := newRunner(kernels.NewPool(threads))
			rn.noTiles = noTiles
			scratch := make([]float32, threads*attnScratch(T))
			out, lse = make([]float32, B*T*C), make([]float32, B*NH*T)
			attentionForward(rn, out, lse, scratch, qkv, B, T, C, NH)
			dqkv = append([]float32(nil), dqkv0...)
			attentionBackward(rn, dqkv, scratch, dout, qkv, lse, B, T, C, NH)
			return out, lse, dqkv
		}
		wOut, wLse, wD := run(1, true)
		for _, threads := range []int{1, 2, 3} {
			out, lse, d := run(threads, false)
			for _, c := range []struct {
				name      string
				got, want []float32
			}{{"out", out, wOut}, {"lse", lse, wLse}, {"dqkv", d, wD}} {
				for i := range c.got {
					if e := math.Abs(float64(c.got[i] - c.want[i])); e > 2e-5*(1+math.Abs(float64(c.want[i]))) {
						t.Fatalf("T %d, HS %d, threads %d: %s[%d] = %g with tiles; %g on Sgemm", T, HS, threads, c.name, i, c.got[i], c.want[i])
					}
				}
			}
		}
	}
	if !haveAVX2 {
		t.Log("no AVX2: both runs took the Sgemm path")
	}
}
