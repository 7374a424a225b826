package loss

import (
	"errors"
	"math"
	"strings"
	"testing"

	"github.com/klring/klring/kernels"
)

var (
	inf = float32(math.Inf(1))
	nan = float32(math.NaN())
)

// TestBadInput: every kind of bad data is an error naming its row, from both
// Forward and ForwardBackward.
func TestBadInput(t *testing.T) {
	ok := []float32{0.1, 0.2, 0.3, 0.4}
	good := func() []float32 { return []float32{1, 2, 3, 4, 1, 2, 3, 4, 1, 2, 3, 4} } // 3 x 4
	with := func(at int, v float32) []float32 { z := good(); z[at] = v; return z }
	probs := func(row int, vals ...float32) []float32 {
		p := append(append(append([]float32(nil), ok...), ok...), ok...)
		copy(p[row*4:], vals)
		return p
	}
	rev := DefaultOptions()
	rev.Direction = Reverse
	tests := []struct {
		name   string
		logits []float32
		t      Target
		o      Options
		want   error
		row    int
	}{
		{"NaN logit", with(5, nan), Target{Hard: []int32{0, 1, 2}}, DefaultOptions(), ErrNonFiniteLogit, 1},
		{"+Inf logit", with(11, inf), Target{Hard: []int32{0, 1, 2}}, DefaultOptions(), ErrNonFiniteLogit, 2},
		{"+Inf logit, probs", with(0, inf), Target{Probs: probs(0)}, DefaultOptions(), ErrNonFiniteLogit, 0},
		{"all masked", []float32{1, 2, 3, 4, -inf, -inf, -inf, -inf, 1, 2, 3, 4}, Target{Hard: []int32{0, 1, 2}}, DefaultOptions(), ErrAllMasked, 1},
		{"negative prob", good(), Target{Probs: probs(1, -0.1, 0.4, 0.3, 0.4)}, DefaultOptions(), ErrNegativeProb, 1},
		{"NaN prob", good(), Target{Probs: probs(2, nan, 0.4, 0.3, 0.3)}, DefaultOptions(), ErrNegativeProb, 2},
		{"+Inf prob", good(), Target{Probs: probs(0, inf, 0, 0, 0)}, DefaultOptions(), ErrNegativeProb, 0},
		{"NaN log-prob", good(), Target{LogProbs: []float32{0, -inf, -inf, -inf, nan, 0, -inf, -inf, 0, -inf, -inf, -inf}}, DefaultOptions(), ErrNegativeProb, 1},
		{"prob sum low", good(), Target{Probs: probs(2, 0.1, 0.2, 0.3, 0.398)}, DefaultOptions(), ErrProbSum, 2},
		{"prob sum high", good(), Target{Probs: probs(1, 0.1, 0.2, 0.3, 0.402)}, DefaultOptions(), ErrProbSum, 1},
		{"log-prob sum", good(), Target{LogProbs: []float32{0, -inf, -inf, -inf, 0, 0, -inf, -inf, 0, -inf, -inf, -inf}}, DefaultOptions(), ErrProbSum, 1},
		{"id = vocab", good(), Target{Hard: []int32{0, 4, 1}}, DefaultOptions(), ErrTokenRange, 1},
		{"id negative, not ignored", good(), Target{Hard: []int32{0, 1, -1}}, DefaultOptions(), ErrTokenRange, 2},
		{"sparse id out of range", good(), Target{K: 2, SparseIDs: []int32{0, 1, 0, 9, 0, 1}, SparseProbs: []float32{0.5, 0.5, 0.5, 0.5, 0.5, 0.5}}, DefaultOptions(), ErrTokenRange, 1},
		{"sparse duplicate id", good(), Target{K: 2, SparseIDs: []int32{0, 1, 0, 1, 3, 3}, SparseProbs: []float32{0.5, 0.5, 0.5, 0.5, 0.5, 0.5}}, DefaultOptions(), ErrDuplicateID, 2},
		{"sparse sum above 1", good(), Target{K: 2, SparseIDs: []int32{0, 1, 0, 1, 2, 3}, SparseProbs: []float32{0.5, 0.6, 0.5, 0.5, 0.5, 0.5}}, DefaultOptions(), ErrProbSum, 0},
		{"sparse negative", good(), Target{K: 2, SparseIDs: []int32{0, 1, 0, 1, 2, 3}, SparseProbs: []float32{0.5, 0.5, 0.5, 0.5, -0.5, 0.5}}, DefaultOptions(), ErrNegativeProb, 2},
		{"reverse KL, zero target mass", good(), Target{Probs: probs(1, 0.5, 0.5, 0, 0)}, rev, ErrInfiniteKL, 1},
		{"reverse KL, one-hot target", good(), Target{Hard: []int32{0, 1, 2}}, rev, ErrInfiniteKL, 0},
		{"reverse KL, complete sparse row", good(), Target{K: 2, SparseIDs: []int32{0, 1, 0, 1, 2, 3}, SparseProbs: []float32{0.5, 0.5, 0.2, 0.2, 0.5, 0.5}}, rev, ErrInfiniteKL, 0},
		{"forward KL, target on masked logit", with(4, -inf), Target{Hard: []int32{3, 0, 2}}, DefaultOptions(), ErrInfiniteKL, 1},
	}
	for _, tt := range tests {
		for _, backward := range []bool{false, true} {
			c := NewComputer(nil)
			z := append([]float32(nil), tt.logits...)
			var err error
			op := "Forward"
			if backward {
				op = "ForwardBackward"
				_, err = c.ForwardBackward(z, 3, 4, tt.t, tt.o, 1, nil)
			} else {
				_, err = c.Forward(z, 3, 4, tt.t, tt.o, nil)
			}
			if !errors.Is(err, tt.want) {
				t.Errorf("%s(%s) = %v; want %v", op, tt.name, err, tt.want)
				continue
			}
			var re *RowError
			if !errors.As(err, &re) || re.Row != tt.row {
				t.Errorf("%s(%s) = %v; want a *RowError for row %d", op, tt.name, err, tt.row)
			}
			if !strings.HasPrefix(err.Error(), "loss: ") {
				t.Errorf("%s(%s) error %q; want prefix \"loss: \"", op, tt.name, err)
			}
		}
	}
}

