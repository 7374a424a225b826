package lm

import (
	"errors"
	"math"
	"testing"

	"github.com/klring/klring/kernels"
)

// TestAdamWMatchesFormula compares three steps of AdamW with the formula of
// torch.optim.AdamW evaluated in float64, on a decaying and a non-decaying
// tensor.
func TestAdamWMatchesFormula(t *testing.T) {
	layout := []Tensor{
		{Name: "w", Shape: []int{2, 2}, Offset: 0, Size: 4, Decay: true},
		{Name: "b", Shape: []int{3}, Offset: 4, Size: 3},
	}
	opts := AdamWOptions{Beta1: 0.9, Beta2: 0.95, Eps: 1e-8, WeightDecay: 0.1}
	o, err := NewAdamW(layout, opts, kernels.NewPool(2))
	if err != nil {
		t.Fatal(err)
	}
	params := []float32{1, -2, 0.5, 3, 1, -1, 0.25}
	ref := make([]float64, len(params))
	for i, p := range params {
		ref[i] = float64(p)
	}
	m, v := make([]float64, len(params)), make([]float64, len(params))
	grads := [][]float32{{0.1, -0.2, 0.3, 0, 1, 2, -3}, {0.5, 0.5, -0.5, 1, 0, -1, 1}, {-1, 2, 0.1, 0.2, 0.3, 0.4, 0.5}}
	lr := 0.01
	for s, g := range grads {
		o.Step(params, g, lr)
		t1 := float64(s + 1)
		for i := range ref {
			gi := float64(g[i])
			if layout[0].Offset <= i && i < layout[0].Size {
				ref[i] *= 1 - lr*opts.WeightDecay
			}
			m[i] = opts.Beta1*m[i] + (1-opts.Beta1)*gi
			v[i] = opts.Beta2*v[i] + (1-opts.Beta2)*gi*gi
			mh, vh := m[i]/(1-math.Pow(opts.Beta1, t1)), v[i]/(1-math.Pow(opts.Beta2, t1))
			ref[i] -= lr * mh / (math.Sqrt(vh) + opts.Eps)
		}
		for i := range ref {
			if d := math.Abs(float64(params[i]) - ref[i]); d > 1e-6*(1+math.Abs(ref[i])) {
				t.Errorf("step %d: AdamW param[%d] = %.9g; want %.9g", s+1, i, params[i], ref[i])
			}
		}
	}
	if o.State.T != 3 {
		t.Errorf("State.T = %d; want 3", o.State.T)
	}
}

func TestAdamWNoDecayOnBiasesAndLayerNorm(t *testing.T) {
	cfg := Config{Vocab: 10, NEmbd: 4, NLayer: 1, NHead: 1, Ctx: 4}
	m, _ := New(cfg, kernels.NewPool(1))
	m.Init(1)
	before := append([]float32(nil), m.Params...)
	o, _ := NewAdamW(m.Layout(), AdamWOptions{Beta1: 0.9, Beta2: 0.95, Eps: 1e-8, WeightDecay: 0.5}, kernels.NewPool(1))
	o.Step(m.Params, m.Grads, 0.1) // zero gradient: only the decay moves anything
	for _, ten := range m.layout {
		for i, p := range ten.View(m.Params) {
			b := ten.View(before)[i]
			want := b
			if ten.Decay {
				want = b * float32(1-0.1*0.5)
			}
			if p != want {
				t.Fatalf("%s[%d] = %g after a zero-gradient step; want %g (decay %v)", ten.Name, i, p, want, ten.Decay)
			}
		}
	}
}

func TestAdamWOptionsValidate(t *testing.T) {
	for _, c := range []struct {
		name string
		o    AdamWOptions
	}{
		{"beta1 1", AdamWOptions{Beta1: 1, Beta2: 0.9, Eps: 1e-8}},
		{"beta2 negative", AdamWOptions{Beta1: 0.9, Beta2: -0.1, Eps: 1e-8}},
		{"eps 0", AdamWOptions{Beta1: 0.9, Beta2: 0.9}},
		{"wd NaN", AdamWOptions{Beta1: 0.9, Beta2: 0.9, Eps: 1e-8, WeightDecay: math.NaN()}},
	} {
		if err := c.o.Validate(); !errors.Is(err, ErrOptimizer) {
			t.Errorf("%s: Validate(%+v) = %v; want ErrOptimizer", c.name, c.o, err)
		}
	}
	if err := DefaultAdamWOptions().Validate(); err != nil {
		t.Errorf("DefaultAdamWOptions().Validate() = %v", err)
	}
}

