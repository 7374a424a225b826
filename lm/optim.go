package lm

import (
	"fmt"
	"math"

	"github.com/klring/klring/kernels"
)

// Optimizer updates a flat parameter buffer from its gradient. The same
// implementation, called in the same order on the same inputs, gives
// bit-identical results on every replica (the update is element-wise; how the
// work is split over threads does not change a single bit).
type Optimizer interface {
	Step(params, grads []float32, lr float64)
}

// AdamWOptions are AdamW's hyperparameters.
type AdamWOptions struct {
	Beta1       float64 // default 0.9
	Beta2       float64 // default 0.95 (nanoGPT, llm.c)
	Eps         float64 // default 1e-8
	WeightDecay float64 // default 0.1; decoupled; applied to Tensor.Decay tensors only
}

// DefaultAdamWOptions returns the defaults documented on AdamWOptions.
func DefaultAdamWOptions() AdamWOptions {
	return AdamWOptions{Beta1: 0.9, Beta2: 0.95, Eps: 1e-8, WeightDecay: 0.1}
}

// Validate reports options AdamW cannot use.
func (o AdamWOptions) Validate() error {
	switch {
	case !(o.Beta1 >= 0 && o.Beta1 < 1):
		return fmt.Errorf("beta1 = %g, want [0, 1): %w", o.Beta1, ErrOptimizer)
	case !(o.Beta2 >= 0 && o.Beta2 < 1):
		return fmt.Errorf("beta2 = %g, want [0, 1): %w", o.Beta2, ErrOptimizer)
	case !(o.Eps > 0):
		return fmt.Errorf("eps = %g, want > 0: %w", o.Eps, ErrOptimizer)
	case !(o.WeightDecay >= 0) || math.IsInf(o.WeightDecay, 0):
		return fmt.Errorf("weight_decay = %g, want >= 0: %w", o.WeightDecay, ErrOptimizer)
	}
	return nil
}

// AdamState is AdamW's state, flat in the parameter layout. A checkpoint
// carries it (TrainerState.Adam = &opt.State); resume with opt.State = *st.Adam.
type AdamState struct {
	T int64     // steps taken (bias correction uses T after the increment)
	M []float32 // first moment; [NumParams]
	V []float32 // second moment; [NumParams]
}

// segment is a run of the flat buffer with one decay setting.
type segment struct {
	lo, hi int
	decay  bool
}

// AdamW is Adam with decoupled weight decay (Loshchilov and Hutter), as
// PyTorch's torch.optim.AdamW: p -= lr*wd*p (decaying tensors only), then
// p -= lr * mhat / (sqrt(vhat) + eps) with bias-corrected moments. Every
// product is rounded on its own (no fused multiply-add, in Go or assembly),
// so replicas on different CPUs compute the same bits.
//
// Weight decay: every 2-D tensor decays, the token and position embeddings
// included (as GPT-2 and nanoGPT); biases and LayerNorm parameters do not.
// Because the head is tied, wte decays once, as a matrix.
type AdamW struct {
	Options AdamWOptions
	State   AdamState
	segs    []segment
	run     *runner
}

// NewAdamW returns AdamW for parameters laid out by layout, with zero moments.
func NewAdamW(layout []Tensor, opts AdamWOptions, pool *kernels.Pool) (*AdamW, error) {
	if err := opts.Validate(); err != nil {
		return nil, fmt.Errorf("new adamw: %w", err)
	}
	n := 0
	var segs []segment
	for _, t := range layout {
		if k := len(segs); k > 0 && segs[k-1].decay == t.Decay && segs[k-1].hi == t.Offset {
			segs[k-1].hi += t.Size
		} else {
			segs = append(segs, segment{t.Offset, t.Offset + t.Size, t.Decay})
		}
		n = max(n, t.Offset+t.Size)
	}
	return &AdamW{Options: opts, State: AdamState{M: make([]float32, n), V: make([]float32, n)}, segs: segs, run: newRunner(pool)}, nil
}

// Step applies one update to params from grads ([NumParams] each; a longer
// grads, such as Grads[:n+2] with its two trailing slots, is cut to n).
func (o *AdamW) Step(params, grads []float32, lr float64) {
	n := len(o.State.M)
	if len(params) != n || len(grads) < n || len(o.State.V) != n {
		panic(fmt.Sprintf("lm: adamw over %d params, %d grads, moments %d/%d", len(params), len(grads), n, len(o.State.V)))
	}
	o.State.T++
	t := float64(o.State.T)
	b1, b2 := float32(o.Options.Beta1), float32(o.Options.Beta2)
	c1 := float32(1 / (1 - math.Pow(o.Options.Beta1, t)))
	c2 := float32(1 / (1 - math.Pow(o.Options.Beta2, t)))
	keep := float32(1 - lr*o.Options.WeightDecay)
	m, v := o.State.M, o.State.V
	for _, s := range o.segs {
		k := float32(1)
		if s.decay {
			k = keep
		}
		a := &o.run.args
		a.s = [6][]float32{params[s.lo:s.hi], grads[s.lo:s.hi], m[s.lo:s.hi], v[s.lo:s.hi]}
		a.x = [9]float32{b1, 1 - b1, b2, 1 - b2, c1, c2, float32(o.Options.Eps), float32(lr), k}
		o.run.run(s.hi-s.lo, 16384, adamwRange)
	}
}

