package engine

import (
	"context"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/klring/klring/kernels"
	"github.com/klring/klring/lm"
	"github.com/klring/klring/loss"
	"github.com/klring/klring/shard"
	"github.com/klring/klring/teacherstore"
)

// BenchmarkStep times one training step of the tiny model (vocabulary 256,
// 16 windows of 128 tokens: BenchmarkTrainStep/tiny's shape) through the
// engine, gradient and clipped AdamW, on a pool of GOMAXPROCS threads:
// plain training on the next tokens, and distillation from a tiny teacher
// (its forward pass included) with its full distribution at T = 2, with
// its top 32, and from a float16 store of its top 32. It reports tokens/s
// (mean step) and tokens/s-p50 (median step).
func BenchmarkStep(b *testing.B) {
	const B = 16
	pool := kernels.NewPool(0)
	data, err := shard.Open(shard.Options{Source: "synthetic:vocab=256", Ctx: 128, Tokens: 1 << 18, Seed: 1})
	if err != nil {
		b.Fatal(err)
	}
	defer data.Close()
	cfg, _ := lm.Preset("tiny")
	cfg.Vocab = 256
	teacher, err := lm.New(cfg, pool)
	if err != nil {
		b.Fatal(err)
	}
	teacher.Init(7)
	inf, err := lm.NewInference(cfg, teacher.Params, pool)
	if err != nil {
		b.Fatal(err)
	}
	var store *teacherstore.Store
	storeOf := func(b *testing.B) *teacherstore.Store {
		if store == nil {
			path := filepath.Join(b.TempDir(), "teacher.topk")
			_, err := teacherstore.Dump(context.Background(), path, inf, data, teacherstore.DumpOptions{K: 32, Dtype: teacherstore.Float16,
				Temperature: 2, TeacherSHA256: strings.Repeat("0", 64), Pool: pool})
			if err != nil {
				b.Fatal(err)
			}
			if store, err = teacherstore.Open(path); err != nil {
				b.Fatal(err)
			}
		}
		return store
	}
	defer func() {
		if store != nil {
			store.Close()
		}
	}()
	kd := loss.DefaultOptions()
	kd.Temperature, kd.ScaleT2 = 2, true
	top := kd
	top.TeacherTopK = 32
	for _, c := range []struct {
		name string
		opts func(b *testing.B) Options
	}{
		{"plain", func(*testing.B) Options { return Options{Loss: loss.DefaultOptions(), Target: TargetHard} }},
		{"distill", func(*testing.B) Options { return Options{Loss: kd, Target: TargetTeacher, Teacher: inf} }},
		{"distill-top32", func(*testing.B) Options { return Options{Loss: top, Target: TargetTeacher, Teacher: inf} }},
		{"store-top32", func(b *testing.B) Options { return Options{Loss: kd, Target: TargetTeacher, Store: storeOf(b)} }},
	} {
		b.Run(c.name, func(b *testing.B) {
			m, err := lm.New(cfg, pool)
			if err != nil {
				b.Fatal(err)
			}
			m.Init(1)
			opt, err := lm.NewAdamW(m.Layout(), lm.DefaultAdamWOptions(), pool)
			if err != nil {
				b.Fatal(err)
			}
			o := c.opts(b)
			o.MaxWindows = B
			e, err := New(o, m, data, pool)
			if err != nil {
				b.Fatal(err)
			}
			benchSteps(b, e, opt, data, B)
		})
	}
}

// BenchmarkStepGPT2Vocab is BenchmarkStep's plain training with GPT-2's
// vocabulary (50257): the next-token cross-entropy block by block (lm.BlockCE,
// the engine's choice there) and on whole rows of logits through the loss
// package (rows), for comparison.
func BenchmarkStepGPT2Vocab(b *testing.B) {
	const B = 16
	pool := kernels.NewPool(0)
	data, err := shard.Open(shard.Options{Source: "synthetic", Vocab: 50257, Ctx: 128, Tokens: 1 << 16, Seed: 1})
	if err != nil {
		b.Fatal(err)
	}
	defer data.Close()
	cfg, _ := lm.Preset("tiny")
	cfg.Vocab = 50257
	for _, blocks := range []bool{true, false} {
		name := map[bool]string{true: "blocks", false: "rows"}[blocks]
		b.Run(name, func(b *testing.B) {
			m, err := lm.New(cfg, pool)
			if err != nil {
				b.Fatal(err)
			}
			m.Init(1)
			opt, err := lm.NewAdamW(m.Layout(), lm.DefaultAdamWOptions(), pool)
			if err != nil {
				b.Fatal(err)
			}
			e, err := New(Options{Loss: loss.DefaultOptions(), Target: TargetHard, MaxWindows: B}, m, data, pool)
			if err != nil {
				b.Fatal(err)
			}
			if !blocks {
				e.blockCE = nil
			}
			benchSteps(b, e, opt, data, B)
		})
	}
}

// benchSteps times training steps of e (B windows of the training set,
// then clipped AdamW) and reports tokens/s (mean step) and tokens/s-p50
// (median step).
func benchSteps(b *testing.B, e *Engine, opt *lm.AdamW, data *shard.Dataset, B int) {
	m := e.Model()
	windows := make([]int32, B)
	step := func(s uint64) {
		for i := range windows {
			windows[i] = int32((int(s)*B + i) % data.NumTrain())
		}
		if _, err := e.Gradient(context.Background(), windows, s); err != nil {
			b.Fatal(err)
		}
		opt.StepClip(m.Params, m.Grads, 1e-4, 1)
	}
	step(0) // buffers
	var steps []time.Duration
	b.ResetTimer()
	s := uint64(1)
	for b.Loop() {
		t0 := time.Now()
		step(s)
		steps = append(steps, time.Since(t0))
		s++
	}
	slices.Sort(steps)
	tokens := float64(B * m.Config.Ctx)
	b.ReportMetric(tokens/(b.Elapsed().Seconds()/float64(b.N)), "tokens/s")
	b.ReportMetric(tokens/steps[len(steps)/2].Seconds(), "tokens/s-p50")
}
