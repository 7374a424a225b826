package lm

import (
	"math"
	"testing"
)

// wideKernel is one kernel with its AVX2 and AVX-512 versions, over arrays
// of n floats (n a multiple of 8); the result, if any, is returned.
type wideKernel struct {
	name      string
	arrays    int
	avx2, avx func(a [][]float32, n int) float32
}

// expEdges are those of a row of attention scores less its maximum (no
// large positive value, so that the sum stays finite).
var expEdges = []float32{0, float32(math.Inf(-1)), -100, -87.2, -87.5, -1e30, 1e-40, -9, -20, float32(math.Copysign(0, -1))}

// sumEdges are finite inputs of the kernels that return a sum.
var sumEdges = []float32{0, float32(math.Copysign(0, -1)), 1e4, -1e4, 1e-40, 20, -20, 1e-7}

// wideEdges are inputs where the kernels clamp, overflow, flush or
// propagate: large |x|, infinities, NaN, signed zeros, subnormals, and the
// ends of exp's range.
var wideEdges = []float32{0, float32(math.Copysign(0, -1)), 20, -20, 100, -100, 1e4, -1e4, 1e30, -1e30,
	float32(math.Inf(1)), float32(math.Inf(-1)), float32(math.NaN()), 1e-40, -1e-40, 88.5, -87.5, 88.1, -87.2, 9, -9, 3.7e-3}

// checkWide runs k's two versions on the same random inputs (edge values
// in the first array) for lengths whose blocks of 16 leave a block of 8 or
// not, and wants the same bits in every array, also past n, and in the
// result.
func checkWide(t *testing.T, k wideKernel, edges []float32, gen func(r *RNG, arr, n int) []float32) {
	t.Helper()
	r := NewRNG(77)
	for _, n := range []int{8, 16, 24, 40, 72, 256, 1000, 1032} {
		in := make([][]float32, k.arrays)
		for j := range in {
			in[j] = gen(r, j, n+16) // 16 guard floats past n
		}
		for i := 0; i < n; i += 3 {
			in[0][i] = edges[(i/3)%len(edges)]
		}
		a2, a5 := make([][]float32, k.arrays), make([][]float32, k.arrays)
		for j := range in {
			a2[j] = append([]float32(nil), in[j]...)
			a5[j] = append([]float32(nil), in[j]...)
		}
		s2, s5 := k.avx2(a2, n), k.avx(a5, n)
		if math.Float32bits(s2) != math.Float32bits(s5) {
			t.Errorf("%s n=%d: result AVX2 %g (%#x), AVX-512 %g (%#x)", k.name, n, s2, math.Float32bits(s2), s5, math.Float32bits(s5))
		}
		for j := range a2 {
			for i := range a2[j] {
				if b2, b5 := math.Float32bits(a2[j][i]), math.Float32bits(a5[j][i]); b2 != b5 {
					t.Fatalf("%s n=%d: array %d [%d] (input %g): AVX2 %g (%#x), AVX-512 %g (%#x)",
						k.name, n, j, i, in[0][i], a2[j][i], b2, a5[j][i], b5)
				}
			}
		}
	}
}

func wideRand(r *RNG, arr, n int) []float32 { return randVec(r, n, 3) }

