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

// TestBlockCEMatchesLossPackage: over a large vocabulary the engine's
// training passes take the cross-entropy block by block (lm.BlockCE); the sums
// and the gradient are the loss package's on whole rows of logits (the
// engine with blockCE off), in passes of at most MaxWindows windows, with
// and without rows ignored (IgnoreIndex set to a token the data holds); and
// ready, during the last pass's backward, sees the call's final totals.
func TestBlockCEMatchesLossPackage(t *testing.T) {
	const V = 16*lm.HeadVocabBlock + 300
	pool := kernels.NewPool(2)
	data, err := shard.Open(shard.Options{Source: "synthetic", Ctx: 12, Tokens: 4096, Vocab: V, Seed: 3})
	if err != nil {
		t.Fatal(err)
	}
	defer data.Close()
	win := make([]int32, 13)
	data.Window(0, win)
	windows := []int32{0, 1, 2, 3, 4}
	for _, ignore := range []int32{-100, win[1]} {
		opts := loss.DefaultOptions()
		opts.IgnoreIndex = ignore
		run := func(block bool) (Sums, []float32) {
			m, err := lm.New(lm.Config{Vocab: V, Ctx: 12, NEmbd: 16, NLayer: 1, NHead: 2}, pool)
			if err != nil {
				t.Fatal(err)
			}
			m.Init(4)
			e, err := New(Options{Loss: opts, Target: TargetHard, MaxWindows: 2}, m, data, pool)
			if err != nil {
				t.Fatal(err)
			}
			if e.blockCE == nil {
				t.Fatalf("vocabulary %d, hard target, default options: the engine does not take the loss block by block", V)
			}
			if !block {
				e.blockCE = nil
			}
			// ready sees the call's totals, final from its first call on.
			var seen []Sums
			s, err := e.GradientReady(context.Background(), windows, 1, func(_ int, s Sums) { seen = append(seen, s) })
			if err != nil {
				t.Fatal(err)
			}
			if len(seen) == 0 {
				t.Fatalf("block %v, ignore %d: ready never called", block, ignore)
			}
			if seen[0] != s {
				t.Fatalf("block %v, ignore %d: ready's first call saw %+v; the call's totals are %+v", block, ignore, seen[0], s)
			}
			return s, append([]float32(nil), m.Grads...)
		}
		got, g := run(true)
		want, w := run(false)
		if got.Tokens != want.Tokens || (ignore >= 0 && got.Tokens == len(windows)*12) {
			t.Fatalf("ignore %d: %d tokens block by block, %d on whole rows (of %d)", ignore, got.Tokens, want.Tokens, len(windows)*12)
		}
		for _, c := range []struct {
			name      string
			got, want float64
		}{{"Loss", got.Loss, want.Loss}, {"CE", got.CE, want.CE}, {"Div", got.Div, want.Div}, {"Kept", got.Kept, want.Kept}} {
			if math.Abs(c.got-c.want) > 1e-6*math.Abs(c.want) {
				t.Errorf("ignore %d: %s = %.9g block by block; %.9g on whole rows", ignore, c.name, c.got, c.want)
			}
		}
		var diff, norm float64
		for i := range g {
			d := float64(g[i] - w[i])
			diff += d * d
			norm += float64(w[i]) * float64(w[i])
		}
		if norm == 0 || math.Sqrt(diff) > 1e-5*math.Sqrt(norm) {
			t.Errorf("ignore %d: |gradient block by block - on whole rows| = %.3g of its norm %.3g", ignore, math.Sqrt(diff/norm), math.Sqrt(norm))
		}
	}
}

// TestUseBlockCE: only the plain cross-entropy of the next tokens over a
// large vocabulary is taken block by block.
func TestUseBlockCE(t *testing.T) {
	plain := Options{Loss: loss.DefaultOptions(), Target: TargetHard}
	if !useBlockCE(plain, 50257) || useBlockCE(plain, 1000) {
		t.Fatal("plain cross-entropy: want block by block over 50257 tokens, not over 1000")
	}
	for name, change := range map[string]func(o *Options){
		"temperature":     func(o *Options) { o.Loss.Temperature = 2 },
		"label smoothing": func(o *Options) { o.Loss.LabelSmoothing = 0.1 },
		"soft target":     func(o *Options) { o.Target = TargetSoft },
		"teacher":         func(o *Options) { o.Target = TargetTeacher },
		"on-policy":       func(o *Options) { o.OnPolicy.Fraction = 0.5 },
		"reverse":         func(o *Options) { o.Loss.Direction = loss.Reverse },
	} {
		o := plain
		change(&o)
		if useBlockCE(o, 50257) {
			t.Errorf("%s: the loss package's path wanted", name)
		}
	}
}
