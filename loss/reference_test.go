package loss

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
)

// This file holds a float64 reference written straight from the
// definitions, independent of the package's code: dense P and Q, then the
// divergence. Finite differences of it are the oracle for the gradients.

// refP returns row r of the target as a dense distribution.
func refP(tg Target, o Options, r, V int) []float64 {
	p := make([]float64, V)
	switch {
	case tg.Hard != nil:
		eps := o.LabelSmoothing
		for i := range p {
			p[i] = eps / float64(V)
		}
		p[tg.Hard[r]] += 1 - eps
	case tg.Probs != nil:
		for i := range p {
			p[i] = float64(tg.Probs[r*V+i])
		}
	case tg.LogProbs != nil:
		for i := range p {
			p[i] = math.Exp(float64(tg.LogProbs[r*V+i]))
		}
	default:
		K := tg.K
		listed := make([]bool, V)
		S := 0.0
		for k := 0; k < K; k++ {
			id := tg.SparseIDs[r*K+k]
			p[id] = float64(tg.SparseProbs[r*K+k])
			listed[id] = true
			S += p[id]
		}
		if 1-S > 1e-3 {
			for i := range p {
				if !listed[i] {
					p[i] = (1 - S) / float64(V-K)
				}
			}
		}
	}
	return p
}

// refSoftmax returns softmax(z/T).
func refSoftmax(z []float64, T float64) []float64 {
	m := math.Inf(-1)
	for _, v := range z {
		m = max(m, v/T)
	}
	q := make([]float64, len(z))
	s := 0.0
	for i, v := range z {
		q[i] = math.Exp(v/T - m)
		s += q[i]
	}
	for i := range q {
		q[i] /= s
	}
	return q
}

// kl returns sum p log(p/q) with 0 log 0 = 0.
func kl(p, q []float64) float64 {
	s := 0.0
	for i := range p {
		if p[i] > 0 {
			s += p[i] * math.Log(p[i]/q[i])
		}
	}
	return s
}

// refLoss is the divergence of one row of logits z against p.
func refLoss(z, p []float64, o Options) float64 {
	q := refSoftmax(z, o.Temperature)
	var l float64
	switch o.Direction {
	case Forward:
		l = kl(p, q)
	case Reverse:
		l = kl(q, p)
	case JSD:
		m := make([]float64, len(p))
		for i := range m {
			m[i] = o.Beta*p[i] + (1-o.Beta)*q[i]
		}
		l = o.Beta*kl(p, m) + (1-o.Beta)*kl(q, m)
	}
	if o.ScaleT2 {
		l *= o.Temperature * o.Temperature
	}
	return l
}

// randTarget returns a target of the given kind for rows x V. zeros puts
// exact zeros into dense and complete sparse rows (not for reverse KL).
func randTarget(rng *rand.Rand, kind targetKind, rows, V int, zeros bool) Target {
	dense := func() []float32 {
		out := make([]float32, rows*V)
		for r := 0; r < rows; r++ {
			row := out[r*V : (r+1)*V]
			s := 0.0
			w := make([]float64, V)
			for i := range w {
				if zeros && rng.IntN(3) == 0 {
					continue
				}
				w[i] = math.Exp(1.5 * rng.NormFloat64())
				s += w[i]
			}
			if s == 0 {
				w[0], s = 1, 1
			}
			for i := range row {
				row[i] = float32(w[i] / s)
			}
		}
		return out
	}
	switch kind {
	case kindHard:
		h := make([]int32, rows)
		for i := range h {
			h[i] = int32(rng.IntN(V))
		}
		return Target{Hard: h}
	case kindProbs:
		return Target{Probs: dense()}
	case kindLogProbs:
		p := dense()
		for i, v := range p {
			p[i] = float32(math.Log(float64(v)))
		}
		return Target{LogProbs: p}
	}
	// Sparse: K = 3 ids per row; odd rows are complete (sum 1) only when
	// zeros are allowed, the others keep a tail.
	K := 3
	tg := Target{K: K, SparseIDs: make([]int32, rows*K), SparseProbs: make([]float32, rows*K)}
	for r := 0; r < rows; r++ {
		perm := rng.Perm(V)
		mass := 0.6 + 0.3*rng.Float64()
		if zeros && r%2 == 1 {
			mass = 1
		}
		w := []float64{rng.Float64() + 0.1, rng.Float64() + 0.1, rng.Float64() + 0.1}
		s := w[0] + w[1] + w[2]
		for k := 0; k < K; k++ {
			tg.SparseIDs[r*K+k] = int32(perm[k])
			tg.SparseProbs[r*K+k] = float32(mass * w[k] / s)
		}
	}
	return tg
}

var kindNames = map[targetKind]string{kindHard: "hard", kindProbs: "probs", kindLogProbs: "logprobs", kindSparse: "sparse"}

func randLogits(rng *rand.Rand, n int, scale float64) []float32 {
	z := make([]float32, n)
	for i := range z {
		z[i] = float32(scale * rng.NormFloat64())
	}
	return z
}

