package lm

import (
	"math"
	"testing"

	"github.com/klring/klring/kernels"
)

// TestColumnSumsDoNotDependOnThreads: the bias and LayerNorm parameter
// gradients (row blocks, partials added in block order) give the same bits
// on 1, 2 and 3 threads, add into what was there, and match a float64 sum,
// for N below one block, not a multiple of the blocks, and above 16 blocks.
func TestColumnSumsDoNotDependOnThreads(t *testing.T) {
	r := NewRNG(5)
	for _, N := range []int{1, 100, 1000, 4096} {
		const C = 24
		dout, inp := randVec(r, N*C, 1), randVec(r, N*C, 1)
		mean, rstd := randVec(r, N, 0.5), randVec(r, N, 0.5)
		for i := range rstd {
			rstd[i] = 1 + rstd[i]
		}
		start := randVec(r, 3*C, 1)
		var first []float32
		for _, threads := range []int{1, 2, 3} {
			rn := newRunner(kernels.NewPool(threads))
			got := append([]float32(nil), start...)
			biasGrad(rn, got[:C], dout, N, C)
			lnParamGrads(rn, got[C:2*C], got[2*C:], dout, inp, mean, rstd, N, C)
			if first == nil {
				first = got
				for j := 0; j < C; j++ {
					db, dw := float64(start[j]), float64(start[C+j])
					for i := 0; i < N; i++ {
						d := float64(dout[i*C+j])
						db += d
						dw += (float64(inp[i*C+j]) - float64(mean[i])) * float64(rstd[i]) * d
					}
					for k, want := range []float64{db, dw, db - float64(start[j]) + float64(start[2*C+j])} {
						if g := float64(got[k*C+j]); math.Abs(g-want) > 1e-4*(1+math.Abs(want)) {
							t.Fatalf("N %d: sum %d, column %d = %g; want %g", N, k, j, g, want)
						}
					}
				}
				continue
			}
			for i := range got {
				if math.Float32bits(got[i]) != math.Float32bits(first[i]) {
					t.Fatalf("N %d, threads %d: sum %d, column %d = %g; one thread gave %g", N, threads, i/C, i%C, got[i], first[i])
				}
			}
		}
	}
}
