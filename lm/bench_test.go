package lm

import (
	"fmt"
	"math"
	"testing"

	"github.com/klring/klring/kernels"
)

// benchHead is a fused cross-entropy head for benchmarks: one pass of exp32
// per logit, the gradient of the mean written over the logits.
type benchHead struct {
	targets []int32
	V       int
	scale   float32
	sum     float64
}

func (h *benchHead) head(logits []float32, first, rows int) error {
	for r := 0; r < rows; r++ {
		row := logits[r*h.V : (r+1)*h.V]
		mx := row[0]
		for _, v := range row {
			mx = max(mx, v)
		}
		var s float32
		for j, v := range row {
			e := exp32(v - mx)
			row[j] = e
			s += e
		}
		tgt := h.targets[first+r]
		h.sum += math.Log(float64(s)) - math.Log(float64(row[tgt]))
		k := h.scale / s
		for j := range row {
			row[j] *= k
		}
		row[tgt] -= h.scale
	}
	return nil
}

// BenchmarkTrainStep times one training step (zero grad, forward, the
// cross-entropy head, backward, AdamW) of the presets: tiny with vocab 256 on
// 16 windows of 128 tokens, small with vocab 512 on 8 windows of 256.
func BenchmarkTrainStep(b *testing.B) {
	for _, c := range []struct {
		preset   string
		vocab, B int
	}{{"tiny", 256, 16}, {"small", 512, 8}} {
		b.Run(c.preset, func(b *testing.B) {
			cfg, err := Preset(c.preset)
			if err != nil {
				b.Fatal(err)
			}
			cfg.Vocab = c.vocab
			pool := kernels.NewPool(0)
			m, err := New(cfg, pool)
			if err != nil {
				b.Fatal(err)
			}
			m.Init(1)
			opt, err := NewAdamW(m.Layout(), DefaultAdamWOptions(), pool)
			if err != nil {
				b.Fatal(err)
			}
			B, T := c.B, cfg.Ctx
			r := NewRNG(2)
			toks, tgts := randTokens(r, B*T, cfg.Vocab), randTokens(r, B*T, cfg.Vocab)
			h := &benchHead{targets: tgts, V: cfg.Vocab, scale: 1 / float32(B*T)}
			step := func() {
				m.ZeroGrad()
				if err := m.ForwardBackward(toks, B, T, h.head); err != nil {
					b.Fatal(err)
				}
				ClipGradNorm(m.Grads, 1)
				opt.Step(m.Params, m.Grads, 1e-4)
			}
			step() // the arena
			b.ResetTimer()
			for b.Loop() {
				step()
			}
			sec := b.Elapsed().Seconds() / float64(b.N)
			b.ReportMetric(float64(B*T)/sec, "tokens/s")
			b.ReportMetric(cfg.TrainFLOPs(B, T)/sec/1e9, "GFLOP/s")
		})
	}
}

// BenchmarkMatMul times the model's GEMMs (through Pool.Sgemm, as the model
// calls them) at the shapes of the training benchmark: forward out = in @ W^T,
// backward dinp = dout @ W and dW = dout^T @ in. Names give the forward
// shape N x OC x C; every pass does the same 2*N*OC*C flops.
func BenchmarkMatMul(b *testing.B) {
	pool := kernels.NewPool(0)
	for _, c := range []struct {
		preset string
		N, C   int
		V      int
	}{{"tiny", 16 * 128, 128, 256}, {"small", 8 * 256, 256, 512}} {
		for _, l := range []struct {
			name     string
			inC, out int
		}{
			{"qkv", c.C, 3 * c.C}, {"attproj", c.C, c.C}, {"fc", c.C, 4 * c.C}, {"fcproj", 4 * c.C, c.C}, {"head", c.C, c.V},
		} {
			N, C, OC := c.N, l.inC, l.out
			inp, w, out := make([]float32, N*C), make([]float32, OC*C), make([]float32, N*OC)
			r := NewRNG(1)
			for i := range inp {
				inp[i] = float32(r.NormFloat64())
			}
			for i := range w {
				w[i] = float32(r.NormFloat64())
			}
			flops := 2 * float64(N) * float64(C) * float64(OC)
			for _, pass := range []struct {
				name string
				run  func()
			}{
				{"fwd", func() { pool.Sgemm(false, true, N, OC, C, 1, inp, C, w, C, 0, out, OC) }},
				{"dinp", func() { pool.Sgemm(false, false, N, C, OC, 1, out, OC, w, C, 0, inp, C) }},
				{"dweight", func() { pool.Sgemm(true, false, OC, C, N, 1, out, OC, inp, C, 1, w, C) }},
			} {
				b.Run(fmt.Sprintf("%s/%s/%s/%dx%dx%d", c.preset, l.name, pass.name, N, OC, C), func(b *testing.B) {
					for b.Loop() {
						pass.run()
					}
					b.ReportMetric(flops*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
				})
			}
		}
	}
}

// BenchmarkAttention times attention forward and backward at the shapes of
// BenchmarkTrainStep (one layer).
func BenchmarkAttention(b *testing.B) {
	for _, c := range []struct {
		name        string
		B, T, C, NH int
	}{{"tiny", 16, 128, 128, 4}, {"small", 8, 256, 256, 8}} {
		r := newRunner(kernels.NewPool(0))
		rng := NewRNG(1)
		qkv := randVec(rng, c.B*c.T*3*c.C, 1)
		out, lse := make([]float32, c.B*c.T*c.C), make([]float32, c.B*c.NH*c.T)
		dqkv := make([]float32, len(qkv))
		scratch := make([]float32, r.pool.Threads()*attnScratch(c.T))
		flops := float64(c.B) * 4 * float64(c.C) * float64(c.T*(c.T+1)/2)
		b.Run(c.name+"/fwd", func(b *testing.B) {
			for b.Loop() {
				attentionForward(r, out, lse, scratch, qkv, c.B, c.T, c.C, c.NH)
			}
			b.ReportMetric(flops*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
		})
		b.Run(c.name+"/bwd", func(b *testing.B) {
			for b.Loop() {
				attentionBackward(r, dqkv, scratch, out, qkv, lse, c.B, c.T, c.C, c.NH)
			}
			b.ReportMetric(2*flops*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
		})
	}
}
