package loss

import (
	"fmt"
	"math"
	"slices"

	"github.com/klring/klring/kernels"
)

// TopK is the teacher top-k selection of the fused passes, for callers that
// precompute a teacher's top k ahead of training (a top-k store): the same
// exact selection (ties to the lower id), the same float32 exps with a
// float64 sum, and the same accurate mass of the ids not listed. A TopK owns
// its scratch and allocates nothing per row; it is not safe for concurrent
// use (make one per goroutine).
type TopK struct {
	k, vocab int
	tk       topk
	e        []float32 // [vocab] exps of a row
}

// NewTopK returns a selection of the k largest of rows of vocab logits. It
// panics unless 1 <= k <= vocab.
func NewTopK(vocab, k int) *TopK {
	if k < 1 || k > vocab {
		panic(fmt.Sprintf("loss: NewTopK k = %d, vocab = %d, want 1 <= k <= vocab", k, vocab))
	}
	s := &TopK{k: k, vocab: vocab, e: make([]float32, vocab)}
	s.tk.ids = make([]int32, k+1)
	s.tk.cand = make([]uint64, k)
	s.tk.hits = make([]int32, vocab)
	s.tk.keys = make([]int32, vocab)
	s.tk.gmax = make([]float32, topGroups(vocab, k))
	return s
}

// K is the number of entries a row keeps.
func (s *TopK) K() int { return s.k }

// Row writes the ids ids [k] of the k largest logits of the row logits
// [vocab], in decreasing order of logit (ties to the lower id; -0 counts
// below +0, as in the fused passes), and their probabilities probs [k]
// under softmax(logits / temperature), and returns rest, the probability of
// the vocab - k ids not listed (0 when k = vocab), summed over those ids so
// that a rest of 1e-20 keeps its digits (and one below float32's range is
// summed in float64). The
// probabilities are those of the fused passes: float32 exps (within 2 ulp)
// over their float64 sum. A NaN or infinite logit is an error wrapping
// ErrNonFiniteLogit, a temperature that is not a finite number > 0 one
// wrapping ErrOption; nothing is then written. Wrong lengths panic.
func (s *TopK) Row(ids []int32, probs []float32, logits []float32, temperature float64) (rest float64, err error) {
	V, k := s.vocab, s.k
	if len(ids) != k || len(probs) != k || len(logits) != V {
		panic(fmt.Sprintf("loss: TopK.Row len(ids) = %d, len(probs) = %d, len(logits) = %d, want %d, %d, %d", len(ids), len(probs), len(logits), k, k, V))
	}
	if !(temperature > 0) || math.IsInf(temperature, 0) {
		return 0, fmt.Errorf("%w: top-k temperature %v, want a finite number > 0", ErrOption, temperature)
	}
	mx, _, sum := kernels.MaxMinSum(logits)
	if math.IsNaN(sum) || math.IsInf(sum, 0) {
		return 0, fmt.Errorf("%w: a logit of the row is %v", ErrNonFiniteLogit, firstNonFinite(logits))
	}
	a := float32(1 / temperature)
	b := a * mx
	if math.IsInf(float64(a), 0) || math.IsInf(float64(b), 0) {
		return 0, fmt.Errorf("%w: logits / temperature %v overflow float32", ErrOption, temperature)
	}
	sumE := kernels.ExpSum(s.e, logits, a, b)
	tk := &s.tk
	tk.k = k
	selectTop(tk, logits, k)
	sorted := tk.cand[:k]
	for i, id := range tk.ids[:k] {
		sorted[i] = topKey(logits[id], int(id))
	}
	slices.Sort(sorted)
	slices.Reverse(sorted)
	var sumK float64
	for i, key := range sorted {
		id := int32(^uint32(key))
		ids[i] = id
		sumK += float64(s.e[id])
		probs[i] = float32(float64(s.e[id]) / sumE)
	}
	if k == V {
		return 0, nil
	}
	r := sumE - sumK
	if r <= 1e-6*sumE {
		// Small: sum the others' exps themselves (cancellation would lose
		// the digits of a tiny rest).
		for _, id := range ids {
			s.e[id] = 0
		}
		_, _, r = kernels.MaxMinSum(s.e)
		if r < 1e-30*sumE {
			// The others' float32 exps underflow: float64 exps.
			for _, id := range ids {
				s.e[id] = -1
			}
			r = 0
			af, bf := 1/temperature, float64(mx)/temperature
			for i, v := range logits {
				if s.e[i] >= 0 {
					r += math.Exp(af*float64(v) - bf)
				}
			}
		}
	}
	return r / sumE, nil
}

// firstNonFinite is the first NaN or infinity of x (0 if there is none).
func firstNonFinite(x []float32) float32 {
	for _, v := range x {
		if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
			return v
		}
	}
	return 0
}
