package kernels

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"
)

// selectImpl is one implementation of the selection kernels.
type selectImpl struct {
	name         string
	groupMaxMin  func(gmax, x []float32) (mx, mn float32)
	indicesAbove func(dst []int32, x []float32, thr float32) int
	topBound     func(keys []int32, k int) (int32, int)
}

var selectImpls = append([]selectImpl{
	{"dispatch", GroupMaxMin, IndicesAbove, TopBound},
	{"go", groupMaxMinGo, indicesAboveGo, topBoundGo},
}, archSelectImpls()...)

// selectRows are rows of n values in random, sorted and constant order,
// with ties, zeros of both signs, infinities and huge and tiny values.
func selectRows(rng *rand.Rand, n int) map[string][]float32 {
	rows := map[string][]float32{}
	gen := map[string]func(i int) float32{
		"normal":     func(i int) float32 { return float32(rng.NormFloat64() * 3) },
		"increasing": func(i int) float32 { return float32(i) / 7 },
		"decreasing": func(i int) float32 { return -float32(i) / 7 },
		"constant":   func(i int) float32 { return 1.5 },
		"few values": func(i int) float32 { return float32(rng.IntN(4)) - 1.5 },
		"zeros": func(i int) float32 {
			return [...]float32{0, float32(math.Copysign(0, -1)), 1e-45, -1e-45}[rng.IntN(4)]
		},
		"extremes": func(i int) float32 {
			return [...]float32{float32(math.Inf(1)), float32(math.Inf(-1)), math.MaxFloat32, -math.MaxFloat32, 1e-40, -3}[rng.IntN(6)]
		},
	}
	for name, g := range gen {
		x := make([]float32, n)
		for i := range x {
			x[i] = g(i)
		}
		rows[name] = x
	}
	return rows
}

func TestGroupMaxMin(t *testing.T) {
	rng := rand.New(rand.NewPCG(23, 24))
	for _, im := range selectImpls {
		for _, n := range rowLengths {
			for name, x := range selectRows(rng, n) {
				for _, G := range []int{1, 3, 16, 32, 64, 128, 160, 4096} {
					if G > n {
						continue
					}
					gm := make([]float32, G)
					mx, mn := im.groupMaxMin(gm, x)
					wmx, wmn := slices.Max(x), slices.Min(x)
					for g := range G {
						w := x[g]
						for i := g; i < n; i += G {
							w = max(w, x[i])
						}
						if gm[g] != w { // == : either zero
							t.Fatalf("%s GroupMaxMin(%s, n=%d, G=%d): [%d] = %v; want %v", im.name, name, n, G, g, gm[g], w)
						}
					}
					if mx != wmx || mn != wmn {
						t.Fatalf("%s GroupMaxMin(%s, n=%d, G=%d) = %v, %v; want %v, %v", im.name, name, n, G, mx, mn, wmx, wmn)
					}
				}
			}
		}
	}
}

func TestIndicesAbove(t *testing.T) {
	rng := rand.New(rand.NewPCG(25, 26))
	for _, im := range selectImpls {
		for _, n := range rowLengths {
			rows := selectRows(rng, n)
			nan := slices.Clone(rows["normal"])
			for i := range nan {
				if rng.IntN(5) == 0 {
					nan[i] = float32(math.NaN())
				}
			}
			rows["nan"] = nan
			for name, x := range rows {
				for _, thr := range []float32{float32(math.Inf(-1)), -10, -1e-45, 0, 1.5, 2.5, 10, math.MaxFloat32} {
					var want []int32
					for i, v := range x {
						if v > thr {
							want = append(want, int32(i))
						}
					}
					dst := make([]int32, n)
					for i := range dst {
						dst[i] = -7
					}
					got := im.indicesAbove(dst, x, thr)
					if !slices.Equal(dst[:got], want) {
						t.Fatalf("%s IndicesAbove(%s, n=%d, thr %v) = %v; want %v", im.name, name, n, thr, dst[:got], want)
					}
				}
			}
		}
	}
}

func TestOrderKey(t *testing.T) {
	vals := []float32{float32(math.Inf(-1)), -math.MaxFloat32, -1e10, -1, -1e-40, -1e-45,
		float32(math.Copysign(0, -1)), 0, 1e-45, 1e-40, 1, 1e10, math.MaxFloat32, float32(math.Inf(1))}
	for i, v := range vals {
		if got := FromOrderKey(OrderKey(v)); math.Float32bits(got) != math.Float32bits(v) {
			t.Errorf("FromOrderKey(OrderKey(%v)) = %v", v, got)
		}
		if i > 0 && OrderKey(vals[i-1]) >= OrderKey(v) {
			t.Errorf("OrderKey(%v) >= OrderKey(%v); want below", vals[i-1], v)
		}
	}
}

// TestTopBound: TopBound's t splits the keys as promised (at most k above
// it, at least k at or above it, n of them, and t the k-th largest unless n
// = k), and every implementation returns the same t and n.
func TestTopBound(t *testing.T) {
	rng := rand.New(rand.NewPCG(27, 28))
	for _, n := range rowLengths {
		rows := selectRows(rng, n)
		ext := make([]float32, n) // keys at both ends of int32
		for i := range ext {
			ext[i] = FromOrderKey([...]int32{math.MinInt32, math.MinInt32 + 1, -1, 0, math.MaxInt32}[rng.IntN(5)])
		}
		rows["extreme keys"] = ext
		for name, x := range rows {
			keys := make([]int32, n)
			for i, v := range x {
				keys[i] = OrderKey(v)
			}
			sorted := slices.Clone(keys)
			slices.Sort(sorted)
			for _, k := range []int{1, 2, n / 3, n / 2, n - 1, n} {
				if k < 1 || k > n {
					continue
				}
				wt, wn := topBoundGo(keys, k)
				above, reach := 0, 0
				for _, v := range keys {
					if v > wt {
						above++
					}
					if v >= wt {
						reach++
					}
				}
				if above > k || reach != wn || wn < k || (wn != k && wt != sorted[n-k]) {
					t.Fatalf("TopBound(%s, n=%d, k=%d) = %d, %d: %d above, %d reach; k-th largest %d",
						name, n, k, wt, wn, above, reach, sorted[n-k])
				}
				for _, im := range selectImpls {
					if gt, gn := im.topBound(keys, k); gt != wt || gn != wn {
						t.Fatalf("%s TopBound(%s, n=%d, k=%d) = %d, %d; want %d, %d", im.name, name, n, k, gt, gn, wt, wn)
					}
				}
			}
		}
	}
}
