package engine

import (
	"errors"
	"fmt"
	"math"

	"github.com/klring/klring/kernels"
	"github.com/klring/klring/lm"
	"github.com/klring/klring/loss"
	"github.com/klring/klring/shard"
)

// Target says what the model is trained to match.
type Target int

// Targets.
const (
	TargetAuto Target = iota // soft where the data knows its true distribution, else hard
	TargetHard               // the actual next token (KL is then the cross-entropy)
	TargetSoft               // the data's exact next-token distribution (synthetic data)
)

var targetNames = [...]string{"auto", "hard", "soft"}

func (t Target) String() string {
	if t >= 0 && int(t) < len(targetNames) {
		return targetNames[t]
	}
	return fmt.Sprintf("target(%d)", int(t))
}

// ErrOption is wrapped by every invalid option.
var ErrOption = errors.New("engine: invalid option")

// ParseTarget parses auto, hard or soft.
func ParseTarget(s string) (Target, error) {
	for i, n := range targetNames {
		if s == n {
			return Target(i), nil
		}
	}
	return 0, fmt.Errorf("%w: target %q, want auto, hard or soft", ErrOption, s)
}

// MarshalText and UnmarshalText make a Target a configuration value.
func (t Target) MarshalText() ([]byte, error) { return []byte(t.String()), nil }
func (t *Target) UnmarshalText(b []byte) error {
	v, err := ParseTarget(string(b))
	if err == nil {
		*t = v
	}
	return err
}

// Options configure an Engine.
type Options struct {
	// Loss is the divergence: direction, beta, temperature. Its label
	// smoothing is ignored: LabelSmoothing below applies to both targets.
	Loss loss.Options
	// Target is TargetHard or TargetSoft (Resolve turns auto into one).
	Target Target
	// LabelSmoothing eps in [0, 1): P' = (1-eps) P + eps/V, for hard and soft
	// targets (training only; evaluation uses the plain targets).
	LabelSmoothing float64
	// MaxWindows is the largest number of windows of one Gradient or
	// evaluation batch; buffers are sized for it once.
	MaxWindows int
	// TokenBytes, when not nil, is the number of bytes of text a token id
	// stands for: evaluations then report bits per byte.
	TokenBytes func(id int32) int
}

// Validate checks the options and that they make a finite loss.
func (o Options) Validate() error {
	lo := o.Loss
	lo.LabelSmoothing = 0
	if err := lo.Validate(); err != nil {
		return err
	}
	switch {
	case o.Target != TargetHard && o.Target != TargetSoft:
		return fmt.Errorf("%w: target %v (resolve auto first)", ErrOption, o.Target)
	case !(o.LabelSmoothing >= 0 && o.LabelSmoothing < 1):
		return fmt.Errorf("%w: label smoothing %v, want [0, 1)", ErrOption, o.LabelSmoothing)
	case o.MaxWindows < 1:
		return fmt.Errorf("%w: max windows %d", ErrOption, o.MaxWindows)
	case o.Target == TargetHard && o.Loss.Direction != loss.Forward:
		return fmt.Errorf("%w: loss.direction = %v needs soft targets (synthetic data); with hard targets only forward KL is finite", ErrOption, o.Loss.Direction)
	case o.Target == TargetSoft && o.Loss.Direction == loss.Reverse && o.LabelSmoothing == 0:
		return fmt.Errorf("%w: loss.direction = reverse with soft targets needs loss.label_smoothing > 0: the true distribution gives zero probability to most tokens, where D_KL(Q||P) is infinite", ErrOption)
	}
	return nil
}

// Resolve turns TargetAuto into hard or soft for data, and checks that soft
// targets are there.
func Resolve(t Target, data *shard.Dataset) (Target, error) {
	switch {
	case t == TargetAuto && data.HasTruth():
		return TargetSoft, nil
	case t == TargetAuto:
		return TargetHard, nil
	case t == TargetSoft && !data.HasTruth():
		return 0, fmt.Errorf("%w: loss.target = soft: data.source %s has no soft targets (only synthetic does)", ErrOption, data.Source())
	}
	return t, nil
}

