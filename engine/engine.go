package engine

import (
	"context"
	"errors"
	"fmt"
	"math"

	"github.com/klring/klring/kernels"
	"github.com/klring/klring/lm"
	"github.com/klring/klring/loss"
	"github.com/klring/klring/shard"
	"github.com/klring/klring/teacherstore"
)

// Target says what the model is trained to match.
type Target int

// Targets.
const (
	TargetAuto    Target = iota // soft where the data knows its true distribution, else hard
	TargetHard                  // the actual next token (KL is then the cross-entropy)
	TargetSoft                  // the data's exact next-token distribution (synthetic data)
	TargetTeacher               // a teacher model's next-token distribution (distillation)
)

var targetNames = [...]string{"auto", "hard", "soft", "teacher"}

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
	return 0, fmt.Errorf("%w: target %q, want auto, hard, soft or teacher", ErrOption, s)
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
	// Loss is the training loss: direction, beta, temperatures, T^2,
	// hard weight, top-k and its tail, label smoothing (applied by loss to
	// hard, soft and teacher targets alike; evaluation uses plain targets).
	Loss loss.Options
	// Target is TargetHard, TargetSoft or TargetTeacher (Resolve turns auto
	// into one).
	Target Target
	// Teacher is the model whose distribution is the target of
	// TargetTeacher, run forward only (lm.NewInference); its vocabulary is
	// the model's and its context at least the model's.
	Teacher *lm.Model
	// Store, instead of Teacher, is a teacher's precomputed top-k
	// distribution over every window of the data (teacherstore), at the
	// store's temperature: TargetTeacher reads its rows rather than
	// running a model. Loss.TeacherTopK, when not 0, cuts them to fewer.
	Store *teacherstore.Store
	// MaxWindows is the largest number of windows of one forward pass:
	// Gradient and Evaluate take any number of windows, in passes of at
	// most MaxWindows (micro-batches), and the buffers (the model's
	// activations among them) are sized for one pass.
	MaxWindows int
	// TokenBytes, when not nil, is the number of bytes of text a token id
	// stands for: evaluations then report bits per byte.
	TokenBytes func(id int32) int
	// OnPolicy makes some windows of each batch the model's own: see
	// OnPolicy.
	OnPolicy OnPolicy
}

// OnPolicy configures on-policy training (GKD, MiniLLM): on a fraction of
// each batch's windows the model first samples a continuation of the
// window's first Prefix tokens, then the target (the teacher, or the
// synthetic truth) scores every position that predicts a sampled token,
// and only those positions count. Which windows, and what is sampled,
// depend only on (Seed, step, window): a retried step samples the same
// tokens whatever the world size.
type OnPolicy struct {
	Fraction    float64 // of the windows, in [0, 1]; 0: off
	Prefix      int     // tokens kept, 1..T-1; 0: T/2
	Temperature float64 // of the sampling, > 0
	Seed        uint64
}

// Validate checks the options and that they make a finite loss.
func (o Options) Validate() error {
	if err := o.Loss.Validate(); err != nil {
		return err
	}
	switch {
	case o.Target != TargetHard && o.Target != TargetSoft && o.Target != TargetTeacher:
		return fmt.Errorf("%w: target %v (resolve auto first)", ErrOption, o.Target)
	case o.MaxWindows < 1:
		return fmt.Errorf("%w: max windows %d", ErrOption, o.MaxWindows)
	case o.Teacher != nil && o.Store != nil:
		return fmt.Errorf("%w: a teacher model and a teacher store: one or the other", ErrOption)
	case (o.Target == TargetTeacher) != (o.Teacher != nil || o.Store != nil):
		return fmt.Errorf("%w: target %v with teacher %v", ErrOption, o.Target, o.Teacher != nil || o.Store != nil)
	case o.Store != nil && o.OnPolicy.Fraction > 0:
		return fmt.Errorf("%w: on-policy training with a teacher store: a store holds the teacher's distribution on the data's windows, not on the student's samples (use loss.teacher)", ErrOption)
	case !(o.OnPolicy.Fraction >= 0 && o.OnPolicy.Fraction <= 1):
		return fmt.Errorf("%w: on-policy fraction %v, want [0, 1]", ErrOption, o.OnPolicy.Fraction)
	case o.OnPolicy.Fraction > 0 && !(o.OnPolicy.Temperature > 0):
		return fmt.Errorf("%w: on-policy temperature %v, want > 0", ErrOption, o.OnPolicy.Temperature)
	case o.OnPolicy.Fraction > 0 && o.Target == TargetHard:
		return fmt.Errorf("%w: on-policy training needs a target that scores the model's own tokens: a teacher, or the synthetic truth", ErrOption)
	case o.Target == TargetHard && o.Loss.Direction != loss.Forward:
		return fmt.Errorf("%w: loss.direction = %v needs soft targets (synthetic data, or a teacher); with hard targets only forward KL is finite", ErrOption, o.Loss.Direction)
	case o.Target == TargetSoft && o.Loss.Direction == loss.Reverse && o.Loss.LabelSmoothing == 0:
		return fmt.Errorf("%w: loss.direction = reverse with soft targets needs loss.label_smoothing > 0: the true distribution gives zero probability to most tokens, where D_KL(Q||P) is infinite", ErrOption)
	}
	return nil
}

