package kernels

import (
	"fmt"
	"slices"
	"testing"
	"time"
)

// benchGemm times one Sgemm shape on a Pool of the given threads and reports GFLOP/s.
func benchGemm(b *testing.B, threads int, tA, tB bool, m, n, k int) {
	benchGemmKernel(b, nil, threads, tA, tB, m, n, k)
}

// benchGemmKernel is benchGemm with the given micro-kernel (nil: the CPU's best).
func benchGemmKernel(b *testing.B, kern *microKernel, threads int, tA, tB bool, m, n, k int) {
	p := NewPool(threads)
	if kern != nil {
		p.kern, p.useGonum = kern, false
	}
	a := make([]float32, m*k)
	bb := make([]float32, k*n)
	c := make([]float32, m*n)
	for i := range a {
		a[i] = float32(i%7) - 3
	}
	for i := range bb {
		bb[i] = float32(i%5) - 2
	}
	lda, ldb := k, n
	if tA {
		lda = m
	}
	if tB {
		ldb = k
	}
	p.Sgemm(tA, tB, m, n, k, 1, a, lda, bb, ldb, 0, c, n) // warm the buffers
	var times []time.Duration
	cpu0 := processCPU()
	for b.Loop() {
		t0 := time.Now()
		p.Sgemm(tA, tB, m, n, k, 1, a, lda, bb, ldb, 0, c, n)
		times = append(times, time.Since(t0))
	}
	flops := 2 * float64(m) * float64(n) * float64(k)
	reportFlops(b, flops, processCPU()-cpu0)
	// The median call: on a shared machine, the mean counts the calls
	// another process interrupted; the median is the speed of the code.
	slices.Sort(times)
	b.ReportMetric(flops/times[len(times)/2].Seconds()/1e9, "GFLOP/s-p50")
	if kern == nil && !p.useGonum {
		kern = p.kern
	}
	if kern != nil {
		b.Logf("micro-kernel %s (mr=%d nr=%d mc=%d kc=%d nc=%d)", kern.name, kern.mr, kern.nr, kern.mc, kern.kc, kern.nc)
	} else {
		b.Logf("gonum Sgemm (no assembly micro-kernel for this CPU)")
	}
}

// reportFlops reports GFLOP/s of wall time, and GFLOP per CPU-second of the
// process ("GFLOP/cpu-s"): on a machine shared with other work, the second
// shows how fast the code runs while it has a core, whatever the wall time.
func reportFlops(b *testing.B, flopsPerOp float64, cpu time.Duration) {
	total := flopsPerOp * float64(b.N)
	b.ReportMetric(total/b.Elapsed().Seconds()/1e9, "GFLOP/s")
	if cpu > 0 {
		b.ReportMetric(total/cpu.Seconds()/1e9, "GFLOP/cpu-s")
	}
}

// BenchmarkMatMul measures Sgemm on the square reference size and on every
// matrix product of the tiny and small models' forward and backward passes,
// with M = 2048 token rows:
//
//	fwd  out  = inp [M,K] @ W^T, W [N,K]   NT  m=M n=N k=K
//	bwd  dinp = dout [M,N] @ W             NN  m=M n=K k=N
//	bwd  dW   = dout^T @ inp               TN  m=N n=K k=M
func BenchmarkMatMul(b *testing.B) {
	type shape struct {
		name   string
		tA, tB bool
		m, n   int
		k      int
	}
	shapes := []shape{{name: "1024x1024x1024", m: 1024, n: 1024, k: 1024}}
	const rows = 2048
	for _, model := range []struct {
		name     string
		c, vocab int
	}{{"tiny", 128, 256}, {"small", 256, 512}} {
		c := model.c
		for _, w := range []struct {
			name string
			n, k int // W is [n, k]
		}{{"qkv", 3 * c, c}, {"attproj", c, c}, {"fc", 4 * c, c}, {"fcproj", c, 4 * c}, {"head", model.vocab, c}} {
			pre := model.name + "/" + w.name
			shapes = append(shapes,
				shape{fmt.Sprintf("%s/fwd-NT-%dx%dx%d", pre, rows, w.n, w.k), false, true, rows, w.n, w.k},
				shape{fmt.Sprintf("%s/dinp-NN-%dx%dx%d", pre, rows, w.k, w.n), false, false, rows, w.k, w.n},
				shape{fmt.Sprintf("%s/dW-TN-%dx%dx%d", pre, w.n, w.k, rows), true, false, w.n, w.k, rows},
			)
		}
	}
	for _, s := range shapes {
		for _, threads := range []int{1, 2} {
			b.Run(fmt.Sprintf("%s/threads=%d", s.name, threads), func(b *testing.B) {
				benchGemm(b, threads, s.tA, s.tB, s.m, s.n, s.k)
			})
		}
	}
}

