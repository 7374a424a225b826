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

// A step computed in micro-batches (passes of at most MaxWindows windows)
// equals the step computed in one pass: the same loss sums and token count,
// and the gradient to 1e-6 of its norm, for each kind of target; the
// activations are sized for a micro-batch.
func TestMicroBatchesEqualOnePass(t *testing.T) {
	pool := kernels.NewPool(2)
	data, err := shard.Open(shard.Options{Source: "synthetic", Ctx: 12, Tokens: 8192, Seed: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer data.Close()
	cfg := lm.Config{Vocab: 64, Ctx: 12, NEmbd: 16, NLayer: 2, NHead: 2}
	windows := []int32{3, 9, 14, 22, 31, 40, 47, 55}
	for _, tc := range []struct {
		name   string
		target Target
		policy OnPolicy
	}{
		{"hard", TargetHard, OnPolicy{}},
		{"soft", TargetSoft, OnPolicy{}},
		{"soft on-policy", TargetSoft, OnPolicy{Fraction: 0.5, Prefix: 4, Temperature: 1, Seed: 7}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			grad := func(maxB int) (Sums, []float32, int) {
				m, err := lm.New(cfg, pool)
				if err != nil {
					t.Fatal(err)
				}
				m.Init(3)
				e, err := New(Options{Loss: loss.DefaultOptions(), Target: tc.target, MaxWindows: maxB, OnPolicy: tc.policy}, m, data, pool)
				if err != nil {
					t.Fatal(err)
				}
				s, err := e.Gradient(context.Background(), windows, 5)
				if err != nil {
					t.Fatal(err)
				}
				return s, m.Grads, m.ArenaBytes()
			}
			s1, g1, arena1 := grad(len(windows))
			for _, micro := range []int{1, 3} {
				s, g, arena := grad(micro)
				if arena >= arena1 {
					t.Errorf("micro-batches of %d: activations of %d bytes; one pass %d", micro, arena, arena1)
				}
				if s.Tokens != s1.Tokens || math.Abs(s.Loss-s1.Loss) > 1e-9*math.Abs(s1.Loss) || math.Abs(s.CE-s1.CE) > 1e-9*math.Abs(s1.CE) {
					t.Fatalf("micro-batches of %d: sums %+v; one pass %+v", micro, s, s1)
				}
				var norm, diff float64
				for i := range g1 {
					norm += float64(g1[i]) * float64(g1[i])
					d := float64(g[i] - g1[i])
					diff += d * d
				}
				if norm == 0 || math.Sqrt(diff) > 1e-6*math.Sqrt(norm) {
					t.Fatalf("micro-batches of %d: gradient differs by %g of its norm %g", micro, math.Sqrt(diff/norm), math.Sqrt(norm))
				}
			}
		})
	}
}
