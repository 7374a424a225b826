package lm

import (
	"fmt"
	"math"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/klring/klring/kernels"
)

// benchHead is lm's own cross-entropy head for benchmarks, fused with the
// softmax: per row one vectorised pass for the max, one for exp and its sum,
// one for the scaled gradient of the mean written over the logits; rows split
// over the pool.
type benchHead struct {
	targets []int32
	V       int
	scale   float32
	loss    []float64 // per row of the batch
	pool    *kernels.Pool
	logits  []float32 // the chunk being handled
	first   int
	n       int          // rows of the chunk
	next    atomic.Int64 // first row not claimed yet
	body    func(lo, hi int)
}

func newBenchHead(pool *kernels.Pool, targets []int32, V int, scale float32) *benchHead {
	h := &benchHead{targets: targets, V: V, scale: scale, loss: make([]float64, len(targets)), pool: pool}
	h.body = h.rows
	return h
}

func (h *benchHead) head(logits []float32, first, rows int) error {
	h.logits, h.first, h.n = logits, first, rows
	h.next.Store(0)
	h.pool.For(h.pool.Threads(), 1, h.body)
	h.logits = nil
	return nil
}

// rows handles rows of the chunk claimed 4 at a time, until none is left.
func (h *benchHead) rows(_, _ int) {
	for {
		lo := int(h.next.Add(4) - 4)
		if lo >= h.n {
			return
		}
		h.rowRange(lo, min(lo+4, h.n))
	}
}

func (h *benchHead) rowRange(lo, hi int) {
	for r := lo; r < hi; r++ {
		row := h.logits[r*h.V : (r+1)*h.V]
		tgt := h.targets[h.first+r]
		mx, _, _ := kernels.MaxMinSum(row)
		z := row[tgt] - mx
		var next []float32 // the next row, brought into cache meanwhile, as loss/ does
		if r+1 < h.n {
			next = h.logits[(r+1)*h.V : (r+2)*h.V]
		}
		s := kernels.ExpSumPrefetch(row, row, 1, mx, next)
		h.loss[h.first+r] = math.Log(s) - float64(z)
		kernels.ScaleShift(row, h.scale/float32(s), 0)
		row[tgt] -= h.scale
	}
}

// trainBench is one preset of BenchmarkTrainStep: the model, AdamW, a batch
// and its head, lm's own cross-entropy fused with the softmax: over a large
// vocabulary a BlockHead (BlockCE), each block of logits handled while in
// cache; otherwise a HeadFunc (benchHead), each row of the chunk's logits
// handled in one go while in cache, which is faster there.
type trainBench struct {
	cfg  Config
	B, T int
	pool *kernels.Pool
	m    *Model
	opt  *AdamW
	toks []int32
	bh   *BlockCE   // large vocabularies (headGroups > 1)
	h    *benchHead // otherwise
}

// trainPresets are the shapes of BenchmarkTrainStep: tiny with vocab 256 on
// 16 windows of 128 tokens, small with vocab 512 on 8 windows of 256, and
// tiny50k, tiny with GPT-2's vocabulary (50257) on 16 windows of 128, where
// the head and the loss dominate, and tiny50k-pad64, the same with wte padded
// to 50304 rows as llm.c pads it (Config.VocabPad 64).
var trainPresets = []struct {
	name, preset  string
	vocab, B, pad int
}{{"tiny", "tiny", 256, 16, 0}, {"small", "small", 512, 8, 0}, {"tiny50k", "tiny", 50257, 16, 0}, {"tiny50k-pad64", "tiny", 50257, 16, 64}}

func newTrainBench(b *testing.B, preset string, vocab, B, pad int) *trainBench {
	cfg, err := Preset(preset)
	if err != nil {
		b.Fatal(err)
	}
	cfg.Vocab, cfg.VocabPad = vocab, pad
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
	T := cfg.Ctx
	r := NewRNG(2)
	toks, tgts := randTokens(r, B*T, cfg.Vocab), randTokens(r, B*T, cfg.Vocab)
	tb := &trainBench{cfg: cfg, B: B, T: T, pool: pool, m: m, opt: opt, toks: toks}
	if HeadBlocked(cfg.Vocab) {
		tb.bh = NewBlockCE(cfg.Vocab, B*T, -100)
		tb.bh.Start(tgts, 1/float32(B*T))
	} else {
		tb.h = newBenchHead(pool, tgts, cfg.Vocab, 1/float32(B*T))
	}
	return tb
}