func TestSGD(t *testing.T) {
	p := []float32{1, 2, 3}
	g := []float32{0.5, -1, 0, 99, 99} // trailing slots ignored
	NewSGD(kernels.NewPool(1)).Step(p, g, 0.1)
	want := []float32{1 - 0.05, 2 + 0.1, 3}
	for i := range p {
		if p[i] != want[i] {
			t.Errorf("SGD param[%d] = %g; want %g", i, p[i], want[i])
		}
	}
}

func TestClipGradNorm(t *testing.T) {
	for _, c := range []struct {
		in       []float32
		max      float64
		wantNorm float64
		want     []float32
	}{
		{[]float32{3, 4}, 10, 5, []float32{3, 4}},
		{[]float32{3, 4}, 1, 5, []float32{0.6, 0.8}},
		{[]float32{3, 4}, 0, 5, []float32{3, 4}},
		{[]float32{0, 0}, 1, 0, []float32{0, 0}},
	} {
		g := append([]float32(nil), c.in...)
		norm := ClipGradNorm(g, c.max)
		if norm != c.wantNorm {
			t.Errorf("ClipGradNorm(%v, %g) = %g; want %g", c.in, c.max, norm, c.wantNorm)
		}
		for i := range g {
			if math.Abs(float64(g[i]-c.want[i])) > 1e-6 {
				t.Errorf("ClipGradNorm(%v, %g) left %v; want %v", c.in, c.max, g, c.want)
				break
			}
		}
	}
	g := []float32{float32(math.Inf(1)), 1}
	if n := ClipGradNorm(g, 1); !math.IsInf(n, 1) || g[1] != 1 {
		t.Errorf("ClipGradNorm(+Inf) = %g, left %v; want +Inf and grads untouched", n, g)
	}
}

func TestSchedule(t *testing.T) {
	cos := Schedule{Kind: "cosine", Base: 1, Min: 0.1, WarmupSteps: 10, TotalSteps: 110}
	con := Schedule{Kind: "constant", Base: 0.5, WarmupSteps: 4}
	for _, c := range []struct {
		s    Schedule
		step int64
		want float64
	}{
		{cos, 0, 0.1}, {cos, 4, 0.5}, {cos, 9, 1}, {cos, 10, 1},
		{cos, 60, 0.55}, {cos, 110, 0.1}, {cos, 1000, 0.1},
		{con, 0, 0.125}, {con, 3, 0.5}, {con, 100, 0.5},
		{Schedule{Base: 2}, 0, 2},
	} {
		if got := c.s.LR(c.step); math.Abs(got-c.want) > 1e-12 {
			t.Errorf("%+v.LR(%d) = %g; want %g", c.s, c.step, got, c.want)
		}
	}
	for _, s := range []Schedule{
		{Kind: "linear", Base: 1},
		{Base: 0},
		{Base: 1, WarmupSteps: -1},
		{Kind: "cosine", Base: 1, Min: 2, TotalSteps: 10},
		{Kind: "cosine", Base: 1, WarmupSteps: 10, TotalSteps: 10},
	} {
		if err := s.Validate(); !errors.Is(err, ErrSchedule) {
			t.Errorf("%+v.Validate() = %v; want ErrSchedule", s, err)
		}
	}
	if err := cos.Validate(); err != nil {
		t.Errorf("%+v.Validate() = %v", cos, err)
	}
}

func TestRNG(t *testing.T) {
	a, b := NewRNG(3), NewRNG(3)
	for range 10 {
		if a.Uint64() != b.Uint64() {
			t.Fatal("two RNGs with one seed diverged")
		}
	}
	r := NewRNG(1)
	var s, s2 float64
	const n = 100000
	for range n {
		x := r.NormFloat64()
		s += x
		s2 += x * x
	}
	if mean, v := s/n, s2/n; math.Abs(mean) > 0.02 || math.Abs(v-1) > 0.02 {
		t.Errorf("NormFloat64: mean %g variance %g; want 0 and 1", mean, v)
	}
}
