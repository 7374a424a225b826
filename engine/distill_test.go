package engine

import (
	"context"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/klring/klring/kernels"
	"github.com/klring/klring/lm"
	"github.com/klring/klring/loss"
	"github.com/klring/klring/shard"
	"github.com/klring/klring/teacherstore"
)

// distillCase is one setting of testdata/distill_micro/cases.json.
type distillCase struct {
	Name               string  `json:"name"`
	Direction          string  `json:"direction"`
	Temperature        float64 `json:"temperature"`
	TeacherTemperature float64 `json:"teacher_temperature"`
	ScaleT2            bool    `json:"scale_t2"`
	HardWeight         float64 `json:"hard_weight"`
	Beta               float64 `json:"beta"`
	TopK               int     `json:"top_k"`
	Tail               string  `json:"tail"`
	Loss               float64 `json:"loss"`
}

// lossOptions are the options of a golden case.
func (c distillCase) lossOptions(t *testing.T) loss.Options {
	o := loss.DefaultOptions()
	var err error
	if o.Direction, err = loss.ParseDirection(c.Direction); err != nil {
		t.Fatal(err)
	}
	if o.TeacherTail, err = loss.ParseTail(c.Tail); err != nil {
		t.Fatal(err)
	}
	o.Temperature, o.TeacherTemperature, o.ScaleT2 = c.Temperature, c.TeacherTemperature, c.ScaleT2
	o.HardWeight, o.Beta, o.TeacherTopK = c.HardWeight, c.Beta, c.TopK
	return o
}

func readDistillCases(t *testing.T) []distillCase {
	t.Helper()
	var f struct {
		Cases []distillCase `json:"cases"`
	}
	b, err := os.ReadFile("testdata/distill_micro/cases.json")
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &f); err != nil {
		t.Fatal(err)
	}
	if len(f.Cases) != 11 {
		t.Fatalf("%d golden cases; want 11", len(f.Cases))
	}
	return f.Cases
}

// The student's gradient of every distillation setting (forward, reverse
// and JSD KL; temperatures, T^2, a hard-label mix, a teacher temperature of
// its own, top-k under each tail), computed with the teacher's logits chunk
// by chunk beside the student's head, is PyTorch's, tensor by tensor; and so
// is the gradient computed from a teacher store of the same teacher.
func TestDistillationMatchesPyTorch(t *testing.T) {
	pool := kernels.NewPool(2)
	teacher, _, err := lm.LoadCheckpoint(golden, pool)
	if err != nil {
		t.Fatal(err)
	}
	inf, err := lm.NewInference(teacher.Config, teacher.Params, pool)
	if err != nil {
		t.Fatal(err)
	}
	data, err := shard.Open(shard.Options{Source: "tokens:" + filepath.Join(golden, "tokens.bin"), Ctx: 8, Vocab: 64})
	if err != nil {
		t.Fatal(err)
	}
	defer data.Close()
	// The same teacher as a store of its full distribution (k = V) at
	// each teacher temperature of the cases.
	cases := readDistillCases(t)
	stores := map[float64]*teacherstore.Store{}
	for _, c := range cases {
		if stores[c.TeacherTemperature] != nil {
			continue
		}
		path := filepath.Join(t.TempDir(), "teacher.topk")
		if _, err := teacherstore.Dump(context.Background(), path, inf, data, teacherstore.DumpOptions{K: 64, Temperature: c.TeacherTemperature, TeacherSHA256: strings.Repeat("0", 64)}); err != nil {
			t.Fatal(err)
		}
		st, err := teacherstore.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		stores[c.TeacherTemperature] = st
	}
	for _, c := range cases {
		for _, source := range []string{"live", "store"} {
			t.Run(c.Name+"/"+source, func(t *testing.T) {
				student, _, err := lm.LoadCheckpoint("testdata/distill_micro/student", pool)
				if err != nil {
					t.Fatal(err)
				}
				o := Options{Loss: c.lossOptions(t), Target: TargetTeacher, Teacher: inf, MaxWindows: 6}
				if source == "store" {
					o.Teacher, o.Store = nil, stores[c.TeacherTemperature]
				}
				e, err := New(o, student, data, pool)
				if err != nil {
					t.Fatal(err)
				}
				s, err := e.Gradient(context.Background(), []int32{0, 1, 2, 3, 4, 5}, 1)
				if err != nil {
					t.Fatal(err)
				}
				n := float64(s.Tokens)
				if got := s.Loss / n; math.Abs(got-c.Loss) > 1e-5*math.Abs(c.Loss) {
					t.Errorf("mean loss %.9f; PyTorch %.9f", got, c.Loss)
				}
				ref := loadGradsFile(t, pool, "testdata/distill_micro/student/config.json", "testdata/distill_micro/grads-"+c.Name+".safetensors")
				for _, ts := range student.Layout() {
					g, r := ts.View(student.Grads), ts.View(ref)
					var diff, norm float64
					for i := range g {
						d := float64(g[i])/n - float64(r[i])
						diff += d * d
						norm += float64(r[i]) * float64(r[i])
					}
					if math.Sqrt(diff) > 1e-4*math.Sqrt(norm) {
						t.Errorf("%s: |engine - PyTorch| is %.2g of the tensor's norm %.3g", ts.Name, math.Sqrt(diff/norm), math.Sqrt(norm))
					}
				}
			})
		}
	}
}

// loadGradsFile reads a gradient file with a model's keys through the
// checkpoint reader.
func loadGradsFile(t *testing.T, pool *kernels.Pool, config, grads string) []float32 {
	t.Helper()
	dir := t.TempDir()
	for _, f := range [][2]string{{config, lm.ConfigFile}, {grads, lm.ModelFile}} {
		b, err := os.ReadFile(f[0])
		if err != nil {
			t.Fatal(err)
		}
		os.WriteFile(filepath.Join(dir, f[1]), b, 0o644)
	}
	g, _, err := lm.LoadCheckpoint(dir, pool)
	if err != nil {
		t.Fatal(err)
	}
	return g.Params
}

// The evaluation reports KL(teacher || student); a student that is the
// teacher has 0.
func TestEvaluateTeacherKL(t *testing.T) {
	pool := kernels.NewPool(1)
	teacher, _, err := lm.LoadCheckpoint(golden, pool)
	if err != nil {
		t.Fatal(err)
	}
	inf, _ := lm.NewInference(teacher.Config, teacher.Params, pool)
	data, err := shard.Open(shard.Options{Source: "tokens:" + filepath.Join(golden, "tokens.bin"), Ctx: 8, Vocab: 64})
	if err != nil {
		t.Fatal(err)
	}
	defer data.Close()
	e, err := New(Options{Loss: loss.DefaultOptions(), Target: TargetTeacher, Teacher: inf, MaxWindows: 6}, teacher, data, pool)
	if err != nil {
		t.Fatal(err)
	}
	ev, err := e.Evaluate([]int{0, 1, 2, 3, 4, 5})
	if err != nil {
		t.Fatal(err)
	}
	if math.Abs(ev.TeacherKL) > 1e-6 || ev.KL != -1 {
		t.Errorf("KL(teacher || itself) = %v, KL to truth %v; want 0 and unknown", ev.TeacherKL, ev.KL)
	}
}