// step is one training step: zero grad, forward, head, backward, the clip
// folded into AdamW.
func (tb *trainBench) step(b *testing.B) {
	m := tb.m
	if m.timer != nil {
		m.timer.start()
	}
	m.ZeroGrad()
	m.tick(opZeroGrad)
	var err error
	if tb.bh != nil {
		err = m.ForwardBackwardBlocks(tb.toks, tb.B, tb.T, tb.bh, nil)
	} else {
		err = m.ForwardBackward(tb.toks, tb.B, tb.T, tb.h.head)
	}
	if err != nil {
		b.Fatal(err)
	}
	tb.opt.StepClip(m.Params, m.Grads, 1e-4, 1)
	m.tick(opOptimizer)
}

// BenchmarkTrainStep times one training step (zero grad, forward, the
// cross-entropy head, backward, clip + AdamW) of the presets (trainPresets)
// on a pool of GOMAXPROCS threads (-cpu 1 or -cpu 2: one value per go test
// run, since with a list go test 1.26 runs the first value's sub-benchmarks
// under the list's last GOMAXPROCS; the threads metric says what ran), and
// reports tokens/s (mean
// step) and tokens/s-p50 (median step), GFLOP/s (Config.TrainFLOPs), the
// median GFLOP/s of a 1024^3 Sgemm on the same pool right after
// (gemm-GFLOP/s) and MFU-p50, the median step's GFLOP/s against it.
func BenchmarkTrainStep(b *testing.B) {
	for _, c := range trainPresets {
		b.Run(c.name, func(b *testing.B) {
			tb := newTrainBench(b, c.preset, c.vocab, c.B, c.pad)
			tb.step(b) // the arena
			var steps []time.Duration
			b.ResetTimer()
			cpu0 := processCPU()
			for b.Loop() {
				t0 := time.Now()
				tb.step(b)
				steps = append(steps, time.Since(t0))
			}
			sec := b.Elapsed().Seconds() / float64(b.N)
			if cpu := processCPU() - cpu0; cpu > 0 {
				// Tokens per CPU-second of the process: how fast the code
				// runs while it has a core, whatever the load.
				b.ReportMetric(float64(tb.B*tb.T*b.N)/cpu.Seconds(), "tokens/cpu-s")
			}
			// The median step, as torch_gpt.py reports it: on a shared
			// machine the mean also counts the steps other processes
			// interrupted.
			slices.Sort(steps)
			p50 := steps[len(steps)/2].Seconds()
			flops := tb.cfg.TrainFLOPs(tb.B, tb.T)
			peak := tb.pool.PeakGFLOPs()
			b.ReportMetric(float64(tb.B*tb.T)/sec, "tokens/s")
			b.ReportMetric(float64(tb.B*tb.T)/p50, "tokens/s-p50")
			b.ReportMetric(flops/sec/1e9, "GFLOP/s")
			b.ReportMetric(peak, "gemm-GFLOP/s")
			b.ReportMetric(flops/p50/1e9/peak, "MFU-p50")
			b.ReportMetric(float64(tb.pool.Threads()), "threads")
		})
	}
}

// BenchmarkTrainStepOps is BenchmarkTrainStep with per-op wall-clock timers
// in the model: it reports, per step, the milliseconds of each op of the
// breakdown (opNames; every layer's share summed), and ms/step in total.
func BenchmarkTrainStepOps(b *testing.B) {
	for _, c := range trainPresets {
		b.Run(c.name, func(b *testing.B) {
			tb := newTrainBench(b, c.preset, c.vocab, c.B, c.pad)
			tb.step(b)
			tb.m.timer = &opTimer{}
			b.ResetTimer()
			for b.Loop() {
				tb.step(b)
			}
			var total time.Duration
			for i, d := range tb.m.timer.d {
				total += d
				b.ReportMetric(float64(d.Microseconds())/1e3/float64(b.N), opNames[i]+"-ms")
			}
			b.ReportMetric(float64(total.Microseconds())/1e3/float64(b.N), "step-ms")
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
			cpu0 := processCPU()
			for b.Loop() {
				attentionForward(r, out, lse, scratch, qkv, c.B, c.T, c.C, c.NH)
			}
			b.ReportMetric(flops*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
			b.ReportMetric(flops*float64(b.N)/(processCPU()-cpu0).Seconds()/1e9, "GFLOP/cpu-s")
		})
		b.Run(c.name+"/bwd", func(b *testing.B) {
			cpu0 := processCPU()
			for b.Loop() {
				attentionBackward(r, dqkv, scratch, out, qkv, lse, c.B, c.T, c.C, c.NH)
			}
			b.ReportMetric(2*flops*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
			b.ReportMetric(2*flops*float64(b.N)/(processCPU()-cpu0).Seconds()/1e9, "GFLOP/cpu-s")
		})
	}
}
