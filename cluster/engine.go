package cluster

import (
	"fmt"

	"github.com/klring/klring/lm"
	"github.com/klring/klring/loss"
	"github.com/klring/klring/shard"
)

// engine composes model, loss and data: logits -> loss gradient -> model
// backward, over a list of windows. Its buffers are sized once for the global
// batch and reused every step.
type engine struct {
	model *lm.Model
	lossc *loss.Computer
	opts  loss.Options
	data  *shard.Dataset
	soft  bool
	keep  float32 // soft targets: 1 - label_smoothing
	T     int
	maxB  int
	K     int

	win   []int32   // [T+1] one window
	in    []int32   // [maxB*T] inputs
	hard  []int32   // [maxB*T] next tokens
	ids   []int32   // [maxB*T*K] true next-token ids (soft targets)
	probs []float32 // [maxB*T*K] their probabilities

	// scratch for evaluation
	evalIDs   []int32
	evalProbs []float32
}

func newEngine(spec JobSpec, env *Env, model *lm.Model, data *shard.Dataset) (*engine, error) {
	opts := loss.DefaultOptions()
	switch spec.Direction {
	case "forward":
		opts.Direction = loss.Forward
	case "reverse":
		opts.Direction = loss.Reverse
	case "jsd":
		opts.Direction = loss.JSD
	default:
		return nil, fmt.Errorf("loss.direction %q", spec.Direction)
	}
	opts.Beta = spec.Beta
	opts.Temperature = spec.Temperature
	if spec.Target == "hard" {
		opts.LabelSmoothing = spec.Smoothing
	}
	if err := opts.Validate(); err != nil {
		return nil, fmt.Errorf("loss: %w", err)
	}
	T := spec.Model.Ctx
	B := max(spec.BatchWindows, 1)
	e := &engine{model: model, lossc: loss.NewComputer(env.Pool), opts: opts, data: data,
		soft: spec.Target == "soft", keep: float32(1 - spec.Smoothing), T: T, maxB: B,
		win: make([]int32, T+1), in: make([]int32, B*T), hard: make([]int32, B*T)}
	if data.HasTruth() {
		e.K = data.TruthK()
		e.ids = make([]int32, B*T*e.K)
		e.probs = make([]float32, B*T*e.K)
	}
	return e, nil
}

// load fills the input and target buffers with windows; smooth applies the
// soft targets' label smoothing (training, not evaluation).
func (e *engine) load(windows []int32, smooth bool) {
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

func (e *engine) target(first, rows int, soft bool) loss.Target {
	if soft {
		K := e.K
		return loss.Target{SparseIDs: e.ids[first*K : (first+rows)*K], SparseProbs: e.probs[first*K : (first+rows)*K], K: K}
	}
	return loss.Target{Hard: e.hard[first : first+rows]}
}

// gradient zeroes the gradient and accumulates the gradient of the SUM of the
// per-token losses over windows into the model's gradient buffer. It returns
// the loss sum, the cross-entropy sum of the actual next tokens (the same
// number when the loss is plain cross-entropy) and the number of target
// tokens.
func (e *engine) gradient(windows []int32) (lossSum, ceSum float64, tokens int, err error) {
	if len(windows) > e.maxB {
		return 0, 0, 0, fmt.Errorf("%d windows, more than the global batch %d", len(windows), e.maxB)
	}
	e.model.ZeroGrad()
	if len(windows) == 0 {
		return 0, 0, 0, nil
	}
	e.load(windows, true)
	B, T, V := len(windows), e.T, e.model.Config.Vocab
	ceOpts := loss.DefaultOptions()
	plainCE := !e.soft && e.opts == ceOpts
	err = e.model.ForwardBackward(e.in[:B*T], B, T, func(logits []float32, first, rows int) error {
		if !plainCE {
			r, err := e.lossc.Forward(logits, rows, V, e.target(first, rows, false), ceOpts, nil)
			if err != nil {
				return err
			}
			ceSum += r.Sum
		}
		r, err := e.lossc.ForwardBackward(logits, rows, V, e.target(first, rows, e.soft), e.opts, 1, nil)
		if err != nil {
			return err
		}
		lossSum += r.Sum
		tokens += r.Rows
		return nil
	})
	if plainCE {
		ceSum = lossSum
	}
	return lossSum, ceSum, tokens, err
}

// evalResult is a held-out evaluation.
type evalResult struct {
	CE      float64 // mean cross-entropy of the actual next tokens, nats/token
	KL      float64 // mean exact KL from the true distribution (synthetic), else -1
	Floor   float64 // mean entropy of the true distribution (synthetic), else -1
	Tokens  int
	Windows int
}

func (r evalResult) klPtr() *float64 {
	if r.KL < 0 {
		return nil
	}
	v := r.KL
	return &v
}

// evaluate computes the mean cross-entropy (and, for synthetic data, the
// exact KL to the truth and the entropy floor) over windows, in batches of
// the global batch size.
func (e *engine) evaluate(windows []int) (evalResult, error) {
	res := evalResult{KL: -1, Floor: -1, Windows: len(windows)}
	T, V := e.T, e.model.Config.Vocab
	var ce, kl float64
	klOpts := loss.DefaultOptions()
	ceOpts := loss.DefaultOptions()
	for lo := 0; lo < len(windows); lo += e.maxB {
		hi := min(lo+e.maxB, len(windows))
		ws := toInt32(windows[lo:hi])
		e.load(ws, false)
		B := len(ws)
		err := e.model.Forward(e.in[:B*T], B, T, func(logits []float32, first, rows int) error {
			if e.K > 0 {
				r, err := e.lossc.Forward(logits, rows, V, e.target(first, rows, true), klOpts, nil)
				if err != nil {
					return err
				}
				kl += r.Sum
			}
			r, err := e.lossc.Forward(logits, rows, V, e.target(first, rows, false), ceOpts, nil)
			if err != nil {
				return err
			}
			ce += r.Sum
			res.Tokens += r.Rows
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
	}
	if e.data.HasTruth() {
		res.Floor = e.data.EntropyFloor(windows)
	}
	return res, nil
}

func (j *jobState) gradient(windows []int32) (float64, float64, int, error) {
	return j.eng.gradient(windows)
}

func (j *jobState) evaluate(windows []int) (evalResult, error) { return j.eng.evaluate(windows) }