// Engine computes gradients and evaluations of one model on one data set.
// Its buffers are sized once for MaxWindows windows and reused. An Engine is
// not safe for concurrent use.
type Engine struct {
	model *lm.Model
	lossc *loss.Computer
	opts  loss.Options // training loss
	data  *shard.Dataset
	soft  bool
	keep  float32 // soft targets: 1 - label smoothing
	T     int
	maxB  int
	K     int

	tokenBytes func(int32) int

	win   []int32   // [T+1] one window
	in    []int32   // [maxB*T] inputs
	hard  []int32   // [maxB*T] next tokens
	ids   []int32   // [maxB*T*K] true next-token ids (soft targets)
	probs []float32 // [maxB*T*K] their probabilities
}

// New returns an engine for model on data, its loss split over pool.
func New(o Options, model *lm.Model, data *shard.Dataset, pool *kernels.Pool) (*Engine, error) {
	if err := o.Validate(); err != nil {
		return nil, err
	}
	if data.Vocab() > model.Config.Vocab {
		return nil, fmt.Errorf("%w: data %s has vocabulary %d, the model only %d", ErrOption, data.Source(), data.Vocab(), model.Config.Vocab)
	}
	if data.Ctx() != model.Config.Ctx {
		return nil, fmt.Errorf("%w: data windows of %d tokens, the model's context is %d", ErrOption, data.Ctx(), model.Config.Ctx)
	}
	lo := o.Loss
	lo.LabelSmoothing = 0
	if o.Target == TargetHard {
		lo.LabelSmoothing = o.LabelSmoothing
	}
	T, B := model.Config.Ctx, o.MaxWindows
	e := &Engine{model: model, lossc: loss.NewComputer(pool), opts: lo, data: data,
		soft: o.Target == TargetSoft, keep: float32(1 - o.LabelSmoothing), T: T, maxB: B, tokenBytes: o.TokenBytes,
		win: make([]int32, T+1), in: make([]int32, B*T), hard: make([]int32, B*T)}
	if data.HasTruth() {
		e.K = data.TruthK()
		e.ids = make([]int32, B*T*e.K)
		e.probs = make([]float32, B*T*e.K)
	}
	return e, nil
}

// Model is the engine's model.
func (e *Engine) Model() *lm.Model { return e.model }

// load fills the input and target buffers with windows; smooth applies the
// soft targets' label smoothing (training, not evaluation).
func (e *Engine) load(windows []int32, smooth bool) {
	T := e.T
	for b, id := range windows {
		e.data.Window(int(id), e.win)
		copy(e.in[b*T:(b+1)*T], e.win[:T])
		copy(e.hard[b*T:(b+1)*T], e.win[1:T+1])
		if e.K > 0 {
			p := e.probs[b*T*e.K : (b+1)*T*e.K]
			e.data.Truth(int(id), e.ids[b*T*e.K:(b+1)*T*e.K], p)
			if smooth && e.keep != 1 && e.soft {
				// P' = (1-eps) P + eps/V: the listed tokens here, the
				// unlisted ones by loss/, which spreads a sparse row's
				// missing mass evenly over them.
				u := (1 - e.keep) / float32(e.model.Config.Vocab)
				for i := range p {
					p[i] = p[i]*e.keep + u
				}
			}
		}
	}
}

func (e *Engine) target(first, rows int, soft bool) loss.Target {
	if soft {
		K := e.K
		return loss.Target{SparseIDs: e.ids[first*K : (first+rows)*K], SparseProbs: e.probs[first*K : (first+rows)*K], K: K}
	}
	return loss.Target{Hard: e.hard[first : first+rows]}
}

// Sums are the totals of a Gradient call.
type Sums struct {
	Loss   float64 // sum of the per-token training losses
	CE     float64 // sum of the cross-entropies of the actual next tokens
	Tokens int     // target tokens
}

