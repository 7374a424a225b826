package engine

import (
	"context"
	"fmt"
	"math"

	"github.com/klring/klring/lm"
	"github.com/klring/klring/loss"
)

// mix is SplitMix64's finaliser: a well-spread hash of x.
func mix(x uint64) uint64 {
	x += 0x9e3779b97f4a7c15
	x = (x ^ x>>30) * 0xbf58476d1ce4e5b9
	x = (x ^ x>>27) * 0x94d049bb133111eb
	return x ^ x>>31
}

// seedOf is the seed of window w at step s: it alone decides whether the
// window is rolled out and what is sampled.
func (p OnPolicy) seedOf(step uint64, w int32) uint64 {
	return mix(mix(p.Seed^0x6f6e706f6c696379) ^ mix(step) ^ uint64(uint32(w))<<1)
}

// rolls says whether window w is the model's own at step s.
func (p OnPolicy) rolls(step uint64, w int32) bool {
	return float64(p.seedOf(step, w)>>11)/(1<<53) < p.Fraction
}

// rollout replaces, in the loaded batch, each window that rolls at this
// step by its first Prefix tokens and the model's continuation, sampled
// token by token; its positions before Prefix-1 are then ignored (they
// predict no sampled token), and with synthetic data its truth rows are
// those of the new tokens.
func (e *Engine) rollout(ctx context.Context, windows []int32, step uint64) error {
	e.rolled = e.rolled[:0]
	for b, w := range windows {
		if e.onPolicy.rolls(step, w) {
			e.rolled = append(e.rolled, b)
		}
	}
	if len(e.rolled) == 0 {
		return nil
	}
	T, p := e.T, e.onPolicy.Prefix
	if err := e.sample(ctx, windows, step, e.rolled, p, e.onPolicy.Temperature); err != nil {
		return err
	}
	for i, b := range e.rolled {
		seq := e.roll[i*(T+1) : (i+1)*(T+1)]
		copy(e.in[b*T:(b+1)*T], seq[:T])
		copy(e.hard[b*T:(b+1)*T], seq[1:])
		for t := 0; t < p-1; t++ {
			e.hard[b*T+t] = e.opts.IgnoreIndex
		}
		if e.K > 0 {
			K := e.K
			e.data.TruthOf(seq[:T], e.ids[b*T*K:(b+1)*T*K], e.probs[b*T*K:(b+1)*T*K])
		}
	}
	return nil
}

