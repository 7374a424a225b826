package engine

import (
	"context"
	"errors"
	"math"
	"slices"
	"testing"

	"github.com/klring/klring/kernels"
	"github.com/klring/klring/lm"
	"github.com/klring/klring/loss"
	"github.com/klring/klring/shard"
)

func onPolicyEngine(t *testing.T, pool *kernels.Pool, m *lm.Model, data *shard.Dataset, frac float64, maxB int) *Engine {
	t.Helper()
	lo := loss.DefaultOptions()
	lo.Direction, lo.LabelSmoothing = loss.Reverse, 0.01
	e, err := New(Options{Loss: lo, Target: TargetSoft, MaxWindows: maxB,
		OnPolicy: OnPolicy{Fraction: frac, Prefix: 4, Temperature: 1, Seed: 7}}, m, data, pool)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// On-policy windows are chosen and sampled from (seed, step, window) alone:
// the same step gives the same samples and gradient, and a batch split in
// two (as between two workers) gives the same gradient sum as the whole.
func TestOnPolicyIsDeterministicAndSplitFree(t *testing.T) {
	pool := kernels.NewPool(1)
	data, err := shard.Open(shard.Options{Source: "synthetic", Ctx: 12, Tokens: 8192, Seed: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer data.Close()
	m, err := lm.New(lm.Config{Vocab: 64, Ctx: 12, NEmbd: 16, NLayer: 1, NHead: 2}, pool)
	if err != nil {
		t.Fatal(err)
	}
	m.Init(3)
	e := onPolicyEngine(t, pool, m, data, 0.5, 8)
	windows := []int32{3, 9, 14, 22, 31, 40, 47, 55}
	s1, err := e.Gradient(context.Background(), windows, 5)
	if err != nil {
		t.Fatal(err)
	}
	if len(e.rolled) == 0 || len(e.rolled) == len(windows) {
		t.Fatalf("%d of %d windows rolled out at fraction 0.5", len(e.rolled), len(windows))
	}
	g1 := slices.Clone(m.Grads)
	if s1.Tokens >= len(windows)*12 {
		t.Errorf("%d tokens counted; the rolled windows' prefix positions must not count", s1.Tokens)
	}
	s2, _ := e.Gradient(context.Background(), windows, 5)
	if s2 != s1 || !slices.Equal(g1, m.Grads) {
		t.Fatalf("the same step twice: %+v then %+v", s1, s2)
	}
	// Split in two halves, as two workers would.
	ga, _ := e.Gradient(context.Background(), windows[:4], 5)
	half := slices.Clone(m.Grads)
	gb, _ := e.Gradient(context.Background(), windows[4:], 5)
	if ga.Tokens+gb.Tokens != s1.Tokens || math.Abs(ga.Loss+gb.Loss-s1.Loss) > 1e-9*math.Abs(s1.Loss) {
		t.Errorf("halves: %d+%d tokens, loss %v+%v; whole: %d, %v", ga.Tokens, gb.Tokens, ga.Loss, gb.Loss, s1.Tokens, s1.Loss)
	}
	var worst float64
	for i := range g1 {
		worst = max(worst, math.Abs(float64(half[i]+m.Grads[i]-g1[i])))
	}
	if worst > 1e-5 {
		t.Errorf("halves' gradients sum to the whole's within %g; want 1e-5", worst)
	}
	// Another step samples other tokens.
	s3, _ := e.Gradient(context.Background(), windows, 6)
	if s3 == s1 {
		t.Error("step 6 gave the loss of step 5")
	}
}

// The exact reverse KL to the truth on the model's own samples is finite
// with smoothing and repeats with its seed.
func TestSampleKL(t *testing.T) {
	pool := kernels.NewPool(1)
	data, err := shard.Open(shard.Options{Source: "synthetic", Ctx: 12, Tokens: 8192, Seed: 2, ValFraction: 0.1})
	if err != nil {
		t.Fatal(err)
	}
	defer data.Close()
	m, _ := lm.New(lm.Config{Vocab: 64, Ctx: 12, NEmbd: 16, NLayer: 1, NHead: 2}, pool)
	m.Init(3)
	e := onPolicyEngine(t, pool, m, data, 0.5, 8)
	a, err := e.SampleKL(data.ValWindows(), 4, 1, 0.01, 9)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := e.SampleKL(data.ValWindows(), 4, 1, 0.01, 9)
	if !(a > 0) || math.IsInf(a, 0) || a != b {
		t.Errorf("SampleKL = %v then %v; want the same finite positive value", a, b)
	}
}

// A cancelled step stops: between passes and between the sampled tokens.
func TestGradientStopsWhenCancelled(t *testing.T) {
	pool := kernels.NewPool(1)
	data, err := shard.Open(shard.Options{Source: "synthetic", Ctx: 12, Tokens: 8192, Seed: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer data.Close()
	m, err := lm.New(lm.Config{Vocab: 64, Ctx: 12, NEmbd: 16, NLayer: 1, NHead: 2}, pool)
	if err != nil {
		t.Fatal(err)
	}
	m.Init(3)
	e := onPolicyEngine(t, pool, m, data, 1, 8)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := e.Gradient(ctx, []int32{1, 2, 3}, 1); !errors.Is(err, context.Canceled) {
		t.Errorf("Gradient with a cancelled context = %v; want context.Canceled", err)
	}
	// Cancelled while sampling: the rollout's first tokens see it.
	ctx, cancel = context.WithCancel(context.Background())
	calls := 0
	e.cancelHook = func() {
		if calls++; calls == 3 {
			cancel()
		}
	}
	if err := e.rollout(ctx, []int32{1, 2, 3}, 1); !errors.Is(err, context.Canceled) || calls != 3 {
		t.Errorf("rollout cancelled after 3 tokens = %v after %d tokens; want context.Canceled after 3", err, calls)
	}
}

// Windows sampled together (one forward pass over all of them per position)
// get exactly the tokens each gets when sampled alone: a worker's samples
// do not depend on which windows share its batch. Shapes of the tiny
// preset, where the matrix products run on the blocked kernels.
func TestSamplesDoNotDependOnTheBatch(t *testing.T) {
	pool := kernels.NewPool(2)
	data, err := shard.Open(shard.Options{Source: "synthetic:vocab=256", Ctx: 40, Tokens: 1 << 15, Seed: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer data.Close()
	m, err := lm.New(lm.Config{Vocab: 256, Ctx: 40, NEmbd: 128, NLayer: 2, NHead: 4}, pool)
	if err != nil {
		t.Fatal(err)
	}
	m.Init(3)
	e := onPolicyEngine(t, pool, m, data, 1, 7)
	windows := []int32{3, 9, 14, 22, 31, 40, 47}
	if err := e.load(windows); err != nil {
		t.Fatal(err)
	}
	T := e.T
	all := []int{0, 1, 2, 3, 4, 5, 6}
	if err := e.sample(context.Background(), windows, 9, all, 4, 1); err != nil {
		t.Fatal(err)
	}
	together := slices.Clone(e.roll)
	for i, b := range all {
		if err := e.sample(context.Background(), windows, 9, []int{b}, 4, 1); err != nil {
			t.Fatal(err)
		}
		if got, want := e.roll[:T+1], together[i*(T+1):(i+1)*(T+1)]; !slices.Equal(got, want) {
			t.Fatalf("window %d sampled alone: %v; with the others: %v", windows[b], got, want)
		}
	}
}