// TestFirstBadRow: with rows split over goroutines, the error names the
// lowest bad row every time.
func TestFirstBadRow(t *testing.T) {
	const rows, V = 3000, 64
	z := make([]float32, rows*V)
	z[2900*V+3] = nan
	z[1700*V+5] = nan
	z[1234*V+7] = inf
	tg := Target{Hard: make([]int32, rows)}
	c := NewComputer(kernels.NewPool(4))
	for i := 0; i < 5; i++ {
		g := append([]float32(nil), z...)
		_, err := c.ForwardBackward(g, rows, V, tg, DefaultOptions(), 1, nil)
		var re *RowError
		if !errors.As(err, &re) || re.Row != 1234 || !errors.Is(err, ErrNonFiniteLogit) {
			t.Fatalf("ForwardBackward = %v; want a non-finite logit at row 1234", err)
		}
	}
}

// TestBadOptions: options out of range are errors wrapping ErrOption.
func TestBadOptions(t *testing.T) {
	mod := func(f func(*Options)) Options { o := DefaultOptions(); f(&o); return o }
	tests := []struct {
		name  string
		o     Options
		t     Target
		scale float32
	}{
		{"zero value", Options{}, Target{Hard: []int32{0}}, 1},
		{"temperature 0", mod(func(o *Options) { o.Temperature = 0 }), Target{Hard: []int32{0}}, 1},
		{"temperature NaN", mod(func(o *Options) { o.Temperature = math.NaN() }), Target{Hard: []int32{0}}, 1},
		{"direction 7", mod(func(o *Options) { o.Direction = 7 }), Target{Hard: []int32{0}}, 1},
		{"jsd beta above 1", mod(func(o *Options) { o.Direction, o.Beta = JSD, 1.01 }), Target{Hard: []int32{0}}, 1},
		{"jsd beta negative", mod(func(o *Options) { o.Direction, o.Beta = JSD, -0.1 }), Target{Hard: []int32{0}}, 1},
		{"jsd beta NaN", mod(func(o *Options) { o.Direction, o.Beta = JSD, math.NaN() }), Target{Hard: []int32{0}}, 1},
		{"label smoothing 1", mod(func(o *Options) { o.LabelSmoothing = 1 }), Target{Hard: []int32{0}}, 1},
		{"label smoothing negative", mod(func(o *Options) { o.LabelSmoothing = -0.1 }), Target{Hard: []int32{0}}, 1},
		{"label smoothing on probs", mod(func(o *Options) { o.LabelSmoothing = 0.1 }), Target{Probs: []float32{1, 0}}, 1},
		{"grad scale NaN", DefaultOptions(), Target{Hard: []int32{0}}, nan},
		{"grad scale Inf", DefaultOptions(), Target{Hard: []int32{0}}, inf},
		{"grad scale over temperature", mod(func(o *Options) { o.Temperature = 1e-8 }), Target{Hard: []int32{0}}, 1e35},
	}
	for _, tt := range tests {
		_, err := NewComputer(nil).ForwardBackward([]float32{1, 2}, 1, 2, tt.t, tt.o, tt.scale, nil)
		if !errors.Is(err, ErrOption) {
			t.Errorf("ForwardBackward(%s) = %v; want %v", tt.name, err, ErrOption)
		} else if msg := err.Error(); !strings.HasPrefix(msg, "loss: forward backward: invalid option: ") {
			t.Errorf("ForwardBackward(%s) error %q; want prefix \"loss: forward backward: invalid option: \"", tt.name, msg)
		}
	}
	if _, err := ParseDirection("sideways"); !errors.Is(err, ErrOption) {
		t.Errorf("ParseDirection(sideways) = %v; want %v", err, ErrOption)
	}
	if _, err := ParseReduction("median"); !errors.Is(err, ErrOption) {
		t.Errorf("ParseReduction(median) = %v; want %v", err, ErrOption)
	}
}

