package loss

import (
	"errors"
	"fmt"
	"math"
	"strings"
)

// Direction selects the divergence.
type Direction int

const (
	// Forward is D_KL(P_target || Q_model), PyTorch's
	// F.kl_div(log_softmax(z/T), target). With one-hot targets it is the
	// cross-entropy.
	Forward Direction = iota
	// Reverse is D_KL(Q_model || P_target): mode seeking, infinite where the
	// target gives zero mass to a token the model can emit.
	Reverse
	// JSD is the generalised Jensen-Shannon divergence with M = beta*P +
	// (1-beta)*Q: beta*D_KL(P||M) + (1-beta)*D_KL(Q||M). It is at most log 2.
	JSD
)

var directionNames = [...]string{Forward: "forward", Reverse: "reverse", JSD: "jsd"}

// String returns "forward", "reverse" or "jsd".
func (d Direction) String() string {
	if d < 0 || int(d) >= len(directionNames) {
		return fmt.Sprintf("Direction(%d)", int(d))
	}
	return directionNames[d]
}

// ParseDirection parses "forward", "reverse" or "jsd" (case-insensitive).
func ParseDirection(s string) (Direction, error) {
	for d, n := range directionNames {
		if strings.EqualFold(s, n) {
			return Direction(d), nil
		}
	}
	return 0, fmt.Errorf("%w: direction %q, want forward, reverse or jsd", ErrOption, s)
}

// Reduction says how Reduce turns a Result into one number.
type Reduction int

const (
	// Sum is the sum of the per-row losses.
	Sum Reduction = iota
	// BatchMean divides the sum by the number of rows not ignored
	// (PyTorch's "batchmean"; the mean cross-entropy for hard targets).
	BatchMean
	// Mean divides the sum by (rows not ignored x vocab): PyTorch's element
	// mean, reduction="mean".
	Mean
	// None keeps the per-row values (the rowLoss argument); Reduce returns
	// the sum.
	None
)

var reductionNames = [...]string{Sum: "sum", BatchMean: "batchmean", Mean: "mean", None: "none"}

// String returns "sum", "batchmean", "mean" or "none".
func (r Reduction) String() string {
	if r < 0 || int(r) >= len(reductionNames) {
		return fmt.Sprintf("Reduction(%d)", int(r))
	}
	return reductionNames[r]
}

// ParseReduction parses "sum", "batchmean", "mean" or "none" (case-insensitive).
func ParseReduction(s string) (Reduction, error) {
	for r, n := range reductionNames {
		if strings.EqualFold(s, n) {
			return Reduction(r), nil
		}
	}
	return 0, fmt.Errorf("%w: reduction %q, want sum, batchmean, mean or none", ErrOption, s)
}

// Tail says what a top-k target (Options.TeacherTopK of teacher logits, or
// a Sparse target) does with the probability mass outside its k ids. With S
// the target mass of the k ids:
type Tail int

const (
	// TailUniform keeps the k probabilities and spreads the rest, 1 - S,
	// evenly over the V - k other ids, so P stays a distribution over the
	// whole vocabulary and reverse KL stays finite while 1 - S > 0.
	TailUniform Tail = iota
	// TailRenormalize divides the k probabilities by S and gives every other
	// id 0 (reverse KL is then infinite unless label smoothing fills the
	// zeros).
	TailRenormalize
	// TailRest takes the divergence over the k ids plus one bucket for the
	// rest: P_rest = 1 - S against Q_rest = 1 - sum of the model's
	// probabilities of the k ids. Forward KL only.
	TailRest
)

var tailNames = [...]string{TailUniform: "uniform", TailRenormalize: "renormalize", TailRest: "rest"}

// String returns "uniform", "renormalize" or "rest".
func (t Tail) String() string {
	if t < 0 || int(t) >= len(tailNames) {
		return fmt.Sprintf("Tail(%d)", int(t))
	}
	return tailNames[t]
}

// ParseTail parses "renormalize", "uniform" or "rest" (case-insensitive).
func ParseTail(s string) (Tail, error) {
	for t, n := range tailNames {
		if strings.EqualFold(s, n) {
			return Tail(t), nil
		}
	}
	return 0, fmt.Errorf("%w: teacher tail %q, want renormalize, uniform or rest", ErrOption, s)
}

