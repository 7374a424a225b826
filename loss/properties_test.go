package loss

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/klring/klring/kernels"
)

var allKinds = []targetKind{kindHard, kindProbs, kindLogProbs, kindSparse}

// TestNonNegative: every divergence is >= 0, and clearly > 0 for P != Q.
func TestNonNegative(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	c := NewComputer(nil)
	const rows, V = 16, 50
	for _, dir := range []Direction{Forward, Reverse, JSD} {
		for _, kind := range allKinds {
			o := DefaultOptions()
			o.Direction = dir
			if kind == kindHard && dir == Reverse {
				o.LabelSmoothing = 0.1
			}
			tg := randTarget(rng, kind, rows, V, dir != Reverse)
			rowLoss := make([]float64, rows)
			if _, err := c.Forward(randLogits(rng, rows*V, 2), rows, V, tg, o, rowLoss); err != nil {
				t.Fatalf("%v/%s: %v", dir, kindNames[kind], err)
			}
			for r, l := range rowLoss {
				if !(l > 1e-4) {
					t.Errorf("%v/%s: row %d loss = %v; want > 1e-4 for P != Q", dir, kindNames[kind], r, l)
				}
			}
		}
	}
}

// TestZeroIffEqual: the divergence of Q from itself is 0 (up to the float32
// rounding of P), in every direction and at every temperature.
func TestZeroIffEqual(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	c := NewComputer(nil)
	const rows, V = 8, 300
	for _, dir := range []Direction{Forward, Reverse, JSD} {
		for _, T := range []float64{1, 0.5, 3} {
			z := randLogits(rng, rows*V, 3)
			p := make([]float32, rows*V)
			for r := 0; r < rows; r++ {
				zr := make([]float64, V)
				for i := range zr {
					zr[i] = float64(z[r*V+i])
				}
				for i, q := range refSoftmax(zr, T) {
					p[r*V+i] = float32(q)
				}
			}
			o := DefaultOptions()
			o.Direction, o.Temperature = dir, T
			rowLoss := make([]float64, rows)
			if _, err := c.ForwardBackward(z, rows, V, Target{Probs: p}, o, 1, rowLoss); err != nil {
				t.Fatalf("%v T=%v: %v", dir, T, err)
			}
			for r, l := range rowLoss {
				if math.Abs(l) > 1e-6 {
					t.Errorf("%v T=%v: row %d loss(P = Q) = %v; want 0", dir, T, r, l)
				}
			}
			for i, g := range z {
				if math.Abs(float64(g)) > 1e-6 {
					t.Fatalf("%v T=%v: grad[%d] at P = Q = %v; want 0", dir, T, i, g)
				}
			}
		}
	}
}

// TestJSDBound: JSD <= log 2, reached for disjoint supports.
func TestJSDBound(t *testing.T) {
	c := NewComputer(nil)
	const V = 4
	z := []float32{60, 0, 0, 0} // Q puts all but e^-60 on token 0
	for _, beta := range []float64{0.5, 0.1, 0.9} {
		o := DefaultOptions()
		o.Direction, o.Beta = JSD, beta
		rowLoss := make([]float64, 1)
		if _, err := c.Forward(z, 1, V, Target{Hard: []int32{3}}, o, rowLoss); err != nil {
			t.Fatal(err)
		}
		h := -beta*math.Log(beta) - (1-beta)*math.Log(1-beta) // the bound for weight beta
		if got := rowLoss[0]; got > math.Log(2)+1e-12 || !closeTo(got, h, 1e-9, 0) {
			t.Errorf("JSD(beta=%v, disjoint) = %v; want %v <= log 2", beta, got, h)
		}
	}
	rng := rand.New(rand.NewPCG(9, 10))
	const rows = 64
	o := DefaultOptions()
	o.Direction = JSD
	rowLoss := make([]float64, rows)
	if _, err := c.Forward(randLogits(rng, rows*V, 20), rows, V, randTarget(rng, kindProbs, rows, V, true), o, rowLoss); err != nil {
		t.Fatal(err)
	}
	for r, l := range rowLoss {
		// 1e-6 above: P is float32, its sum is 1 only to ~1e-7; 1e-7 below:
		// the fast path's float32 exp and log.
		if l > math.Log(2)+1e-6 || l < -1e-7 {
			t.Errorf("JSD row %d = %v; want in [-1e-7, log 2 + 1e-6]", r, l)
		}
	}
}

