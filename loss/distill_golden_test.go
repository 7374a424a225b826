package loss

import (
	"encoding/json"
	"math"
	"os"
	"testing"

	"github.com/klring/klring/kernels"
)

// distillGoldenPath holds PyTorch's float64 values of the distillation loss
// (testdata/gen_distill.py; see testdata/README.md).
const distillGoldenPath = "testdata/distill_torch.json"

type distillCase struct {
	Name               string   `json:"name"`
	Rows               int      `json:"rows"`
	Vocab              int      `json:"vocab"`
	Student            []jfloat `json:"student_logits"`
	Teacher            []jfloat `json:"teacher_logits"`
	Hard               []int32  `json:"hard"`
	Temperature        float64  `json:"temperature"`
	TeacherTemperature float64  `json:"teacher_temperature"`
	ScaleT2            bool     `json:"scale_t2"`
	HardWeight         float64  `json:"hard_weight"`
	Direction          string   `json:"direction"`
	Beta               float64  `json:"beta"`
	TopK               int      `json:"top_k"`
	Tail               string   `json:"tail"`
	LabelSmoothing     float64  `json:"label_smoothing"`
	Loss               float64  `json:"expected_loss"`
	RowLoss            []jfloat `json:"expected_row_loss"`
	Div                float64  `json:"expected_div"`
	CE                 float64  `json:"expected_ce"`
	Kept               float64  `json:"expected_kept"`
	Grad               []jfloat `json:"expected_grad"`
}

func loadDistillGolden(t *testing.T) []distillCase {
	t.Helper()
	b, err := os.ReadFile(distillGoldenPath)
	if err != nil {
		t.Fatalf("distillation golden vectors: %v", err)
	}
	var f struct {
		Cases []distillCase `json:"cases"`
	}
	if err := json.Unmarshal(b, &f); err != nil {
		t.Fatalf("distillation golden vectors: %v", err)
	}
	if len(f.Cases) < 30 {
		t.Fatalf("distillation golden vectors: %d cases in %s; want at least 30", len(f.Cases), distillGoldenPath)
	}
	return f.Cases
}

// options returns the case's settings as Options, parsed as a trainer
// would parse its configuration.
func (g *distillCase) options(t *testing.T) Options {
	t.Helper()
	o := DefaultOptions()
	var err error
	if o.Direction, err = ParseDirection(g.Direction); err != nil {
		t.Fatal(err)
	}
	if o.TeacherTail, err = ParseTail(g.Tail); err != nil {
		t.Fatal(err)
	}
	o.Beta, o.Temperature, o.TeacherTemperature = g.Beta, g.Temperature, g.TeacherTemperature
	o.ScaleT2, o.HardWeight, o.TeacherTopK, o.LabelSmoothing = g.ScaleT2, g.HardWeight, g.TopK, g.LabelSmoothing
	return o
}

// TestGoldenDistillTorch holds the fast paths and the reference path to
// PyTorch's float64 loss, parts and gradient of every case, with the hard
// tokens beside the teacher's logits, and (when the hard weight is 0)
// without them.
func TestGoldenDistillTorch(t *testing.T) {
	for _, g := range loadDistillGolden(t) {
		for _, path := range []string{"fast", "reference"} {
			for _, withHard := range []bool{true, false} {
				if !withHard && (g.HardWeight != 0 || g.hasIgnored()) {
					continue
				}
				name := g.Name + "/" + path
				if !withHard {
					name += "/no-hard"
				}
				t.Run(name, func(t *testing.T) {
					c := NewComputer(kernels.NewPool(2))
					c.noFast, c.fastOnly = path == "reference", path == "fast"
					o := g.options(t)
					tg := Target{TeacherLogits: f32s(g.Teacher)}
					if withHard {
						tg.Hard = g.Hard
					}
					logits := f32s(g.Student)
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
					res, err := c.ForwardBackward(logits, g.Rows, g.Vocab, tg, o, 1, rowLoss)
					if err != nil {
						t.Fatalf("ForwardBackward: %v", err)
					}
					if res != fres {
						t.Errorf("ForwardBackward = %+v; Forward gave %+v", res, fres)
					}
					wantCE := g.CE
					if !withHard {
						wantCE = 0
					}
					for _, chk := range []struct {
						name      string
						got, want float64
					}{{"loss", res.Sum, g.Loss}, {"divergence", res.Div, g.Div}, {"cross-entropy", res.CE, wantCE}, {"kept", res.Kept, g.Kept}} {
						if !closeTo(chk.got, chk.want, 1e-9, 1e-5) {
							t.Errorf("%s = %.12g; want %.12g", chk.name, chk.got, chk.want)
						}
					}
					checkVec(t, "row loss", rowLoss, g.RowLoss, 1e-7, 1e-5)
					grad := make([]float64, len(logits))
					for i, v := range logits {
						grad[i] = float64(v)
					}
					checkVec(t, "gradient", grad, g.Grad, 1e-6, 1e-4)
				})
			}
		}
	}
}