// Options configure a loss computation. Start from DefaultOptions: the zero
// value has Temperature 0, which Validate rejects. The fields map one to one
// onto the trainer's loss.* configuration keys (loss.direction, loss.beta,
// loss.temperature, loss.teacher_temperature, loss.scale_t2,
// loss.hard_weight, loss.teacher_top_k, loss.teacher_tail,
// loss.label_smoothing).
type Options struct {
	// Direction of the divergence. Default Forward.
	Direction Direction
	// Beta is the weight of P in the JSD mixture M = beta*P + (1-beta)*Q,
	// in [0, 1]. Only read for JSD. The endpoints follow TRL's GKD: at 0
	// the loss is forward KL(P||Q), at 1 reverse KL(Q||P) (not the
	// vanishing limits of the mixture). Default 0.5.
	Beta float64
	// Temperature T: Q = softmax(z/T), the model's (student's)
	// distribution. In [1e-8, 1e8]. Default 1.
	Temperature float64
	// TeacherTemperature T_t: a TeacherLogits target is P =
	// softmax(t/T_t). Other targets are used as given. In [1e-8, 1e8].
	// Default 1.
	TeacherTemperature float64
	// ScaleT2 multiplies the divergence and its gradient by T^2 (the usual
	// distillation convention, so gradient magnitudes do not shrink with
	// T). The cross-entropy of HardWeight is never scaled. Default false.
	ScaleT2 bool
	// HardWeight w mixes in the cross-entropy of the hard next tokens at
	// temperature 1: loss = (1-w)*D + w*CE(Target.Hard, softmax(z)). In
	// [0, 1]; w > 0 needs Target.Hard beside a soft target. Default 0.
	HardWeight float64
	// TeacherTopK k > 0 keeps only the teacher's k largest probabilities of
	// a TeacherLogits target, the rest going by TeacherTail; 0, or k >= V,
	// keeps them all (the tail is then ignored). A Sparse target carries
	// its own K: TeacherTopK must be 0 or that K. Default 0.
	TeacherTopK int
	// TeacherTail is what a top-k target does with the mass outside its k
	// ids (TeacherLogits with TeacherTopK, and Sparse targets). Default
	// TailUniform.
	TeacherTail Tail
	// LabelSmoothing eps mixes the target with the uniform distribution:
	// P' = (1-eps)*P + eps/V, after the top-k tail (with TailRest the rest
	// bucket gets eps*(V-k)/V). For hard, teacher-logit and sparse targets
	// (not dense probabilities); with Hard beside a soft target it smooths
	// the soft one, the cross-entropy of HardWeight stays plain. In [0, 1).
	// Default 0.
	LabelSmoothing float64
	// IgnoreIndex marks a hard-target row that contributes nothing: loss 0,
	// gradient 0, not counted in Result.Rows. Default -100 (PyTorch's).
	IgnoreIndex int32
}

// DefaultOptions returns forward KL, T = 1, teacher T = 1, no T^2 scale, no
// hard weight, all of the teacher's distribution (top-k 0, uniform tail),
// no label smoothing, Beta 0.5, IgnoreIndex -100.
func DefaultOptions() Options {
	return Options{Direction: Forward, Beta: 0.5, Temperature: 1, TeacherTemperature: 1, IgnoreIndex: -100}
}

// Temperature bounds: they keep z/T and the gradient scale 1/T finite in
// float64 for every finite float32 logit.
const (
	minTemperature = 1e-8
	maxTemperature = 1e8
)

// Validate reports the first invalid field, wrapping ErrOption. Whether the
// options fit a target (hard weight without hard ids, a tail that makes the
// divergence infinite) is checked by each call.
func (o Options) Validate() error {
	if o.Direction < Forward || o.Direction > JSD {
		return fmt.Errorf("%w: direction %d, want forward (0), reverse (1) or jsd (2)", ErrOption, int(o.Direction))
	}
	if o.Direction == JSD && !(o.Beta >= 0 && o.Beta <= 1) {
		return fmt.Errorf("%w: beta %v, want a value in [0, 1]", ErrOption, o.Beta)
	}
	if !(o.Temperature >= minTemperature && o.Temperature <= maxTemperature) {
		return fmt.Errorf("%w: temperature %v, want a value in [%g, %g]", ErrOption, o.Temperature, minTemperature, maxTemperature)
	}
	if !(o.TeacherTemperature >= minTemperature && o.TeacherTemperature <= maxTemperature) {
		return fmt.Errorf("%w: teacher temperature %v, want a value in [%g, %g]", ErrOption, o.TeacherTemperature, minTemperature, maxTemperature)
	}
	if !(o.HardWeight >= 0 && o.HardWeight <= 1) {
		return fmt.Errorf("%w: hard weight %v, want a value in [0, 1]", ErrOption, o.HardWeight)
	}
	if o.TeacherTopK < 0 {
		return fmt.Errorf("%w: teacher top k %d, want >= 0 (0 keeps every token)", ErrOption, o.TeacherTopK)
	}
	if o.TeacherTail < TailUniform || o.TeacherTail > TailRest {
		return fmt.Errorf("%w: teacher tail %d, want uniform (0), renormalize (1) or rest (2)", ErrOption, int(o.TeacherTail))
	}
	if !(o.LabelSmoothing >= 0 && o.LabelSmoothing < 1) {
		return fmt.Errorf("%w: label smoothing %v, want a value in [0, 1)", ErrOption, o.LabelSmoothing)
	}
	return nil
}

