package engine

import (
	"context"
	"math"
	"testing"

	"github.com/klring/klring/kernels"
	"github.com/klring/klring/lm"
	"github.com/klring/klring/loss"
	"github.com/klring/klring/shard"
)

// GradientReady in micro-batches: ready is called only during the last
// pass, with lo falling to 0, the final totals from the first call on, and
// gradients that are final when it says so; the gradient is Gradient's.
func TestGradientReadyLastPass(t *testing.T) {
	pool := kernels.NewPool(2)
	data, err := shard.Open(shard.Options{Source: "synthetic", Ctx: 12, Tokens: 8192, Seed: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer data.Close()
	cfg := lm.Config{Vocab: 64, Ctx: 12, NEmbd: 16, NLayer: 2, NHead: 2}
	windows := []int32{3, 9, 14, 22, 31, 40, 47}
	engine := func() (*Engine, *lm.Model) {
		m, err := lm.New(cfg, pool)
		if err != nil {
			t.Fatal(err)
		}
		m.Init(3)
		e, err := New(Options{Loss: loss.DefaultOptions(), Target: TargetHard, MaxWindows: 3}, m, data, pool)
		if err != nil {
			t.Fatal(err)
		}
		return e, m
	}
	e, m := engine()
	want, err := e.Gradient(context.Background(), windows, 5)
	if err != nil {
		t.Fatal(err)
	}
	wantG := append([]float32(nil), m.Grads[:cfg.NumParams()]...)

	e, m = engine()
	N := cfg.NumParams()
	type call struct {
		lo int
		s  Sums
		g  []float32
	}
	var calls []call
	got, err := e.GradientReady(context.Background(), windows, 5, func(lo int, s Sums) {
		calls = append(calls, call{lo, s, append([]float32(nil), m.Grads[lo:N]...)})
	})
	if err != nil {
		t.Fatal(err)
	}
	if got != want {
		t.Fatalf("sums %+v; Gradient's %+v", got, want)
	}
	if len(calls) != 3*cfg.NLayer+2 || calls[len(calls)-1].lo != 0 {
		t.Fatalf("%d calls, the last at %d; want %d (ln_f, three per block, the embeddings: one pass only), the last at 0", len(calls), calls[len(calls)-1].lo, 3*cfg.NLayer+2)
	}
	for i, c := range calls {
		if c.s != want || i > 0 && c.lo >= calls[i-1].lo {
			t.Fatalf("call %d: lo %d, sums %+v; want lo falling, the final sums %+v", i, c.lo, c.s, want)
		}
		for j, v := range c.g {
			if math.Float32bits(v) != math.Float32bits(m.Grads[c.lo+j]) {
				t.Fatalf("call %d (lo %d): grad[%d] = %v when ready, %v at the end", i, c.lo, c.lo+j, v, m.Grads[c.lo+j])
			}
		}
	}
	for i := range wantG {
		if math.Float32bits(m.Grads[i]) != math.Float32bits(wantG[i]) {
			t.Fatalf("grad[%d] = %v; Gradient's %v", i, m.Grads[i], wantG[i])
		}
	}
}