// TestFiniteDifferences checks every direction x target kind against float64
// central differences of the reference, and the losses against the
// reference itself.
func TestFiniteDifferences(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	c := NewComputer(nil)
	type variant struct {
		T       float64
		scaleT2 bool
		eps     float64
		scale   float32
	}
	variants := []variant{{1, false, 0, 1}, {0.7, false, 0.1, 0.37}, {2.5, true, 0.05, -1.5}}
	for _, dir := range []Direction{Forward, Reverse, JSD} {
		for _, kind := range []targetKind{kindHard, kindProbs, kindLogProbs, kindSparse} {
			for vi, v := range variants {
				for _, V := range []int{1, 7, 33} {
					if dir == Reverse && kind == kindHard && v.eps == 0 && V > 1 {
						continue // infinite: see TestBadInput
					}
					if kind == kindSparse && V < 3 {
						continue // sparse rows have K = 3 ids
					}
					name := fmt.Sprintf("%v/%s/variant=%d/V=%d", dir, kindNames[kind], vi, V)
					t.Run(name, func(t *testing.T) {
						const rows = 3
						o := DefaultOptions()
						o.Direction, o.Temperature, o.ScaleT2 = dir, v.T, v.scaleT2
						o.Beta = 0.3
						if kind == kindHard {
							o.LabelSmoothing = v.eps
						}
						tg := randTarget(rng, kind, rows, V, dir != Reverse)
						z := randLogits(rng, rows*V, 2)
						g := append([]float32(nil), z...)
						rowLoss := make([]float64, rows)
						if _, err := c.ForwardBackward(g, rows, V, tg, o, v.scale, rowLoss); err != nil {
							t.Fatalf("ForwardBackward: %v", err)
						}
						for r := 0; r < rows; r++ {
							p := refP(tg, o, r, V)
							zr := make([]float64, V)
							for i := range zr {
								zr[i] = float64(z[r*V+i])
							}
							// 1e-6 absolute: the fast paths' float32 exp.
							if want := refLoss(zr, p, o); !closeTo(rowLoss[r], want, 1e-6*max(1, o.Temperature*o.Temperature), 1e-6) {
								t.Errorf("row %d loss = %.10g; want %.10g", r, rowLoss[r], want)
							}
							for i := range zr {
								h := 1e-5 * max(1, math.Abs(zr[i]))
								x := zr[i]
								zr[i] = x + h
								lp := refLoss(zr, p, o)
								zr[i] = x - h
								lm := refLoss(zr, p, o)
								zr[i] = x
								want := float64(v.scale) * (lp - lm) / (2 * h)
								if got := float64(g[r*V+i]); !closeTo(got, want, 1e-6, 1e-4) {
									t.Errorf("grad[%d][%d] = %.8g; want %.8g (finite differences)", r, i, got, want)
								}
							}
						}
					})
				}
			}
		}
	}
}

// TestMaskedLogits checks -Inf logits: probability 0, gradient exactly 0, the
// rest as if the token were not in the vocabulary.
func TestMaskedLogits(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	c := NewComputer(nil)
	const rows, V = 4, 9
	for _, dir := range []Direction{Forward, Reverse, JSD} {
		t.Run(dir.String(), func(t *testing.T) {
			o := DefaultOptions()
			o.Direction = dir
			tg := randTarget(rng, kindProbs, rows, V, false)
			z := randLogits(rng, rows*V, 2)
			for r := 0; r < rows; r++ {
				z[r*V+r] = float32(math.Inf(-1))
				if dir == Forward { // P must give the masked token 0
					tg.Probs[r*V+(r+1)%V] += tg.Probs[r*V+r]
					tg.Probs[r*V+r] = 0
				}
			}
			g := append([]float32(nil), z...)
			rowLoss := make([]float64, rows)
			if _, err := c.ForwardBackward(g, rows, V, tg, o, 1, rowLoss); err != nil {
				t.Fatalf("ForwardBackward: %v", err)
			}
			for r := 0; r < rows; r++ {
				if g[r*V+r] != 0 {
					t.Errorf("grad[%d][%d] at a masked logit = %v; want 0", r, r, g[r*V+r])
				}
				zr := make([]float64, V)
				for i := range zr {
					zr[i] = float64(z[r*V+i])
				}
				p := refP(tg, o, r, V)
				if want := refLoss(zr, p, o); !closeTo(rowLoss[r], want, 1e-7, 1e-6) {
					t.Errorf("row %d loss = %.10g; want %.10g", r, rowLoss[r], want)
				}
				for i := range zr {
					if i == r {
						continue
					}
					x, h := zr[i], 1e-5
					zr[i] = x + h
					lp := refLoss(zr, p, o)
					zr[i] = x - h
					lm := refLoss(zr, p, o)
					zr[i] = x
					if got, want := float64(g[r*V+i]), (lp-lm)/(2*h); !closeTo(got, want, 1e-6, 1e-4) {
						t.Errorf("grad[%d][%d] = %.8g; want %.8g", r, i, got, want)
					}
				}
			}
		})
	}
}