// TestOneHotIsCrossEntropy: forward KL of one-hot targets, given as ids or as
// dense probabilities, is the cross-entropy; with label smoothing it is the
// cross-entropy minus the entropy of P.
func TestOneHotIsCrossEntropy(t *testing.T) {
	rng := rand.New(rand.NewPCG(11, 12))
	c := NewComputer(nil)
	const rows, V = 12, 37
	for _, eps := range []float64{0, 0.2} {
		z := randLogits(rng, rows*V, 4)
		tg := randTarget(rng, kindHard, rows, V, false)
		o := DefaultOptions()
		o.LabelSmoothing = eps
		hard := make([]float64, rows)
		if _, err := c.Forward(z, rows, V, tg, o, hard); err != nil {
			t.Fatal(err)
		}
		dense := make([]float32, rows*V)
		for r := 0; r < rows; r++ {
			p := refP(tg, o, r, V)
			zr := make([]float64, V)
			for i := range zr {
				zr[i] = float64(z[r*V+i])
				dense[r*V+i] = float32(p[i])
			}
			q := refSoftmax(zr, 1)
			ce, h := 0.0, 0.0
			for i := range p {
				ce -= p[i] * math.Log(q[i])
				if p[i] > 0 {
					h -= p[i] * math.Log(p[i])
				}
			}
			if !closeTo(hard[r]+h, ce, 1e-9, 1e-6) {
				t.Errorf("eps=%v row %d: KL + H(P) = %.10g; want cross-entropy %.10g", eps, r, hard[r]+h, ce)
			}
		}
		if eps == 0 {
			probs := make([]float64, rows)
			o := DefaultOptions()
			if _, err := c.Forward(z, rows, V, Target{Probs: dense}, o, probs); err != nil {
				t.Fatal(err)
			}
			for r := range probs {
				if !closeTo(probs[r], hard[r], 1e-9, 1e-6) {
					t.Errorf("row %d: KL(one-hot probs) = %.10g; want KL(hard) %.10g", r, probs[r], hard[r])
				}
			}
		}
	}
}

// TestGradRowsSumToZero: softmax's gradient has no component along the
// all-ones direction, in every direction and for every target kind.
func TestGradRowsSumToZero(t *testing.T) {
	rng := rand.New(rand.NewPCG(13, 14))
	c := NewComputer(kernels.NewPool(2))
	for _, V := range []int{5, 256, 4099} {
		for _, dir := range []Direction{Forward, Reverse, JSD} {
			for _, kind := range allKinds {
				name := fmt.Sprintf("V=%d/%v/%s", V, dir, kindNames[kind])
				const rows = 40
				o := DefaultOptions()
				o.Direction = dir
				if kind == kindHard && dir == Reverse {
					o.LabelSmoothing = 0.1
				}
				g := randLogits(rng, rows*V, 3)
				if _, err := c.ForwardBackward(g, rows, V, randTarget(rng, kind, rows, V, dir != Reverse), o, 1, nil); err != nil {
					t.Fatalf("%s: %v", name, err)
				}
				for r := 0; r < rows; r++ {
					sum, abs := 0.0, 0.0
					for _, v := range g[r*V : (r+1)*V] {
						sum += float64(v)
						abs += math.Abs(float64(v))
					}
					if math.Abs(sum) > 1e-6*max(abs, 1) {
						t.Errorf("%s: row %d gradient sums to %v (sum of |g| %v); want 0", name, r, sum, abs)
					}
				}
			}
		}
	}
}