// sample fills e.roll, for the batch positions idx of the loaded windows,
// with the window's first p tokens and T+1-p tokens the model samples at
// temperature temp, each from the model's distribution given the tokens
// before it; window b's draws come from its own generator, seeded by
// (seed, step, window). The windows are sampled together, one forward pass
// over all of them per sampled position and the head's logits of each
// window's last position only; a window's tokens do not depend on which
// windows share its batch (or its worker): every row of a pass is computed
// alone (TestSamplesDoNotDependOnTheBatch).
func (e *Engine) sample(ctx context.Context, windows []int32, step uint64, idx []int, p int, temp float64) error {
	T, V, n := e.T, e.model.Config.Vocab, len(idx)
	if cap(e.roll) < n*(T+1) {
		e.roll = make([]int32, e.maxB*(T+1))
	}
	e.roll = e.roll[:n*(T+1)]
	if cap(e.probs64) < V {
		e.probs64 = make([]float64, V)
	}
	if cap(e.sampleIn) < n*T {
		e.sampleIn = make([]int32, e.maxB*T)
		e.sampleLogits = make([]float32, V)
		e.rngs = make([]*lm.RNG, e.maxB)
	}
	rngs := e.rngs[:n]
	for i, b := range idx {
		copy(e.roll[i*(T+1):i*(T+1)+p], e.in[b*T:b*T+p])
		rngs[i] = lm.NewRNG(e.onPolicy.seedOf(step, windows[b]))
	}
	lg := e.sampleLogits[:V]
	for t := p; t <= T; t++ {
		if e.cancelHook != nil {
			e.cancelHook()
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		in := e.sampleIn[:n*t]
		for i := range n {
			copy(in[i*t:(i+1)*t], e.roll[i*(T+1):i*(T+1)+t])
		}
		if err := e.model.ForwardHidden(in, n, t); err != nil {
			return fmt.Errorf("sampling on-policy continuations: %w", err)
		}
		// The logits of position t-1 give token t.
		for i := range n {
			e.model.HeadLogits(lg, i*t+t-1, 1)
			e.roll[i*(T+1)+t] = draw(lg, temp, e.probs64[:V], rngs[i])
		}
	}
	return nil
}

// draw samples an id from softmax(z/temp) by inverting its distribution
// with one uniform draw.
func draw(z []float32, temp float64, probs []float64, r *lm.RNG) int32 {
	m := math.Inf(-1)
	for _, v := range z {
		m = max(m, float64(v))
	}
	var sum float64
	for i, v := range z {
		probs[i] = math.Exp((float64(v) - m) / temp)
		sum += probs[i]
	}
	u := r.Float64() * sum
	for i, pr := range probs[:len(z)] {
		if u < pr {
			return int32(i)
		}
		u -= pr
	}
	return int32(len(z) - 1)
}

// SampleKL is an evaluation on the model's own samples: the mean reverse KL
// from the model to the synthetic truth (smoothed by eps, so that it is
// finite: P' = (1-eps) P + eps/V) at every position that predicts a token
// the model sampled after the first prefix tokens of each window.
func (e *Engine) SampleKL(windows []int, prefix int, temp, eps float64, seed uint64) (float64, error) {
	if e.K == 0 {
		return 0, fmt.Errorf("%w: the exact KL on samples needs the synthetic truth", ErrOption)
	}
	T, V, K := e.T, e.model.Config.Vocab, e.K
	if prefix < 1 || prefix >= T {
		return 0, fmt.Errorf("%w: prefix %d, want 1..%d", ErrOption, prefix, T-1)
	}
	saved := e.onPolicy
	defer func() { e.onPolicy = saved }()
	e.onPolicy.Seed = seed
	opts := loss.DefaultOptions()
	opts.Direction, opts.LabelSmoothing = loss.Reverse, eps
	var sum float64
	var tokens int
	ws := make([]int32, 0, e.maxB)
	idx := make([]int, 0, e.maxB)
	for lo := 0; lo < len(windows); lo += e.maxB {
		ws, idx = ws[:0], idx[:0]
		for i, w := range windows[lo:min(lo+e.maxB, len(windows))] {
			ws, idx = append(ws, int32(w)), append(idx, i)
		}
		if err := e.load(ws); err != nil {
			return 0, err
		}
		if err := e.sample(context.Background(), ws, 0, idx, prefix, temp); err != nil {
			return 0, err
		}
		B := len(ws)
		for i := range idx {
			seq := e.roll[i*(T+1) : (i+1)*(T+1)]
			copy(e.in[i*T:(i+1)*T], seq[:T])
			copy(e.hard[i*T:(i+1)*T], seq[1:])
			for t := 0; t < prefix-1; t++ {
				e.hard[i*T+t] = opts.IgnoreIndex
			}
			e.data.TruthOf(seq[:T], e.ids[i*T*K:(i+1)*T*K], e.probs[i*T*K:(i+1)*T*K])
		}
		err := e.model.Forward(e.in[:B*T], B, T, func(logits []float32, first, rows int) error {
			r, err := e.lossc.Forward(logits, rows, V, e.target(TargetSoft, first, rows), opts, nil)
			sum += r.Sum
			tokens += r.Rows
			return err
		})
		if err != nil {
			return 0, fmt.Errorf("evaluating on samples: %w", err)
		}
	}
	if tokens == 0 {
		return 0, nil
	}
	return sum / float64(tokens), nil
}
