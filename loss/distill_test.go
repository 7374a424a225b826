package loss

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"testing"
)

// TestSelectTop: the top-k selection of the fast paths picks the same ids as
// a stable sort by decreasing value (ties to the lower id), on rows in
// random, increasing, decreasing and constant order, with many ties.
func TestSelectTop(t *testing.T) {
	rng := rand.New(rand.NewPCG(21, 22))
	patterns := map[string]func(i, V int) float32{
		"normal":     func(i, V int) float32 { return float32(rng.NormFloat64() * 3) },
		"increasing": func(i, V int) float32 { return float32(i) / 7 },
		"decreasing": func(i, V int) float32 { return -float32(i) / 7 },
		"constant":   func(i, V int) float32 { return 1.5 },
		"few values": func(i, V int) float32 { return float32(rng.IntN(4)) },
		"one huge": func(i, V int) float32 {
			if i == V/3 {
				return 1e30
			}
			return float32(rng.NormFloat64())
		},
		"negative tiny": func(i, V int) float32 { return -float32(rng.IntN(3)) * 1e-40 },
	}
	for name, gen := range patterns {
		for _, V := range []int{2, 17, 100, 257, 4096, 50257} {
			for _, k := range []int{1, 2, 8, 64, V - 1} {
				if k < 1 || k >= V {
					continue
				}
				t.Run(fmt.Sprintf("%s/V=%d/k=%d", name, V, k), func(t *testing.T) {
					x := make([]float32, V)
					for i := range x {
						x[i] = gen(i, V)
					}
					var tk topk
					tk.alloc(V)
					selectTop(&tk, x, k)
					got := slices.Clone(tk.ids[:k])
					slices.Sort(got)
					idx := make([]int32, V)
					for i := range idx {
						idx[i] = int32(i)
					}
					slices.SortStableFunc(idx, func(a, b int32) int {
						switch {
						case x[a] > x[b]:
							return -1
						case x[a] < x[b]:
							return 1
						}
						return 0
					})
					want := slices.Clone(idx[:k])
					slices.Sort(want)
					if !slices.Equal(got, want) {
						t.Fatalf("selectTop = %v; want %v", got[:min(k, 10)], want[:min(k, 10)])
					}
				})
			}
		}
	}
}

// TestTopKeyOrder: topKey orders by value, then by lower id, across signs,
// zeros and magnitudes.
func TestTopKeyOrder(t *testing.T) {
	vals := []float32{-math.MaxFloat32, -1e10, -1, -1e-40, 0, 1e-40, 1, 1e10, math.MaxFloat32}
	for i, v := range vals {
		for _, w := range vals[i+1:] {
			if topKey(v, 0) >= topKey(w, 9) {
				t.Errorf("topKey(%v, 0) >= topKey(%v, 9); want below", v, w)
			}
		}
		if topKey(v, 3) <= topKey(v, 4) {
			t.Errorf("topKey(%v, 3) <= topKey(%v, 4); want the lower id above", v, v)
		}
	}
}
