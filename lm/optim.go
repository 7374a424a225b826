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
	partial []float64 // per block of the gradient norm (StepClip)
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
	st := AdamState{M: make([]float32, n), V: make([]float32, n)}
	adviseHuge(st.M)
	adviseHuge(st.V)
	return &AdamW{Options: opts, State: st, segs: segs, run: newRunner(pool)}, nil
}

// Step applies one update to params from grads ([NumParams] each; a longer
// grads, such as Grads[:n+2] with its two trailing slots, is cut to n).
func (o *AdamW) Step(params, grads []float32, lr float64) {
	o.step(params, grads, lr, 1)
}

// StepClip is ClipGradNorm(grads, maxNorm) followed by Step, fused: one
// parallel, vectorised pass computes the norm and a second applies the
// update with the clip factor folded into it, leaving grads unchanged. It
// returns the norm before clipping. A non-finite norm skips the step
// (params and state stay as they are), as a trainer must. The parameters and
// moments it leaves are bit for bit those of ClipGradNorm then Step, on every
// CPU and for any number of threads.
func (o *AdamW) StepClip(params, grads []float32, lr, maxNorm float64) float64 {
	n := len(o.State.M)
	if len(grads) < n {
		panic(fmt.Sprintf("lm: adamw over %d params, %d grads", n, len(grads)))
	}
	norm := o.gradNorm(grads[:n])
	if math.IsNaN(norm) || math.IsInf(norm, 0) {
		return norm
	}
	o.step(params, grads, lr, clipFactor(norm, maxNorm))
	return norm
}

// gradNorm is the norm of ClipGradNorm, its blocks summed in parallel.
func (o *AdamW) gradNorm(g []float32) float64 {
	nb := (len(g) + normBlock - 1) / normBlock
	if cap(o.partial) < nb {
		o.partial = make([]float64, nb)
	}
	part := o.partial[:nb]
	o.run.args.s[0] = g
	o.run.args.p64 = part
	o.run.run(nb, 1, normBlocks)
	o.run.args.p64 = nil
	var s float64
	for _, v := range part {
		s += v
	}
	return math.Sqrt(s)
}

func normBlocks(a *loopArgs, lo, hi int) {
	g := a.s[0]
	for b := lo; b < hi; b++ {
		a.p64[b] = blockSquares(g[b*normBlock : min((b+1)*normBlock, len(g))])
	}
}

// step is Step with every gradient first multiplied by clip (rounded to
// float32, as ClipGradNorm's in-place scaling; clip == 1 changes no bit).
func (o *AdamW) step(params, grads []float32, lr float64, clip float32) {
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
	a := &o.run.args
	a.s = [8][]float32{params, grads[:n], o.State.M, o.State.V}
	a.x = [10]float32{b1, 1 - b1, b2, 1 - b2, c1, c2, float32(o.Options.Eps), float32(lr), keep, clip}
	a.segs = o.segs
	o.run.run(n, 16384, adamwRange)
	a.segs = nil
}

// adamwRange updates [lo, hi) of the flat buffer, segment by segment (the
// decay factor is the segment's).
func adamwRange(a *loopArgs, lo, hi int) {
	c := a.x
	keep := c[8]
	for _, s := range a.segs {
		l, h := max(lo, s.lo), min(hi, s.hi)
		if l >= h {
			continue
		}
		c[8] = 1
		if s.decay {
			c[8] = keep
		}
		adamwSlice(a.s[0][l:h], a.s[1][l:h], a.s[2][l:h], a.s[3][l:h], &c)
	}
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
// maxNorm (when maxNorm > 0), and returns the norm before clipping. The sum
// of squares runs in float64 in a fixed order (blocks of normBlock elements
// in index order; within a block 16 lanes, element i in lane i mod 16, each
// lane in index order, then the lanes in order), whatever the CPU, so the
// result is deterministic. A non-finite norm is returned and grads are left
// as they are: the caller decides (skip the step).
func ClipGradNorm(grads []float32, maxNorm float64) float64 {
	var s float64
	for lo := 0; lo < len(grads); lo += normBlock {
		s += blockSquares(grads[lo:min(lo+normBlock, len(grads))])
	}
	norm := math.Sqrt(s)
	if k := clipFactor(norm, maxNorm); k != 1 {
		for i := range grads {
			grads[i] *= k
		}
	}
	return norm
}

// normBlock is the block of the gradient norm's fixed summation order.
const normBlock = 1 << 14

// blockSquares is the float64 sum of squares of one block in the order of
// ClipGradNorm. Squares of float32 values are exact in float64.
func blockSquares(g []float32) float64 {
	var acc [16]float64
	done := 0
	if haveAVX2 && len(g) >= 16 {
		done = len(g) &^ 15
		sumSquaresAVX2(&g[0], done, &acc)
	}
	for i := done; i < len(g); i++ {
		acc[i%16] += float64(float64(g[i]) * float64(g[i])) // the conversion forbids a fused multiply-add
	}
	var s float64
	for _, v := range acc {
		s += v
	}
	return s
}

// clipFactor is the factor ClipGradNorm scales by: 1 unless maxNorm > 0 and
// the norm is finite and above it.
func clipFactor(norm, maxNorm float64) float32 {
	if maxNorm > 0 && norm > maxNorm && !math.IsInf(norm, 0) && !math.IsNaN(norm) {
		return float32(maxNorm / (norm + 1e-6))
	}
	return 1
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