// NeedsPositiveTarget reports whether the divergence is infinite as soon as
// the target gives 0 to an id the model does not: reverse KL (or JSD at
// beta 1) without label smoothing.
func (o Options) NeedsPositiveTarget() bool {
	return o.effectiveDirection() == Reverse && o.LabelSmoothing == 0
}

// effectiveDirection is the divergence a row computes: JSD at beta 0 is
// forward KL, at beta 1 reverse KL.
func (o Options) effectiveDirection() Direction {
	if o.Direction == JSD {
		switch o.Beta {
		case 0:
			return Forward
		case 1:
			return Reverse
		}
	}
	return o.Direction
}

// Sentinel errors. Bad data comes back as a *RowError wrapping one of the
// data sentinels; bad options wrap ErrOption.
var (
	// ErrOption: an Options field or the gradient scale is out of range, or
	// the options do not fit the target kind.
	ErrOption = errors.New("loss: invalid option")
	// ErrNonFiniteLogit: a logit is NaN or +Inf (-Inf masks a token and is allowed).
	ErrNonFiniteLogit = errors.New("loss: non-finite logit")
	// ErrAllMasked: every logit of the row is -Inf, so softmax is undefined.
	ErrAllMasked = errors.New("loss: every logit is masked")
	// ErrNegativeProb: a target probability is negative, NaN or infinite
	// (for log-probabilities: NaN or +Inf).
	ErrNegativeProb = errors.New("loss: negative or non-finite target probability")
	// ErrProbSum: a target row does not sum to 1 within 1e-3 (sparse rows:
	// sums to more than 1 + 1e-3, or to 0).
	ErrProbSum = errors.New("loss: target probabilities do not sum to 1")
	// ErrTokenRange: a target id is outside [0, vocab) (and is not the ignore index).
	ErrTokenRange = errors.New("loss: target id out of range")
	// ErrDuplicateID: a sparse target row lists the same id twice.
	ErrDuplicateID = errors.New("loss: duplicate sparse target id")
	// ErrInfiniteKL: the divergence is +Inf: reverse KL where the target gives
	// zero mass to a token the model gives mass to, or forward KL where the
	// target gives mass to a masked (-Inf) logit.
	ErrInfiniteKL = errors.New("loss: infinite divergence")
	// ErrGradOverflow: a gradient does not fit a float32 (reverse KL or JSD
	// against a target with log-probabilities near -MaxFloat32, at a tiny
	// temperature or a huge gradient scale).
	ErrGradOverflow = errors.New("loss: gradient overflows float32")
)

// RowError names the row of bad input data. Err wraps one of the data
// sentinels, so errors.Is(err, ErrNonFiniteLogit) works through it.
type RowError struct {
	Row int   // row index in [0, rows)
	Err error // wraps a sentinel, with the column and value where there is one
}

func (e *RowError) Error() string {
	return fmt.Sprintf("row %d: %s", e.Row, strings.TrimPrefix(e.Err.Error(), "loss: "))
}

func (e *RowError) Unwrap() error { return e.Err }

// probTolerance is how far from 1 a target row may sum.
const probTolerance = 1e-3

// maxGradFactor bounds gradScale/T (times T^2): forward-KL gradients, at most
// 2.002 times the factor in magnitude, then always fit a float32.
const maxGradFactor = math.MaxFloat32 / 4

// checkScale returns the float64 gradient factor gradScale * (1/T) * t2,
// or an error when it is not a finite float32.
func checkScale(gradScale float32, a, t2 float64) (float64, error) {
	g := float64(gradScale) * a * t2
	if math.IsNaN(g) || math.Abs(g) > maxGradFactor {
		return 0, fmt.Errorf("%w: gradient scale %v at temperature %v, want |gradScale/T| <= %g", ErrOption, gradScale, 1/a, maxGradFactor)
	}
	return g, nil
}