// TestIgnoreIndex: ignored rows get loss 0 and gradient 0 and do not count;
// the others are as if the ignored rows were absent.
func TestIgnoreIndex(t *testing.T) {
	c := NewComputer(nil)
	z := []float32{1, 2, 3, 4, 5, 6, 7, 8, 9}
	o := DefaultOptions()
	rowLoss := make([]float64, 3)
	res, err := c.ForwardBackward(z, 3, 3, Target{Hard: []int32{0, -100, 2}}, o, 1, rowLoss)
	if err != nil {
		t.Fatal(err)
	}
	if res.Rows != 2 {
		t.Errorf("Rows = %d; want 2", res.Rows)
	}
	if rowLoss[1] != 0 || z[3] != 0 || z[4] != 0 || z[5] != 0 {
		t.Errorf("ignored row: loss %v, grad %v; want 0 and zeros", rowLoss[1], z[3:6])
	}
	if res.Sum != rowLoss[0]+rowLoss[2] {
		t.Errorf("Sum = %v; want %v", res.Sum, rowLoss[0]+rowLoss[2])
	}
	// Row 0 has logits 1, 2, 3 and target 0; row 2 has 7, 8, 9 and target 2.
	lse := math.Log(math.Exp(1) + math.Exp(2) + math.Exp(3))
	if got, want := rowLoss[0], lse-1; !closeTo(got, want, 1e-7, 1e-6) {
		t.Errorf("row 0 loss = %v; want %v", got, want)
	}
	if got, want := rowLoss[2], lse-3; !closeTo(got, want, 1e-7, 1e-6) {
		t.Errorf("row 2 loss = %v; want %v", got, want)
	}
}

// TestReduce checks the reductions against PyTorch's definitions.
func TestReduce(t *testing.T) {
	r := Result{Sum: 12, Rows: 4}
	tests := []struct {
		red  Reduction
		want float64
	}{{Sum, 12}, {None, 12}, {BatchMean, 3}, {Mean, 0.5}}
	for _, tt := range tests {
		if got := Reduce(r, tt.red, 6); got != tt.want {
			t.Errorf("Reduce(%v, %v, 6) = %v; want %v", r, tt.red, got, tt.want)
		}
		if got := Reduce(Result{}, tt.red, 6); got != 0 {
			t.Errorf("Reduce(no rows, %v) = %v; want 0", tt.red, got)
		}
	}
	if got := GradScale(Mean, 4, 6); got != float32(1.0/24) {
		t.Errorf("GradScale(mean, 4, 6) = %v; want 1/24", got)
	}
}