// Resolve turns TargetAuto into the teacher's distribution (with a
// teacher), the data's truth (synthetic data) or the next tokens, and
// checks that soft targets are there.
func Resolve(t Target, data *shard.Dataset, teacher bool) (Target, error) {
	switch {
	case t == TargetAuto && teacher:
		return TargetTeacher, nil
	case t == TargetAuto && data.HasTruth():
		return TargetSoft, nil
	case t == TargetAuto:
		return TargetHard, nil
	case t == TargetSoft && !data.HasTruth():
		return 0, fmt.Errorf("%w: loss.target = soft: data.source %s has no soft targets (only synthetic does)", ErrOption, data.Source())
	case t == TargetTeacher && !teacher:
		return 0, fmt.Errorf("%w: loss.target = teacher needs loss.teacher", ErrOption)
	}
	return t, nil
}

// Engine computes gradients and evaluations of one model on one data set.
// Its buffers are sized once for MaxWindows windows and reused. An Engine is
// not safe for concurrent use.
type Engine struct {
	model   *lm.Model
	teacher *lm.Model // nil without a live teacher
	store   *teacherstore.Store
	storeK  int       // entries per position read from the store
	sids    []int32   // [maxB*T*storeK] the store's top-k ids
	sprobs  []float32 // [maxB*T*storeK] their probabilities
	lossc   *loss.Computer
	opts    loss.Options // training loss
	kind    Target
	data    *shard.Dataset
	T       int
	maxB    int
	K       int

	tokenBytes   func(int32) int
	onPolicy     OnPolicy
	rolled       []int     // batch positions of the windows rolled out this step
	roll         []int32   // [maxB*(T+1)] their tokens
	probs64      []float64 // [V] sampling scratch
	cancelHook   func()    // tests: called before each sampled token
	sampleIn     []int32   // [maxB*T] the sequences of one sampling pass
	sampleLogits []float32 // [V] one row's logits
	rngs         []*lm.RNG // [maxB] one generator per sampled window

	win     []int32     // [T+1] one window
	in      []int32     // [maxB*T] inputs
	hard    []int32     // [maxB*T] next tokens
	ids     []int32     // [maxB*T*K] true next-token ids (synthetic data)
	probs   []float32   // [maxB*T*K] their probabilities
	tlogits []float32   // [rows of a head chunk x V] the teacher's logits
	unif    []float32   // [rows of a head chunk x V] 1/V
	blockCE *lm.BlockCE // the loss over a large vocabulary (useBlockCE), else nil
}