// BenchmarkMatMulSmall measures the fixed cost of a call on small cubes (one
// thread), where packing is a large share of the work, and the attention
// products of the models (head size 32, blocks of 64 query rows against up to
// T keys, T = 128 tiny, 256 small), which run one per goroutine.
func BenchmarkMatMulSmall(b *testing.B) {
	for _, s := range []struct {
		name    string
		tA, tB  bool
		m, n, k int
	}{
		{"attn-tiny/scores-NT-64x128x32", false, true, 64, 128, 32},
		{"attn-tiny/values-NN-64x32x128", false, false, 64, 32, 128},
		{"attn-tiny/dv-TN-128x32x64", true, false, 128, 32, 64},
		{"attn-small/scores-NT-64x256x32", false, true, 64, 256, 32},
		{"attn-small/values-NN-64x32x256", false, false, 64, 32, 256},
		{"attn-small/dv-TN-256x32x64", true, false, 256, 32, 64},
	} {
		b.Run(s.name, func(b *testing.B) {
			benchGemm(b, 1, s.tA, s.tB, s.m, s.n, s.k)
		})
	}
	for _, n := range []int{4, 16, 32, 64, 128} {
		for _, tr := range []struct {
			name   string
			tA, tB bool
		}{{"NN", false, false}, {"NT", false, true}, {"TN", true, false}} {
			b.Run(fmt.Sprintf("%s/%d", tr.name, n), func(b *testing.B) {
				benchGemm(b, 1, tr.tA, tr.tB, n, n, n)
			})
		}
	}
}

// BenchmarkMicroKernel measures each micro-kernel alone on panels that stay in
// L1: the ceiling for Sgemm on one thread.
func BenchmarkMicroKernel(b *testing.B) {
	for _, kern := range cpuKernels() {
		b.Run(kern.name, func(b *testing.B) {
			const k = 128
			a := make([]float32, k*kern.mr)
			bp := make([]float32, k*kern.nr)
			c := make([]float32, kern.mr*kern.nr)
			for i := range a {
				a[i] = 1
			}
			cpu0 := processCPU()
			for b.Loop() {
				kern.fn(k, &a[0], kern.mr, &bp[0], kern.nr, &c[0], kern.nr, 1, 1)
			}
			reportFlops(b, 2*float64(kern.mr*kern.nr*k), processCPU()-cpu0)
		})
	}
}

// BenchmarkMatMulKernel measures the square reference size with every
// micro-kernel the CPU supports (the portable one on a smaller size).
func BenchmarkMatMulKernel(b *testing.B) {
	for _, kern := range cpuKernels() {
		size := 1024
		if kern == &kernelGo {
			size = 256
		}
		for _, threads := range []int{1, 2} {
			b.Run(fmt.Sprintf("%s/%dx%dx%d/threads=%d", kern.name, size, size, size, threads), func(b *testing.B) {
				benchGemmKernel(b, kern, threads, false, false, size, size, size)
			})
		}
	}
}