// TestAVX512MatchesAVX2: every AVX-512 kernel gives the AVX2 kernel's bits.
func TestAVX512MatchesAVX2(t *testing.T) {
	if !haveAVX512 {
		t.Skip("no AVX-512")
	}
	p := func(a []float32) *float32 { return &a[0] }
	for _, k := range []wideKernel{
		{"geluFwd", 2,
			func(a [][]float32, n int) float32 { geluFwdAVX2(p(a[1]), p(a[0]), n); return 0 },
			func(a [][]float32, n int) float32 { geluFwdAVX512(p(a[1]), p(a[0]), n); return 0 }},
		{"geluBwd", 3,
			func(a [][]float32, n int) float32 { geluBwdAVX2(p(a[1]), p(a[0]), p(a[2]), n); return 0 },
			func(a [][]float32, n int) float32 { geluBwdAVX512(p(a[1]), p(a[0]), p(a[2]), n); return 0 }},
		{"geluBwdSet", 3,
			func(a [][]float32, n int) float32 { geluBwdSetAVX2(p(a[1]), p(a[0]), p(a[2]), n); return 0 },
			func(a [][]float32, n int) float32 { geluBwdSetAVX512(p(a[1]), p(a[0]), p(a[2]), n); return 0 }},
		{"geluBwdSet in place", 2,
			func(a [][]float32, n int) float32 { geluBwdSetAVX2(p(a[1]), p(a[0]), p(a[1]), n); return 0 },
			func(a [][]float32, n int) float32 { geluBwdSetAVX512(p(a[1]), p(a[0]), p(a[1]), n); return 0 }},
		{"geluFwdGrad", 4,
			func(a [][]float32, n int) float32 { geluFwdGradAVX2(p(a[1]), p(a[2]), p(a[0]), p(a[3]), n); return 0 },
			func(a [][]float32, n int) float32 { geluFwdGradAVX512(p(a[1]), p(a[2]), p(a[0]), p(a[3]), n); return 0 }},
		{"geluFwdGrad in place", 3,
			func(a [][]float32, n int) float32 { geluFwdGradAVX2(p(a[1]), p(a[0]), p(a[0]), p(a[2]), n); return 0 },
			func(a [][]float32, n int) float32 { geluFwdGradAVX512(p(a[1]), p(a[0]), p(a[0]), p(a[2]), n); return 0 }},
	} {
		checkWide(t, k, wideEdges, wideRand)
	}
	checkWide(t, wideKernel{"expSub", 1,
		func(a [][]float32, n int) float32 { return expSubAVX2(p(a[0]), n, 1.5) },
		func(a [][]float32, n int) float32 { return expSubAVX512(p(a[0]), n, 1.5) }}, expEdges, wideRand)
	checkWide(t, wideKernel{"expSub edges", 1,
		func(a [][]float32, n int) float32 { return expSubAVX2(p(a[0]), n, -2) },
		func(a [][]float32, n int) float32 { return expSubAVX512(p(a[0]), n, -2) }}, wideEdges, wideRand)
}