// TestScaleT2: ScaleT2 multiplies loss and gradient by T^2.
func TestScaleT2(t *testing.T) {
	rng := rand.New(rand.NewPCG(15, 16))
	c := NewComputer(nil)
	const rows, V, T = 4, 20, 3.0
	z := randLogits(rng, rows*V, 2)
	tg := randTarget(rng, kindProbs, rows, V, true)
	o := DefaultOptions()
	o.Temperature = T
	g1 := append([]float32(nil), z...)
	r1, err := c.ForwardBackward(g1, rows, V, tg, o, 1, nil)
	if err != nil {
		t.Fatal(err)
	}
	o.ScaleT2 = true
	g2 := append([]float32(nil), z...)
	r2, err := c.ForwardBackward(g2, rows, V, tg, o, 1, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !closeTo(r2.Sum, T*T*r1.Sum, 0, 1e-12) {
		t.Errorf("loss with T^2 = %v; want %v", r2.Sum, T*T*r1.Sum)
	}
	for i := range g1 {
		if !closeTo(float64(g2[i]), T*T*float64(g1[i]), 1e-9, 1e-6) {
			t.Fatalf("grad[%d] with T^2 = %v; want %v", i, g2[i], T*T*g1[i])
		}
	}
}

// TestParallelMatchesSerial: the split over goroutines changes nothing, not
// even the last bit of the sum.
func TestParallelMatchesSerial(t *testing.T) {
	rng := rand.New(rand.NewPCG(17, 18))
	const rows, V = 300, 1000
	z := randLogits(rng, rows*V, 2)
	tg := randTarget(rng, kindProbs, rows, V, true)
	o := DefaultOptions()
	g1 := append([]float32(nil), z...)
	r1, err := NewComputer(nil).ForwardBackward(g1, rows, V, tg, o, 0.5, nil)
	if err != nil {
		t.Fatal(err)
	}
	g2 := append([]float32(nil), z...)
	r2, err := NewComputer(kernels.NewPool(4)).ForwardBackward(g2, rows, V, tg, o, 0.5, nil)
	if err != nil {
		t.Fatal(err)
	}
	if r1 != r2 {
		t.Errorf("parallel result %+v; want serial %+v", r2, r1)
	}
	for i := range g1 {
		if math.Float32bits(g1[i]) != math.Float32bits(g2[i]) {
			t.Fatalf("parallel grad[%d] = %v; want serial %v", i, g2[i], g1[i])
		}
	}
}

// TestNoAllocs: a Computer reuses its scratch.
func TestNoAllocs(t *testing.T) {
	rng := rand.New(rand.NewPCG(19, 20))
	const rows, V = 64, 512
	z := randLogits(rng, rows*V, 2)
	c := NewComputer(nil)
	for _, kind := range allKinds {
		tg := randTarget(rng, kind, rows, V, true)
		for _, dir := range []Direction{Forward, JSD} {
			o := DefaultOptions()
			o.Direction = dir
			allocs := testing.AllocsPerRun(5, func() {
				if _, err := c.ForwardBackward(z, rows, V, tg, o, 1e-3, nil); err != nil {
					t.Fatal(err)
				}
			})
			if allocs != 0 {
				t.Errorf("%v/%s: ForwardBackward allocates %v times per call; want 0", dir, kindNames[kind], allocs)
			}
		}
	}
}

// TestFastMatchesGeneric runs the fast paths (forward, reverse, JSD)
// against the float64 reference path on rows long enough for the assembly,
// with awkward lengths, a temperature, label smoothing and sparse tails.
func TestFastMatchesGeneric(t *testing.T) {
	rng := rand.New(rand.NewPCG(21, 22))
	for _, V := range []int{16, 100, 4099} {
		for _, dir := range []Direction{Forward, Reverse, JSD} {
			for _, kind := range allKinds {
				for _, eps := range []float64{0, 0.1} {
					if eps > 0 && kind != kindHard || dir == Reverse && eps == 0 && kind == kindHard {
						continue
					}
					for _, T := range []float64{1, 0.6} {
						name := fmt.Sprintf("V=%d/%v/%s/eps=%v/T=%v", V, dir, kindNames[kind], eps, T)
						const rows = 20
						z := randLogits(rng, rows*V, 4)
						z[3] = 1e4 // one large logit, as hard_large_logits
						tg := randTarget(rng, kind, rows, V, dir != Reverse)
						o := DefaultOptions()
						o.Direction, o.LabelSmoothing, o.Temperature = dir, eps, T
						fast, ref := NewComputer(nil), NewComputer(nil)
						ref.noFast = true
						gf, gr := append([]float32(nil), z...), append([]float32(nil), z...)
						lf, lr := make([]float64, rows), make([]float64, rows)
						if _, err := fast.ForwardBackward(gf, rows, V, tg, o, 0.01, lf); err != nil {
							t.Fatalf("%s: fast: %v", name, err)
						}
						if _, err := ref.ForwardBackward(gr, rows, V, tg, o, 0.01, lr); err != nil {
							t.Fatalf("%s: reference: %v", name, err)
						}
						for r := range lf {
							if !closeTo(lf[r], lr[r], 1e-6, 1e-6) {
								t.Errorf("%s: row %d loss = %.10g; want %.10g", name, r, lf[r], lr[r])
							}
						}
						for i := range gf {
							// Reverse KL's gradient q*(log q - log p - KL) cancels in
							// float32: the golden tolerance (absolute 1e-6, relative
							// 1e-4 of the unscaled gradient; the scale here is 0.01).
							abs, rel := 1e-9, 1e-5
							if dir == Reverse {
								abs, rel = 1e-8, 1e-4
							}
							if !closeTo(float64(gf[i]), float64(gr[i]), abs, rel) {
								t.Fatalf("%s: grad[%d] = %.8g; want %.8g", name, i, gf[i], gr[i])
							}
						}
					}
				}
			}
		}
	}
}