// TestShapePanics: shape mismatches are programmer errors.
func TestShapePanics(t *testing.T) {
	tests := []struct {
		name   string
		logits []float32
		rows   int
		t      Target
		loss   []float64
	}{
		{"short logits", make([]float32, 5), 2, Target{Hard: []int32{0, 0}}, nil},
		{"no target", make([]float32, 6), 2, Target{}, nil},
		{"two soft targets", make([]float32, 6), 2, Target{Probs: make([]float32, 6), LogProbs: make([]float32, 6)}, nil},
		{"teacher and sparse", make([]float32, 6), 2, Target{TeacherLogits: make([]float32, 6), K: 1, SparseIDs: []int32{0, 0}, SparseProbs: []float32{1, 1}}, nil},
		{"short teacher", make([]float32, 6), 2, Target{TeacherLogits: make([]float32, 5)}, nil},
		{"short hard", make([]float32, 6), 2, Target{Hard: []int32{0}}, nil},
		{"sparse K 0", make([]float32, 6), 2, Target{SparseIDs: []int32{}, SparseProbs: []float32{}}, nil},
		{"short rowLoss", make([]float32, 6), 2, Target{Hard: []int32{0, 0}}, make([]float64, 1)},
	}
	for _, tt := range tests {
		func() {
			defer func() {
				r := recover()
				if s, _ := r.(string); !strings.HasPrefix(s, "loss: ") {
					t.Errorf("Forward(%s) panicked with %v; want a panic with prefix \"loss: \"", tt.name, r)
				}
			}()
			NewComputer(nil).Forward(tt.logits, tt.rows, 3, tt.t, DefaultOptions(), tt.loss)
		}()
	}
}

// TestGradOverflow: a gradient beyond float32 is an error, not an Inf.
func TestGradOverflow(t *testing.T) {
	o := DefaultOptions()
	o.Direction = Reverse
	lp := []float32{float32(math.Log(0.5)), -3e38, float32(math.Log(0.5))} // the model's q of token 1 is 1/3
	z := []float32{0, 0, 0}
	if _, err := NewComputer(nil).Forward(z, 1, 3, Target{LogProbs: lp}, o, nil); err != nil {
		t.Fatalf("Forward = %v; want no error (the loss, about 1e38, fits a float64)", err)
	}
	_, err := NewComputer(nil).ForwardBackward(z, 1, 3, Target{LogProbs: lp}, o, 8, nil)
	var re *RowError
	if !errors.Is(err, ErrGradOverflow) || !errors.As(err, &re) || re.Row != 0 {
		t.Errorf("ForwardBackward = %v; want %v at row 0", err, ErrGradOverflow)
	}
}