// Gradient zeroes the model's gradient and accumulates into it the gradient
// of the SUM of the per-token losses over windows. A non-finite loss is an
// error (the gradient is then not to be used).
func (e *Engine) Gradient(windows []int32) (Sums, error) {
	var s Sums
	if len(windows) > e.maxB {
		return s, fmt.Errorf("%d windows, more than the %d the engine was sized for", len(windows), e.maxB)
	}
	e.model.ZeroGrad()
	if len(windows) == 0 {
		return s, nil
	}
	e.load(windows, true)
	B, T, V := len(windows), e.T, e.model.Config.Vocab
	ceOpts := loss.DefaultOptions()
	plainCE := !e.soft && e.opts == ceOpts
	err := e.model.ForwardBackward(e.in[:B*T], B, T, func(logits []float32, first, rows int) error {
		if !plainCE {
			r, err := e.lossc.Forward(logits, rows, V, e.target(first, rows, false), ceOpts, nil)
			if err != nil {
				return err
			}
			s.CE += r.Sum
		}
		r, err := e.lossc.ForwardBackward(logits, rows, V, e.target(first, rows, e.soft), e.opts, 1, nil)
		if err != nil {
			return err
		}
		s.Loss += r.Sum
		s.Tokens += r.Rows
		return nil
	})
	if plainCE {
		s.CE = s.Loss
	}
	if err == nil && (math.IsNaN(s.Loss) || math.IsInf(s.Loss, 0)) {
		err = fmt.Errorf("loss sum %v over %d tokens", s.Loss, s.Tokens)
	}
	return s, err
}

// Eval is a held-out evaluation.
type Eval struct {
	CE      float64 // mean cross-entropy of the actual next tokens, nats/token
	KL      float64 // mean exact KL from the true distribution (synthetic), else -1
	Floor   float64 // mean entropy of the true distribution (synthetic), else -1
	BPB     float64 // bits per byte of text (Options.TokenBytes), else -1
	Bytes   int64   // bytes of text the target tokens stand for
	Tokens  int
	Windows int
}

// KLPtr is KL, or nil when it is unknown.
func (r Eval) KLPtr() *float64 {
	if r.KL < 0 {
		return nil
	}
	v := r.KL
	return &v
}

// Evaluate computes the mean cross-entropy (and, for synthetic data, the
// exact KL to the truth and the entropy floor) over windows, in batches of
// MaxWindows.
func (e *Engine) Evaluate(windows []int) (Eval, error) {
	res := Eval{KL: -1, Floor: -1, BPB: -1, Windows: len(windows)}
	T, V := e.T, e.model.Config.Vocab
	var ce, kl float64
	opts := loss.DefaultOptions()
	for lo := 0; lo < len(windows); lo += e.maxB {
		hi := min(lo+e.maxB, len(windows))
		ws := make([]int32, hi-lo)
		for i, w := range windows[lo:hi] {
			ws[i] = int32(w)
		}
		e.load(ws, false)
		B := len(ws)
		err := e.model.Forward(e.in[:B*T], B, T, func(logits []float32, first, rows int) error {
			if e.K > 0 {
				r, err := e.lossc.Forward(logits, rows, V, e.target(first, rows, true), opts, nil)
				if err != nil {
					return err
				}
				kl += r.Sum
			}
			r, err := e.lossc.Forward(logits, rows, V, e.target(first, rows, false), opts, nil)
			if err != nil {
				return err
			}
			ce += r.Sum
			res.Tokens += r.Rows
			if e.tokenBytes != nil {
				for _, id := range e.hard[first : first+rows] {
					res.Bytes += int64(max(e.tokenBytes(id), 0))
				}
			}
			return nil
		})
		if err != nil {
			return res, fmt.Errorf("evaluating: %w", err)
		}
	}
	if res.Tokens > 0 {
		res.CE = ce / float64(res.Tokens)
		if e.K > 0 {
			res.KL = kl / float64(res.Tokens)
		}
		if res.Bytes > 0 {
			res.BPB = ce / math.Ln2 / float64(res.Bytes)
		}
	}
	if e.data.HasTruth() {
		res.Floor = e.data.EntropyFloor(windows)
	}
	return res, nil
}