// TestAVX512RowsMatchAVX2: the row kernels, AdamW and the small kernels of
// rows_avx512_amd64.s give the AVX2 kernels' bits (sums included).
func TestAVX512RowsMatchAVX2(t *testing.T) {
	if !haveAVX512 {
		t.Skip("no AVX-512")
	}
	p := func(a []float32) *float32 { return &a[0] }
	mean, rstd, da, db := float32(0.3), float32(1.7), float32(-0.2), float32(0.45)
	for _, k := range []wideKernel{
		{"add", 2,
			func(a [][]float32, n int) float32 { addAVX2(p(a[1]), p(a[0]), n); return 0 },
			func(a [][]float32, n int) float32 { addAVX512(p(a[1]), p(a[0]), n); return 0 }},
		{"mul", 2,
			func(a [][]float32, n int) float32 { mulAVX2(p(a[1]), p(a[0]), n); return 0 },
			func(a [][]float32, n int) float32 { mulAVX512(p(a[1]), p(a[0]), n); return 0 }},
		{"resBiasSum", 3,
			func(a [][]float32, n int) float32 { return resBiasSumAVX2(p(a[1]), p(a[0]), p(a[2]), n) },
			func(a [][]float32, n int) float32 { return resBiasSumAVX512(p(a[1]), p(a[0]), p(a[2]), n) }},
		{"lnOut", 4,
			func(a [][]float32, n int) float32 {
				lnOutAVX2(p(a[1]), p(a[0]), p(a[2]), p(a[3]), n, mean, rstd)
				return 0
			},
			func(a [][]float32, n int) float32 {
				lnOutAVX512(p(a[1]), p(a[0]), p(a[2]), p(a[3]), n, mean, rstd)
				return 0
			}},
		{"lnBwdDots a", 3,
			func(a [][]float32, n int) float32 {
				s, _ := lnBwdDotsAVX2(p(a[0]), p(a[1]), p(a[2]), n, mean, rstd)
				return s
			},
			func(a [][]float32, n int) float32 {
				s, _ := lnBwdDotsAVX512(p(a[0]), p(a[1]), p(a[2]), n, mean, rstd)
				return s
			}},
		{"lnBwdDots b", 3,
			func(a [][]float32, n int) float32 {
				_, s := lnBwdDotsAVX2(p(a[1]), p(a[0]), p(a[2]), n, mean, rstd)
				return s
			},
			func(a [][]float32, n int) float32 {
				_, s := lnBwdDotsAVX512(p(a[1]), p(a[0]), p(a[2]), n, mean, rstd)
				return s
			}},
		{"lnBwdOut", 4,
			func(a [][]float32, n int) float32 {
				lnBwdOutAVX2(p(a[3]), p(a[1]), p(a[0]), p(a[2]), n, mean, rstd, da, db)
				return 0
			},
			func(a [][]float32, n int) float32 {
				lnBwdOutAVX512(p(a[3]), p(a[1]), p(a[0]), p(a[2]), n, mean, rstd, da, db)
				return 0
			}},
		{"lnCols", 4,
			func(a [][]float32, n int) float32 {
				lnColsAVX2(p(a[2]), p(a[3]), p(a[1]), p(a[0]), n, mean, rstd)
				return 0
			},
			func(a [][]float32, n int) float32 {
				lnColsAVX512(p(a[2]), p(a[3]), p(a[1]), p(a[0]), n, mean, rstd)
				return 0
			}},
		{"scaleCopy", 2,
			func(a [][]float32, n int) float32 { scaleCopyAVX2(p(a[1]), p(a[0]), n, -1.37); return 0 },
			func(a [][]float32, n int) float32 { scaleCopyAVX512(p(a[1]), p(a[0]), n, -1.37); return 0 }},
		{"softmaxGrad", 2,
			func(a [][]float32, n int) float32 { softmaxGradAVX2(p(a[1]), p(a[0]), n, 0.21, 0.125); return 0 },
			func(a [][]float32, n int) float32 { softmaxGradAVX512(p(a[1]), p(a[0]), n, 0.21, 0.125); return 0 }},
	} {
		edges := wideEdges
		if k.name == "resBiasSum" || k.name == "lnBwdDots a" || k.name == "lnBwdDots b" {
			edges = sumEdges // a NaN or infinite sum would hide the order of the adds
		}
		checkWide(t, k, edges, wideRand)
	}
	// AdamW: a[0] the gradient, a[1] p, a[2] m, a[3] v (not negative).
	adamGen := func(r *RNG, arr, n int) []float32 {
		v := randVec(r, n, []float64{1e-3, 1, 1e-3, 1e-6}[arr])
		if arr == 3 {
			for i := range v {
				v[i] = float32(math.Abs(float64(v[i])))
			}
		}
		return v
	}
	for _, clip := range []float32{1, 0.37} {
		c := [10]float32{0.9, 1 - float32(0.9), 0.95, 1 - float32(0.95), 1.5, 2.5, 1e-8, 1e-3, 0.999, clip}
		checkWide(t, wideKernel{"adamw", 4,
			func(a [][]float32, n int) float32 { adamwAVX2(p(a[1]), p(a[0]), p(a[2]), p(a[3]), n, &c); return 0 },
			func(a [][]float32, n int) float32 { adamwAVX512(p(a[1]), p(a[0]), p(a[2]), p(a[3]), n, &c); return 0 }},
			[]float32{0, 1e-30, -1e-30, 1e10, -1e10, 3, -3, 1e-40}, adamGen)
	}
}