// New returns an engine for model on data, its loss split over pool.
func New(o Options, model *lm.Model, data *shard.Dataset, pool *kernels.Pool) (*Engine, error) {
	if err := o.Validate(); err != nil {
		return nil, err
	}
	cfg := model.Config
	if data.Vocab() > cfg.Vocab {
		return nil, fmt.Errorf("%w: data %s has vocabulary %d, the model only %d", ErrOption, data.Source(), data.Vocab(), cfg.Vocab)
	}
	// Windows shorter than the model's context are fine (a teacher with a
	// longer context evaluated on the student's windows); longer are not.
	T, B := data.Ctx(), o.MaxWindows
	if T > cfg.Ctx {
		return nil, fmt.Errorf("%w: data windows of %d tokens, longer than the model's context %d", ErrOption, T, cfg.Ctx)
	}
	if t := o.Teacher; t != nil && (t.Config.Vocab != cfg.Vocab || t.Config.Ctx < T) {
		return nil, fmt.Errorf("%w: the teacher's vocabulary %d and context %d; the student's vocabulary %d and windows of %d tokens (the vocabularies must be equal, the teacher's context at least the windows')",
			ErrOption, t.Config.Vocab, t.Config.Ctx, cfg.Vocab, T)
	}
	e := &Engine{model: model, teacher: o.Teacher, store: o.Store, lossc: loss.NewComputer(pool), opts: o.Loss, kind: o.Target, data: data,
		T: T, maxB: B, tokenBytes: o.TokenBytes, onPolicy: o.OnPolicy,
		win: make([]int32, T+1), in: make([]int32, B*T), hard: make([]int32, B*T)}
	if st := o.Store; st != nil {
		h := st.Header()
		switch {
		case h.Ctx != T:
			return nil, fmt.Errorf("%w: the teacher store %s has windows of %d positions, the model's context is %d", ErrOption, st.Path(), h.Ctx, T)
		case h.Vocab != cfg.Vocab:
			return nil, fmt.Errorf("%w: the teacher store %s has vocabulary %d, the model %d", ErrOption, st.Path(), h.Vocab, cfg.Vocab)
		case o.Loss.TeacherTopK > h.K:
			return nil, fmt.Errorf("%w: loss.teacher_top_k = %d, the teacher store %s keeps only the top %d", ErrOption, o.Loss.TeacherTopK, st.Path(), h.K)
		}
		e.storeK = h.K
		if o.Loss.TeacherTopK > 0 {
			e.storeK = o.Loss.TeacherTopK
		}
		e.sids, e.sprobs = make([]int32, B*T*e.storeK), make([]float32, B*T*e.storeK)
	}
	if data.HasTruth() {
		e.K = data.TruthK()
		e.ids = make([]int32, B*T*e.K)
		e.probs = make([]float32, B*T*e.K)
	}
	if useBlockCE(o, cfg.Vocab) {
		e.blockCE = lm.NewBlockCE(cfg.Vocab, B*T, o.Loss.IgnoreIndex)
	}
	if p := &e.onPolicy; p.Fraction > 0 {
		if p.Prefix == 0 {
			p.Prefix = T / 2
		}
		if p.Prefix < 1 || p.Prefix >= T {
			return nil, fmt.Errorf("%w: on-policy prefix %d, want 1..%d", ErrOption, p.Prefix, T-1)
		}
	}
	return e, nil
}

// Model is the engine's model.
func (e *Engine) Model() *lm.Model { return e.model }

// load fills the input and target buffers with windows.
func (e *Engine) load(windows []int32) error {
	T := e.T
	for b, id := range windows {
		e.data.Window(int(id), e.win)
		copy(e.in[b*T:(b+1)*T], e.win[:T])
		copy(e.hard[b*T:(b+1)*T], e.win[1:T+1])
		if e.K > 0 {
			e.data.Truth(int(id), e.ids[b*T*e.K:(b+1)*T*e.K], e.probs[b*T*e.K:(b+1)*T*e.K])
		}
	}
	if e.store != nil {
		n := len(windows) * T * e.storeK
		if err := e.store.Targets(e.sids[:n], e.sprobs[:n], windows, T, e.storeK); err != nil {
			return fmt.Errorf("the teacher store: %w", err)
		}
	}
	return nil
}

// target is the loss's target of rows first..first+rows: the next tokens
// (for the cross-entropy) beside the soft target of kind t, if any; a
// teacher's logits are computed into e.tlogits.
func (e *Engine) target(t Target, first, rows int) loss.Target {
	tg := loss.Target{Hard: e.hard[first : first+rows]}
	switch t {
	case TargetSoft:
		K := e.K
		tg.SparseIDs, tg.SparseProbs, tg.K = e.ids[first*K:(first+rows)*K], e.probs[first*K:(first+rows)*K], K
	case TargetTeacher:
		if e.store != nil {
			k := e.storeK
			tg.SparseIDs, tg.SparseProbs, tg.K = e.sids[first*k:(first+rows)*k], e.sprobs[first*k:(first+rows)*k], k
			break
		}
		n := rows * e.model.Config.Vocab
		if cap(e.tlogits) < n {
			e.tlogits = make([]float32, n) // once: the head's chunk
		}
		buf := e.tlogits[:n:n]
		e.teacher.HeadLogits(buf, first, rows)
		tg.TeacherLogits = buf
	}
	return tg
}