func adamwRange(a *loopArgs, lo, hi int) {
	adamwSlice(a.s[0][lo:hi], a.s[1][lo:hi], a.s[2][lo:hi], a.s[3][lo:hi], &a.x)
}

// SGD is plain stochastic gradient descent: p -= lr * g.
type SGD struct {
	run *runner
}

// NewSGD returns SGD running its loop on pool.
func NewSGD(pool *kernels.Pool) *SGD { return &SGD{run: newRunner(pool)} }

// Step applies p -= lr*g over params; grads may be longer (trailing slots).
func (o *SGD) Step(params, grads []float32, lr float64) {
	if len(grads) < len(params) {
		panic(fmt.Sprintf("lm: sgd over %d params, %d grads", len(params), len(grads)))
	}
	o.run.args.s[0], o.run.args.s[1] = params, grads
	o.run.args.x[0] = float32(lr)
	o.run.run(len(params), 16384, sgdRange)
}

func sgdRange(a *loopArgs, lo, hi int) {
	p, g, step := a.s[0][lo:hi], a.s[1][lo:hi], a.x[0]
	for i := range p {
		p[i] -= step * g[i]
	}
}

// ClipGradNorm scales grads in place so their global L2 norm is at most
// maxNorm (when maxNorm > 0), and returns the norm before clipping. The sum of
// squares runs in float64 in index order, so the result is deterministic. A
// non-finite norm is returned and grads are left as they are: the caller
// decides (skip the step).
func ClipGradNorm(grads []float32, maxNorm float64) float64 {
	var s float64
	for _, g := range grads {
		s += float64(float64(g) * float64(g)) // the conversion forbids a fused multiply-add
	}
	norm := math.Sqrt(s)
	if maxNorm > 0 && norm > maxNorm && !math.IsInf(norm, 0) && !math.IsNaN(norm) {
		k := float32(maxNorm / (norm + 1e-6))
		for i := range grads {
			grads[i] *= k
		}
	}
	return norm
}

// Schedule is a learning-rate schedule.
//
//	"constant": Base at every step after the warmup.
//	"cosine":   after the warmup, cosine decay from Base to Min at TotalSteps,
//	            Min after it.
//
// Both warm up linearly over WarmupSteps: Base*(step+1)/WarmupSteps for
// step < WarmupSteps. Steps count from 0.
type Schedule struct {
	Kind        string  // "constant" or "cosine"; "" means constant
	Base        float64 // peak learning rate
	Min         float64 // floor of the cosine decay
	WarmupSteps int64
	TotalSteps  int64 // cosine: the step at which MinLR is reached
}

// Validate reports a schedule LR cannot follow.
func (s Schedule) Validate() error {
	switch {
	case s.Kind != "" && s.Kind != "constant" && s.Kind != "cosine":
		return fmt.Errorf("kind %q, want constant or cosine: %w", s.Kind, ErrSchedule)
	case !(s.Base > 0) || math.IsInf(s.Base, 0):
		return fmt.Errorf("lr = %g, want > 0: %w", s.Base, ErrSchedule)
	case s.WarmupSteps < 0:
		return fmt.Errorf("warmup_steps = %d, want >= 0: %w", s.WarmupSteps, ErrSchedule)
	case s.Kind == "cosine" && !(s.Min >= 0 && s.Min <= s.Base):
		return fmt.Errorf("min_lr = %g, want 0..lr %g: %w", s.Min, s.Base, ErrSchedule)
	case s.Kind == "cosine" && s.TotalSteps <= s.WarmupSteps:
		return fmt.Errorf("total_steps = %d, want > warmup_steps %d: %w", s.TotalSteps, s.WarmupSteps, ErrSchedule)
	}
	return nil
}

// LR returns the learning rate of step (from 0).
func (s Schedule) LR(step int64) float64 {
	if step < s.WarmupSteps {
		return s.Base * float64(step+1) / float64(s.WarmupSteps)
	}
	if s.Kind != "cosine" {
		return s.Base
	}
	if step >= s.TotalSteps {
		return s.Min
	}
	ratio := float64(step-s.WarmupSteps) / float64(s.TotalSteps-s.WarmupSteps)
	return s.Min + 0.5*(1+math.Cos(math.Pi*ratio))*(s.Base-s.Min)
}
