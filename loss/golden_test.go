package loss

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"testing"
)

// goldenPath is kl_torch.json relative to this package (see
// testdata/README.md for the format and where it came from).
const goldenPath = "testdata/kl_torch.json"

// jfloat is a JSON number, or one of the strings "-inf", "inf", "nan".
type jfloat float64

func (f *jfloat) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err == nil {
		switch s {
		case "-inf":
			*f = jfloat(math.Inf(-1))
		case "inf":
			*f = jfloat(math.Inf(1))
		case "nan":
			*f = jfloat(math.NaN())
		default:
			return fmt.Errorf("unknown float string %q", s)
		}
		return nil
	}
	var v float64
	if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	*f = jfloat(v)
	return nil
}

type goldenCase struct {
	Name           string   `json:"name"`
	Rows           int      `json:"rows"`
	Vocab          int      `json:"vocab"`
	Logits         []jfloat `json:"logits"`
	TargetKind     string   `json:"target_kind"`
	Target         []jfloat `json:"target"`
	IgnoreIndex    int32    `json:"ignore_index"`
	Direction      string   `json:"direction"`
	Beta           float64  `json:"beta"`
	Temperature    float64  `json:"temperature"`
	LabelSmoothing float64  `json:"label_smoothing"`
	Reduction      string   `json:"reduction"`
	ExpectedLoss   float64  `json:"expected_loss"`
	ExpectedRow    []jfloat `json:"expected_row_loss"`
	ExpectedGrad   []jfloat `json:"expected_grad"`
	ExpectedCE     *float64 `json:"expected_cross_entropy_batchmean"`
	TorchKLDiv     *float64 `json:"torch_kl_div"`
}

func loadGolden(t *testing.T) []goldenCase {
	t.Helper()
	b, err := os.ReadFile(goldenPath)
	if err != nil {
		t.Fatalf("golden vectors: %v (they live in the shared golden folder beside the repository)", err)
	}
	var f struct {
		Cases []goldenCase `json:"cases"`
	}
	if err := json.Unmarshal(b, &f); err != nil {
		t.Fatalf("golden vectors: %v", err)
	}
	if len(f.Cases) == 0 {
		t.Fatalf("golden vectors: no cases in %s", goldenPath)
	}
	return f.Cases
}

func f32s(v []jfloat) []float32 {
	out := make([]float32, len(v))
	for i, x := range v {
		out[i] = float32(x)
	}
	return out
}

// setup turns a case into the arguments of a call.
func (g *goldenCase) setup(t *testing.T) (logits []float32, tg Target, o Options, red Reduction) {
	t.Helper()
	logits = f32s(g.Logits)
	switch g.TargetKind {
	case "hard":
		tg.Hard = make([]int32, len(g.Target))
		for i, v := range g.Target {
			tg.Hard[i] = int32(v)
		}
	case "probs":
		tg.Probs = f32s(g.Target)
	case "logprobs":
		tg.LogProbs = f32s(g.Target)
	default:
		t.Fatalf("%s: unknown target kind %q", g.Name, g.TargetKind)
	}
	o = DefaultOptions()
	var err error
	if o.Direction, err = ParseDirection(g.Direction); err != nil {
		t.Fatal(err)
	}
	if red, err = ParseReduction(g.Reduction); err != nil {
		t.Fatal(err)
	}
	o.Beta, o.Temperature, o.LabelSmoothing, o.IgnoreIndex = g.Beta, g.Temperature, g.LabelSmoothing, g.IgnoreIndex
	return logits, tg, o, red
}

// closeTo reports whether got is within abs + rel*|want| of want.
func closeTo(got, want, abs, rel float64) bool {
	return math.Abs(got-want) <= abs+rel*math.Abs(want)
}

// checkVec reports the worst element of got against want, and fails when any
// element is out of tolerance.
func checkVec(t *testing.T, name string, got []float64, want []jfloat, abs, rel float64) {
	t.Helper()
	if len(got) != len(want) {
		t.Errorf("%s: len = %d; want %d", name, len(got), len(want))
		return
	}
	worst, at, bad := 0.0, -1, 0
	for i := range got {
		d := math.Abs(got[i] - float64(want[i]))
		if !closeTo(got[i], float64(want[i]), abs, rel) {
			bad++
			if d > worst || at < 0 {
				worst, at = d, i
			}
		}
	}
	if bad > 0 {
		t.Errorf("%s: %d of %d out of tolerance; worst [%d] = %v; want %v (diff %.3g)",
			name, bad, len(got), at, got[at], float64(want[at]), worst)
	}
}

func TestGoldenTorch(t *testing.T) {
	c := NewComputer(nil)
	for _, g := range loadGolden(t) {
		t.Run(g.Name, func(t *testing.T) {
			logits, tg, o, red := g.setup(t)
			orig := append([]float32(nil), logits...)
			rowLoss := make([]float64, g.Rows)

			fres, err := c.Forward(logits, g.Rows, g.Vocab, tg, o, rowLoss)
			if err != nil {
				t.Fatalf("Forward: %v", err)
			}
			for i := range logits {
				if math.Float32bits(logits[i]) != math.Float32bits(orig[i]) {
					t.Fatalf("Forward wrote logits[%d] = %v; want it unchanged %v", i, logits[i], orig[i])
				}
			}
			if got := Reduce(fres, red, g.Vocab); !closeTo(got, g.ExpectedLoss, 0, 1e-5) {
				t.Errorf("Forward loss = %.12g; want %.12g", got, g.ExpectedLoss)
			}
			checkVec(t, "Forward row loss", rowLoss, g.ExpectedRow, 1e-7, 1e-5)

			res, err := c.ForwardBackward(logits, g.Rows, g.Vocab, tg, o, GradScale(red, fres.Rows, g.Vocab), rowLoss)
			if err != nil {
				t.Fatalf("ForwardBackward: %v", err)
			}
			if got := Reduce(res, red, g.Vocab); !closeTo(got, g.ExpectedLoss, 0, 1e-5) {
				t.Errorf("ForwardBackward loss = %.12g; want %.12g", got, g.ExpectedLoss)
			}
			checkVec(t, "ForwardBackward row loss", rowLoss, g.ExpectedRow, 1e-7, 1e-5)
			grad := make([]float64, len(logits))
			for i, v := range logits {
				grad[i] = float64(v)
			}
			checkVec(t, "gradient", grad, g.ExpectedGrad, 1e-6, 1e-4)
			if g.TorchKLDiv != nil && !closeTo(Reduce(res, red, g.Vocab), *g.TorchKLDiv, 0, 1e-5) {
				t.Errorf("loss = %.12g; want F.kl_div's %.12g", Reduce(res, red, g.Vocab), *g.TorchKLDiv)
			}
		})
	}
}
