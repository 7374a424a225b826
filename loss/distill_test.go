package loss

import (
	"errors"
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
			for _, k := range []int{1, 2, 8, 64, V - 1, V} {
				if k < 1 || k > V {
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

// TestTeacherTopNonFinite: where the teacher's top k go through the grouped
// selection (GroupMaxMin, which does not see a NaN), a NaN or +Inf teacher
// logit anywhere in a row is still ErrNonFiniteLogit naming that row, and a
// masked (-Inf) teacher token is probability 0 for forward KL.
func TestTeacherTopNonFinite(t *testing.T) {
	const rows, V, k = 3, 1000, 8 // 32 groups; 1000 = 31*32 + 8 leaves a tail
	if topGroups(V, k) == 0 {
		t.Fatal("the case does not reach the grouped selection")
	}
	rng := rand.New(rand.NewPCG(41, 42))
	z, tl0 := make([]float32, rows*V), make([]float32, rows*V)
	for i := range z {
		z[i], tl0[i] = float32(rng.NormFloat64()), float32(rng.NormFloat64()*2)
	}
	for _, pos := range []int{0, 17, 500, 995} {
		for _, v := range []float32{nan, inf, -inf} {
			tl := slices.Clone(tl0)
			tl[V+pos] = v
			o := DefaultOptions()
			o.TeacherTopK = k
			_, err := NewComputer(nil).ForwardBackward(slices.Clone(z), rows, V, Target{TeacherLogits: tl}, o, 1, nil)
			var re *RowError
			switch {
			case v < 0:
				if err != nil {
					t.Errorf("teacher logit %v at %d: %v; want no error", v, pos, err)
				}
			case !errors.Is(err, ErrNonFiniteLogit) || !errors.As(err, &re) || re.Row != 1:
				t.Errorf("teacher logit %v at %d: %v; want %v at row 1", v, pos, err, ErrNonFiniteLogit)
			}
		}
	}
}
