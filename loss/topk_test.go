package loss

import (
	"errors"
	"math"
	"math/rand/v2"
	"slices"
	"testing"
)

// naiveTopK sorts every id by decreasing logit (-0 below +0), ties to the
// lower id, and
// takes the float64 softmax.
func naiveTopK(z []float32, k int, temp float64) (ids []int32, p []float64, rest float64) {
	V := len(z)
	order := make([]int32, V)
	for i := range order {
		order[i] = int32(i)
	}
	slices.SortStableFunc(order, func(a, b int32) int {
		switch {
		case z[a] > z[b]:
			return -1
		case z[a] < z[b]:
			return 1
		case math.Signbit(float64(z[a])) != math.Signbit(float64(z[b])):
			// -0 counts below +0, as in the fused passes.
			if math.Signbit(float64(z[a])) {
				return 1
			}
			return -1
		}
		return 0
	})
	mx := math.Inf(-1)
	for _, v := range z {
		mx = math.Max(mx, float64(v)/temp)
	}
	var sum float64
	e := make([]float64, V)
	for i, v := range z {
		e[i] = math.Exp(float64(v)/temp - mx)
		sum += e[i]
	}
	for _, id := range order[:k] {
		p = append(p, e[id]/sum)
	}
	for _, id := range order[k:] {
		rest += e[id] / sum
	}
	return order[:k], p, rest
}

func TestTopKRowMatchesSort(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for _, tc := range []struct {
		V, k  int
		temp  float64
		ties  bool
		scale float64
	}{
		{1, 1, 1, false, 1}, {2, 1, 1, false, 1}, {7, 3, 0.5, false, 3}, {64, 64, 1, false, 2},
		{64, 32, 2, true, 1}, {257, 16, 1, false, 5}, {1000, 1, 1, true, 1}, {5000, 100, 0.7, false, 4},
		{50257, 32, 1, false, 3}, {50257, 32, 1, true, 3}, {333, 333, 1.5, true, 1}, {100, 10, 1, false, 60},
	} {
		z := make([]float32, tc.V)
		for i := range z {
			v := rng.NormFloat64() * tc.scale
			if tc.ties {
				v = math.Round(v * 2) // many equal logits
			}
			z[i] = float32(v)
		}
		s := NewTopK(tc.V, tc.k)
		ids, probs := make([]int32, tc.k), make([]float32, tc.k)
		rest, err := s.Row(ids, probs, z, tc.temp)
		if err != nil {
			t.Fatalf("V=%d k=%d: %v", tc.V, tc.k, err)
		}
		wantIDs, wantP, wantRest := naiveTopK(z, tc.k, tc.temp)
		if !slices.Equal(ids, wantIDs) {
			t.Fatalf("V=%d k=%d ties=%v: ids = %v; want %v", tc.V, tc.k, tc.ties, ids, wantIDs)
		}
		for i := range probs {
			if d := math.Abs(float64(probs[i]) - wantP[i]); d > 1e-6*wantP[i]+1e-30 {
				t.Fatalf("V=%d k=%d: probs[%d] = %v; want %v", tc.V, tc.k, i, probs[i], wantP[i])
			}
		}
		if d := math.Abs(rest - wantRest); d > 1e-6*wantRest+1e-300 {
			t.Fatalf("V=%d k=%d: rest = %v; want %v", tc.V, tc.k, rest, wantRest)
		}
	}
}

// A rest far below float32's resolution of 1 keeps its digits.
func TestTopKTinyRest(t *testing.T) {
	z := []float32{40, 39, 0, 0, 0}
	s := NewTopK(len(z), 2)
	ids, probs := make([]int32, 2), make([]float32, 2)
	rest, err := s.Row(ids, probs, z, 1)
	if err != nil {
		t.Fatal(err)
	}
	_, _, want := naiveTopK(z, 2, 1)
	if math.Abs(rest-want) > 1e-6*want {
		t.Fatalf("rest = %v; want %v", rest, want)
	}
}

func TestTopKRowErrors(t *testing.T) {
	s := NewTopK(4, 2)
	ids, probs := make([]int32, 2), make([]float32, 2)
	for _, z := range [][]float32{{1, float32(math.NaN()), 0, 0}, {1, float32(math.Inf(1)), 0, 0}, {float32(math.Inf(-1)), 1, 0, 0}} {
		if _, err := s.Row(ids, probs, z, 1); !errors.Is(err, ErrNonFiniteLogit) {
			t.Errorf("Row(%v) error = %v; want ErrNonFiniteLogit", z, err)
		}
	}
	for _, temp := range []float64{0, -1, math.NaN(), math.Inf(1)} {
		if _, err := s.Row(ids, probs, []float32{1, 2, 3, 4}, temp); !errors.Is(err, ErrOption) {
			t.Errorf("Row at temperature %v error = %v; want ErrOption", temp, err)
		}
	}
	defer func() {
		if recover() == nil {
			t.Error("NewTopK(4, 5) did not panic")
		}
	}()
	NewTopK(4, 5)
}

func BenchmarkTopKRow(b *testing.B) {
	for _, c := range []struct {
		name string
		V, k int
	}{{"V=50257/k=32", 50257, 32}, {"V=50257/k=256", 50257, 256}, {"V=64/k=32", 64, 32}} {
		b.Run(c.name, func(b *testing.B) {
			rng := rand.New(rand.NewPCG(3, 4))
			z := make([]float32, c.V)
			for i := range z {
				z[i] = float32(rng.NormFloat64() * 3)
			}
			s := NewTopK(c.V, c.k)
			ids, probs := make([]int32, c.k), make([]float32, c.k)
			for b.Loop() {
				if _, err := s.Row(ids, probs, z, 1); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "rows/s")
		})
	}
}