// Sums are the totals of a Gradient call, over its target tokens.
type Sums struct {
	Loss   float64 // the training loss: (1-w) divergence + w cross-entropy
	CE     float64 // the cross-entropy of the actual next tokens
	Div    float64 // the divergence from the target (times T^2 with ScaleT2)
	Kept   float64 // the teacher's mass kept by its top k (1 per token otherwise)
	Tokens int
}

// Gradient zeroes the model's gradient and accumulates into it the gradient
// of the SUM of the per-token losses over windows of training step step,
// in passes (micro-batches) of at most MaxWindows windows: the activations
// never hold more, whatever the number of windows. A non-finite loss is an
// error (the gradient is then not to be used). Cancelling ctx stops the
// work between passes and between the tokens of on-policy sampling (the
// error is then ctx's).
func (e *Engine) Gradient(ctx context.Context, windows []int32, step uint64) (Sums, error) {
	return e.GradientReady(ctx, windows, step, nil)
}

// ReadyFunc is told, during the last pass's backward, that the gradient
// from lo to the model's NumParams is final, and the call's totals (final
// from the first call on: the head, which computes the loss, runs before
// any gradient is final).
type ReadyFunc func(lo int, s Sums)

// GradientReady is Gradient calling ready (when not nil) as the gradient
// becomes final, from the end of the model's layout to its start
// (lm.Model.ForwardBackwardReady): a ring all-reduce can start on it while
// backward computes the rest. Only the last pass (micro-batch) calls it;
// the earlier ones add to every gradient. The loss is checked only when
// every pass is done: ready may see a non-finite loss sum.
func (e *Engine) GradientReady(ctx context.Context, windows []int32, step uint64, ready ReadyFunc) (Sums, error) {
	var s Sums
	e.model.ZeroGrad()
	for lo := 0; lo < len(windows); lo += e.maxB {
		if err := ctx.Err(); err != nil {
			return s, err
		}
		var r lm.ReadyFunc
		if ready != nil && lo+e.maxB >= len(windows) {
			r = func(off int) { ready(off, s) }
		}
		if err := e.pass(ctx, &s, windows[lo:min(lo+e.maxB, len(windows))], step, r); err != nil {
			return s, err
		}
	}
	if math.IsNaN(s.Loss) || math.IsInf(s.Loss, 0) {
		return s, fmt.Errorf("loss sum %v over %d tokens", s.Loss, s.Tokens)
	}
	return s, nil
}

// pass adds the gradient of one micro-batch to the model's and its totals
// to s.
func (e *Engine) pass(ctx context.Context, s *Sums, windows []int32, step uint64, ready lm.ReadyFunc) error {
	if err := e.load(windows); err != nil {
		return err
	}
	if e.onPolicy.Fraction > 0 {
		if err := e.rollout(ctx, windows, step); err != nil {
			return err
		}
	}
	B, T, V := len(windows), e.T, e.model.Config.Vocab
	if e.teacher != nil {
		if err := e.teacher.ForwardHidden(e.in[:B*T], B, T); err != nil {
			return fmt.Errorf("the teacher: %w", err)
		}
	}
	if h := e.blockCE; h != nil {
		// The pass's loss joins s as its chunks are done: ready, during
		// backward, sees the pass's totals, as with whole rows.
		base := *s
		add := func() {
			l, n := h.Loss()
			s.Loss, s.CE, s.Div, s.Kept, s.Tokens = base.Loss+l, base.CE+l, base.Div+l, base.Kept+float64(n), base.Tokens+n
		}
		h.Start(e.hard[:B*T], 1)
		r := ready
		if ready != nil {
			r = func(off int) { add(); ready(off) }
		}
		err := e.model.ForwardBackwardBlocks(e.in[:B*T], B, T, h, r)
		add()
		return err
	}
	return e.model.ForwardBackwardReady(e.in[:B*T], B, T, func(logits []float32, first, rows int) error {
		r, err := e.lossc.ForwardBackward(logits, rows, V, e.target(e.kind, first, rows), e.opts, 1, nil)
		if err != nil {
			return err
		}
		s.Loss, s.CE, s.Div, s.Kept = s.Loss+r.Sum, s.CE+r.CE, s.Div+r.Div, s.Kept+r.Kept
		s.Tokens += r.Rows
		return nil
	}, ready)
}