func (g *distillCase) hasIgnored() bool {
	for _, id := range g.Hard {
		if id == -100 {
			return true
		}
	}
	return false
}

// TestGoldenDistillSparse feeds the same cases through a Sparse target: the
// teacher's top k as (id, probability) rows, as a precomputed store would
// keep them (the probabilities rounded to float32), with each tail.
func TestGoldenDistillSparse(t *testing.T) {
	for _, g := range loadDistillGolden(t) {
		if g.TopK == 0 || g.TopK >= g.Vocab || g.TeacherTemperature != 1 && g.Temperature != g.TeacherTemperature {
			continue
		}
		for _, path := range []string{"fast", "reference"} {
			t.Run(g.Name+"/"+path, func(t *testing.T) {
				c := NewComputer(nil)
				c.noFast, c.fastOnly = path == "reference", path == "fast"
				o := g.options(t)
				tg := Target{Hard: g.Hard, K: g.TopK}
				tg.SparseIDs, tg.SparseProbs = topKRows(f32s(g.Teacher), g.Rows, g.Vocab, g.TopK, g.TeacherTemperature)
				logits := f32s(g.Student)
				rowLoss := make([]float64, g.Rows)
				res, err := c.ForwardBackward(logits, g.Rows, g.Vocab, tg, o, 1, rowLoss)
				if err != nil {
					t.Fatalf("ForwardBackward: %v", err)
				}
				// float32 probabilities: within 1e-6 of the teacher's.
				for _, chk := range []struct {
					name      string
					got, want float64
				}{{"loss", res.Sum, g.Loss}, {"divergence", res.Div, g.Div}, {"cross-entropy", res.CE, g.CE}, {"kept", res.Kept, g.Kept}} {
					if !closeTo(chk.got, chk.want, 1e-6, 1e-5) {
						t.Errorf("%s = %.12g; want %.12g", chk.name, chk.got, chk.want)
					}
				}
				checkVec(t, "row loss", rowLoss, g.RowLoss, 1e-6, 1e-5)
				grad := make([]float64, len(logits))
				for i, v := range logits {
					grad[i] = float64(v)
				}
				checkVec(t, "gradient", grad, g.Grad, 2e-6, 1e-4)
			})
		}
	}
}

// topKRows returns the ids and float32 probabilities of the k largest
// teacher probabilities of each row, in decreasing order.
func topKRows(teacher []float32, rows, V, k int, Tt float64) ([]int32, []float32) {
	ids := make([]int32, 0, rows*k)
	ps := make([]float32, 0, rows*k)
	for r := 0; r < rows; r++ {
		z := make([]float64, V)
		for i := range z {
			z[i] = float64(teacher[r*V+i])
		}
		p := refSoftmax(z, Tt)
		taken := make([]bool, V)
		for n := 0; n < k; n++ {
			best := -1
			for i := range p {
				if !taken[i] && (best < 0 || z[i] > z[best]) {
					best = i
				}
			}
			taken[best] = true
			ids = append(ids, int32(best))
			ps = append(ps, float32(p[best]))
		}
	}
	return ids, ps
}
