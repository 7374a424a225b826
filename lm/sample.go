package lm

import (
	"context"
	"fmt"
	"math"
	"slices"
)

// SampleOptions say how Sample draws each token.
type SampleOptions struct {
	Temperature float64 // divides the logits; 0 means greedy (argmax)
	TopK        int     // draw among the K most likely tokens; 0 means all
	Seed        uint64  // seeds the draw: the same seed gives the same text
}

// MaxSampleTokens bounds one Sample call's tokens (each one is a forward
// pass over up to Ctx tokens; the output is held in memory).
const MaxSampleTokens = 1 << 20

// Sample continues prompt by n tokens and returns them (without the prompt).
// Each step runs the model over the last Ctx tokens. It stops early with
// ctx's error when ctx is done.
func (m *Model) Sample(ctx context.Context, prompt []int32, n int, o SampleOptions) ([]int32, error) {
	switch {
	case len(prompt) == 0:
		return nil, fmt.Errorf("sample: empty prompt: %w", ErrSample)
	case n < 0 || n > MaxSampleTokens:
		return nil, fmt.Errorf("sample: %d tokens, want 0..%d: %w", n, MaxSampleTokens, ErrSample)
	case !(o.Temperature >= 0) || math.IsInf(o.Temperature, 0):
		return nil, fmt.Errorf("sample: temperature %g, want >= 0: %w", o.Temperature, ErrSample)
	case o.TopK < 0:
		return nil, fmt.Errorf("sample: top-k %d, want >= 0: %w", o.TopK, ErrSample)
	}
	V := m.Config.Vocab
	seq := append(make([]int32, 0, len(prompt)+n), prompt...)
	last := make([]float32, V)
	idx := make([]int, V)
	probs := make([]float64, V)
	rng := NewRNG(o.Seed)
	for len(seq) < len(prompt)+n {
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("sample: %w", err)
		}
		win := seq[max(0, len(seq)-m.Config.Ctx):]
		T := len(win)
		err := m.Forward(win, 1, T, func(logits []float32, first, rows int) error {
			if first+rows == T {
				copy(last, logits[(rows-1)*V:rows*V])
			}
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("sample: %w", err)
		}
		seq = append(seq, int32(pick(last, idx, probs, o, rng)))
	}
	return seq[len(prompt):], nil
}

// pick draws a token from logits [V] as o says; idx and probs are scratch [V].
func pick(logits []float32, idx []int, probs []float64, o SampleOptions, rng *RNG) int {
	if o.Temperature == 0 {
		best := 0
		for j, v := range logits {
			if v > logits[best] {
				best = j
			}
		}
		return best
	}
	for j := range idx {
		idx[j] = j
	}
	k := len(logits)
	if o.TopK > 0 && o.TopK < k {
		// Stable order: by logit descending, then by id.
		slices.SortStableFunc(idx, func(a, b int) int {
			switch {
			case logits[a] > logits[b]:
				return -1
			case logits[a] < logits[b]:
				return 1
			}
			return 0
		})
		k = o.TopK
	}
	mx := math.Inf(-1)
	for _, j := range idx[:k] {
		mx = max(mx, float64(logits[j]))
	}
	var sum float64
	for i, j := range idx[:k] {
		probs[i] = math.Exp((float64(logits[j]) - mx) / o.Temperature)
		sum += probs[i]
	}
	u := rng.Float64() * sum
	for i, j := range idx[:k] {
		u -= probs[i]
		if u < 0 {
			return j
		}
	}
	return idx[k-1]
}