// uniform is n probabilities of 1/V (rows of the uniform distribution),
// made once.
func (e *Engine) uniform(n int) []float32 {
	if len(e.unif) < n {
		e.unif = make([]float32, n)
		u := 1 / float32(e.model.Config.Vocab)
		for i := range e.unif {
			e.unif[i] = u
		}
	}
	return e.unif[:n:n]
}

// Eval is a held-out evaluation.
type Eval struct {
	CE        float64 // mean cross-entropy of the actual next tokens, nats/token
	KL        float64 // mean exact KL from the true distribution (synthetic), else -1
	TeacherKL float64 // mean KL(teacher || model) at temperature 1 (with a teacher), else -1
	Entropy   float64 // mean entropy of the model's next-token distribution, nats/token
	Floor     float64 // mean entropy of the true distribution (synthetic), else -1
	BPB       float64 // bits per byte of text (Options.TokenBytes), else -1
	Bytes     int64   // bytes of text the target tokens stand for
	Tokens    int
	Windows   int
}

// KLPtr is KL, or nil when it is unknown.
func (r Eval) KLPtr() *float64 { return known(r.KL) }

// TeacherKLPtr is TeacherKL, or nil when there is no teacher.
func (r Eval) TeacherKLPtr() *float64 { return known(r.TeacherKL) }

func known(v float64) *float64 {
	if v < 0 {
		return nil
	}
	return &v
}

// Evaluate computes, over windows, in batches of MaxWindows: the mean
// cross-entropy of the next tokens; for synthetic data the exact KL to the
// truth and the entropy floor; with a teacher KL(teacher || model) at
// temperature 1; for text, bits per byte. Every divergence is plain (no
// temperature, smoothing or top k).
func (e *Engine) Evaluate(windows []int) (Eval, error) {
	res := Eval{KL: -1, TeacherKL: -1, Floor: -1, BPB: -1, Windows: len(windows)}
	T, V := e.T, e.model.Config.Vocab
	var ce, kl, tkl, ent float64
	opts := loss.DefaultOptions()
	rev := opts
	rev.Direction = loss.Reverse
	ws := make([]int32, 0, e.maxB)
	for lo := 0; lo < len(windows); lo += e.maxB {
		ws = ws[:0]
		for _, w := range windows[lo:min(lo+e.maxB, len(windows))] {
			ws = append(ws, int32(w))
		}
		if err := e.load(ws); err != nil {
			return res, fmt.Errorf("evaluating: %w", err)
		}
		B := len(ws)
		if e.teacher != nil {
			if err := e.teacher.ForwardHidden(e.in[:B*T], B, T); err != nil {
				return res, fmt.Errorf("evaluating: the teacher: %w", err)
			}
		}
		err := e.model.Forward(e.in[:B*T], B, T, func(logits []float32, first, rows int) error {
			for _, t := range []Target{TargetSoft, TargetTeacher} {
				if t == TargetSoft && e.K == 0 || t == TargetTeacher && e.teacher == nil && e.store == nil {
					continue
				}
				tg := e.target(t, first, rows)
				tg.Hard = nil
				r, err := e.lossc.Forward(logits, rows, V, tg, opts, nil)
				if err != nil {
					return err
				}
				if t == TargetSoft {
					kl += r.Sum
				} else {
					tkl += r.Sum
				}
			}
			// H(Q) = log V - KL(Q || uniform).
			r, err := e.lossc.Forward(logits, rows, V, loss.Target{Probs: e.uniform(rows * V)}, rev, nil)
			if err != nil {
				return err
			}
			ent += float64(rows)*math.Log(float64(V)) - r.Sum
			r, err = e.lossc.Forward(logits, rows, V, loss.Target{Hard: e.hard[first : first+rows]}, opts, nil)
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
	if n := float64(res.Tokens); n > 0 {
		res.CE, res.Entropy = ce/n, ent/n
		if e.K > 0 {
			res.KL = kl / n
		}
		if e.teacher != nil || e.store != nil {
			res.TeacherKL = tkl / n
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
