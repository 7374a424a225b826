package cluster

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/klring/klring/config"
	"github.com/klring/klring/engine"
	"github.com/klring/klring/kernels"
	"github.com/klring/klring/lm"
	"github.com/klring/klring/loss"
	"github.com/klring/klring/outputs"
	"github.com/klring/klring/shard"
	"github.com/klring/klring/teacherstore"
)

// Every data source, loss and optimizer of the configuration trains through
// simulation mode: the run completes, writes its outputs, and lowers its loss.
func TestSimulateVariants(t *testing.T) {
	dir := t.TempDir()
	text := filepath.Join(dir, "corpus.txt")
	var tb []byte
	for i := 0; len(tb) < 40000; i++ {
		tb = append(tb, "the quick brown fox jumps over the lazy dog; "...)
	}
	if err := os.WriteFile(text, tb, 0o644); err != nil {
		t.Fatal(err)
	}
	tokens := filepath.Join(dir, "train.bin")
	tk := make([]byte, 0, 2*20000)
	for i := 0; i < 20000; i++ {
		tk = binary.LittleEndian.AppendUint16(tk, uint16((i*7+i/3)%50))
	}
	if err := os.WriteFile(tokens, tk, 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		mod  func(*config.Config)
	}{
		{"text", func(c *config.Config) { c.Data.Source = "text:" + text }},
		{"text as GPT-2 tokens", func(c *config.Config) { c.Data.Source = "text:" + text; c.Data.Tokenizer = "gpt2" }},
		{"tokens", func(c *config.Config) { c.Data.Source = "tokens:" + tokens }},
		{"hard targets", func(c *config.Config) { c.Loss.Target = engine.TargetHard; c.Loss.LabelSmoothing = 0.1 }},
		{"reverse KL", func(c *config.Config) { c.Loss.Direction = loss.Reverse; c.Loss.LabelSmoothing = 0.01 }},
		{"JSD", func(c *config.Config) { c.Loss.Direction = loss.JSD }},
		{"temperature", func(c *config.Config) { c.Loss.Temperature = 2 }},
		{"sgd constant", func(c *config.Config) { c.Train.Optimizer = "sgd"; c.Train.Schedule = "constant"; c.Train.LR = 0.5 }},
		{"model.init", func(c *config.Config) {
			c.Model.Init = "testdata/gpt_micro"
			c.Model.NEmbd, c.Model.NLayer, c.Model.NHead, c.Model.Ctx = 0, 0, 0, 0
		}},
	}
	// Reverse KL against a truth with zeros is infinite: refused before the start.
	bad := testConfig(t, 2, 4)
	bad.Loss.Direction = loss.Reverse
	if _, err := NewCoordinator(bad, testLogger(t), nil); err == nil || !strings.Contains(err.Error(), "label_smoothing") {
		t.Errorf("NewCoordinator(reverse KL, no smoothing) = %v; want an error naming loss.label_smoothing", err)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := testConfig(t, 12, 8)
			tt.mod(&cfg)
			if err := cfg.Validate(); err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			sum, err := Simulate(ctx, cfg, testLogger(t), nil)
			if err != nil {
				t.Fatalf("Simulate: %v", err)
			}
			rows, err := outputs.ReadMetrics(cfg.Run.Dir)
			if err != nil || len(rows) != 12 {
				t.Fatalf("metrics: %d rows, %v", len(rows), err)
			}
			first, last := rows[0].TrainCE, rows[len(rows)-1].TrainCE
			if !(last < first) || math.IsNaN(sum.ValLoss) {
				t.Errorf("train cross-entropy %.4f -> %.4f, held-out %.4f; want it to fall", first, last, sum.ValLoss)
			}
			for _, f := range []string{"loss.png", "summary.json", "ledger.jsonl"} {
				if _, err := os.Stat(filepath.Join(cfg.Run.Dir, f)); err != nil {
					t.Error(err)
				}
			}
		})
	}
}

// Simulation mode leaves nothing running: server, coordinator, workers and
// their goroutines are gone when Simulate returns.
func TestSimulateLeavesNoGoroutines(t *testing.T) {
	cfg := testConfig(t, 4, 4)
	before := runtime.NumGoroutine()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := Simulate(ctx, cfg, testLogger(t), nil); err != nil {
		t.Fatal(err)
	}
	goroutinesSettle(t, before)
}

// A whole simulation over mutual TLS with one NATS user per role, with the
// permissions of docs/security.md: the runtime uses only what its role may,
// and the run ends with every step committed once.
func TestSimulateSecure(t *testing.T) {
	cfg := testConfig(t, 6, 4)
	cfg.Cluster.Workers = 2
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	sum, err := SimulateWith(ctx, cfg, testLogger(t), nil, SimOptions{Secure: true})
	if err != nil {
		t.Fatal(err)
	}
	if sum.Steps != 6 || sum.Aborts != 0 {
		t.Errorf("secure simulation: %d steps, %d aborted attempts; want 6 and 0", sum.Steps, sum.Aborts)
	}
	checkLedger(t, cfg.Run.Dir, 6)
}

// Distillation, distributed: two workers each take half of the golden
// windows, the teacher runs beside the student on each, and one SGD step of
// learning rate 1 moves the student by exactly PyTorch's gradient of the
// mean distillation loss (forward, reverse at T=1.5, JSD at beta 0.1, top 8
// with the rest bucket, T^2 with a hard-label mix).
func TestDistillationTwoWorkersMatchPyTorch(t *testing.T) {
	for _, run := range []string{"fwd-T1", "rev-T15", "jsd-b01", "fwd-top8-rest", "fwd-T2-t2-hard03", "fwd-T1/store", "fwd-top8-rest/store", "fwd-T1/pad"} {
		name, source, _ := strings.Cut(run, "/")
		t.Run(run, func(t *testing.T) {
			c := distillCase(t, name)
			cfg := distillConfig(t, 1, 6)
			cfg.Cluster.Workers = 2
			cfg.Loss.Teacher = "testdata/gpt_micro"
			var err error
			if cfg.Loss.Direction, err = loss.ParseDirection(c.Direction); err != nil {
				t.Fatal(err)
			}
			if cfg.Loss.TeacherTail, err = loss.ParseTail(c.Tail); err != nil {
				t.Fatal(err)
			}
			cfg.Loss.Temperature, cfg.Loss.TeacherTemperature, cfg.Loss.ScaleT2 = c.Temperature, c.TeacherTemperature, c.ScaleT2
			cfg.Loss.HardWeight, cfg.Loss.Beta, cfg.Loss.TeacherTopK = c.HardWeight, c.Beta, c.TopK
			cfg.Train.Optimizer, cfg.Train.Schedule, cfg.Train.LR, cfg.Train.MinLR, cfg.Train.GradClip = "sgd", "constant", 1, 0, 0
			cfg.Train.WarmupSteps = 0
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			if source == "store" {
				// The teacher's full distribution, precomputed.
				cfg.Loss.TeacherStore, cfg.Loss.Teacher = dumpStore(t, cfg.Loss.Teacher, c.TeacherTemperature), ""
			}
			if source == "pad" {
				// The student's 64 rows padded to 96 (model.vocab_pad
				// applied to the Hugging Face init); the teacher is not.
				cfg.Model.VocabPad = 48
			}
			sum, err := Simulate(ctx, cfg, testLogger(t), nil)
			if err != nil {
				t.Fatal(err)
			}
			if d := math.Abs(sum.TrainLoss-c.Loss) / c.Loss; d > 1e-5 {
				t.Errorf("loss %.9f; PyTorch %.9f", sum.TrainLoss, c.Loss)
			}
			pool := kernels.NewPool(1)
			before, _, err := lm.LoadCheckpoint("testdata/distill_micro/student", pool)
			if err != nil {
				t.Fatal(err)
			}
			after, _, err := lm.LoadCheckpoint(sum.Checkpoint, pool)
			if err != nil {
				t.Fatal(err)
			}
			if after.Config.VocabPad != cfg.Model.VocabPad {
				t.Fatalf("checkpoint vocab_pad %d; want model.vocab_pad %d", after.Config.VocabPad, cfg.Model.VocabPad)
			}
			if after, err = after.WithVocabPad(0); err != nil { // the padded rows are zero: compare the real ones
				t.Fatal(err)
			}
			ref := readGrads(t, pool, "testdata/distill_micro/grads-"+name+".safetensors")
			for _, ts := range before.Layout() {
				b, a, r := ts.View(before.Params), ts.View(after.Params), ts.View(ref)
				var diff, norm float64
				for i := range b {
					d := float64(b[i]-a[i]) - float64(r[i])
					diff += d * d
					norm += float64(r[i]) * float64(r[i])
				}
				if math.Sqrt(diff) > 1e-4*math.Sqrt(norm) {
					t.Errorf("%s moved by the gradient within %.2g of its norm %.3g; want 1e-4", ts.Name, math.Sqrt(diff/norm), math.Sqrt(norm))
				}
			}
		})
	}
}

// dumpStore writes the store of teacher's full distribution over
// gpt_micro's tokens at temperature temp, and returns its path.
func dumpStore(t *testing.T, teacher string, temp float64) string {
	return dumpStoreAs(t, teacher, temp, teacherstore.Float32)
}

// dumpStoreAs is dumpStore with the store's probabilities of type dtype.
func dumpStoreAs(t *testing.T, teacher string, temp float64, dtype teacherstore.Dtype) string {
	t.Helper()
	pool := kernels.NewPool(1)
	m, _, err := lm.LoadCheckpoint(teacher, pool)
	if err != nil {
		t.Fatal(err)
	}
	sha, err := teacherstore.TeacherSHA256(teacher)
	if err != nil {
		t.Fatal(err)
	}
	data, err := shard.Open(shard.Options{Source: "tokens:testdata/gpt_micro/tokens.bin", Ctx: m.Config.Ctx})
	if err != nil {
		t.Fatal(err)
	}
	defer data.Close()
	path := filepath.Join(t.TempDir(), "teacher.topk")
	if _, err := teacherstore.Dump(context.Background(), path, m, data, teacherstore.DumpOptions{K: m.Config.Vocab, Temperature: temp, TeacherSHA256: sha, Dtype: dtype}); err != nil {
		t.Fatal(err)
	}
	return path
}

type goldenCase struct {
	Name, Direction, Tail                       string
	Temperature, TeacherTemperature, Beta, Loss float64
	HardWeight                                  float64 `json:"hard_weight"`
	ScaleT2                                     bool    `json:"scale_t2"`
	TopK                                        int     `json:"top_k"`
}

func distillCase(t *testing.T, name string) goldenCase {
	t.Helper()
	var f struct {
		Cases []struct {
			goldenCase
			TeacherTemperature float64 `json:"teacher_temperature"`
		} `json:"cases"`
	}
	b, err := os.ReadFile("testdata/distill_micro/cases.json")
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &f); err != nil {
		t.Fatal(err)
	}
	for _, c := range f.Cases {
		if c.Name == name {
			c.goldenCase.TeacherTemperature = c.TeacherTemperature
			return c.goldenCase
		}
	}
	t.Fatalf("no golden case %s", name)
	return goldenCase{}
}

// readGrads reads a gradient file with a model's keys through the
// checkpoint reader (which transposes the Conv1D matrices).
func readGrads(t *testing.T, pool *kernels.Pool, path string) []float32 {
	t.Helper()
	dir := t.TempDir()
	for _, f := range [][2]string{{"testdata/distill_micro/student/config.json", lm.ConfigFile}, {path, lm.ModelFile}} {
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

// A student trained from a float32 store of the teacher's full
// distribution (k = V) follows the live-teacher run step by step.
func TestTeacherStoreRunMatchesLiveTeacher(t *testing.T) {
	cfg := distillConfig(t, 6, 6)
	cfg.Loss.Teacher, cfg.Loss.Temperature, cfg.Loss.ScaleT2 = "testdata/gpt_micro", 2, true
	cfg.Run.EvalEvery = 0
	live := trainRun(t, cfg, 2)
	cfg.Run.Dir = t.TempDir()
	cfg.Job += "s"
	cfg.Loss.TeacherStore, cfg.Loss.Teacher = dumpStore(t, cfg.Loss.Teacher, 2), ""
	stored := trainRun(t, cfg, 2)
	if len(live) != 6 || len(stored) != 6 {
		t.Fatalf("%d and %d steps; want 6", len(live), len(stored))
	}
	for i := range live {
		if d := relDiff(stored[i].Loss, live[i].Loss); d > 1e-6 {
			t.Errorf("step %d: loss from the store %.9f, from the live teacher %.9f: relative difference %.2g", i+1, stored[i].Loss, live[i].Loss, d)
		}
	}
	if !(live[5].Loss < live[0].Loss) {
		t.Errorf("the loss did not fall: %v -> %v", live[0].Loss, live[5].Loss)
	}
}

// I1 with on-policy training: the windows that roll out and what they
// sample depend on (seed, step, window) alone, so 1 worker and 3 workers
// train the same run.
func TestOnPolicyWorldSizeInvariance(t *testing.T) {
	cfg := testConfig(t, 6, 6)
	cfg.Loss.Direction, cfg.Loss.LabelSmoothing = loss.Reverse, 0.01
	cfg.Loss.OnPolicy, cfg.Loss.OnPolicyPrefix = 0.5, 6
	one := trainRun(t, cfg, 1)
	cfg.Run.Dir = t.TempDir()
	cfg.Job += "p"
	three := trainRun(t, cfg, 3)
	if len(one) != 6 || len(three) != 6 {
		t.Fatalf("%d and %d steps; want 6", len(one), len(three))
	}
	for i := range one {
		if d := relDiff(three[i].Loss, one[i].Loss); d > 1e-5 {
			t.Errorf("step %d: loss with 3 workers %.8f, with 1 %.8f: relative difference %.2g", i+1, three[i].Loss, one[i].Loss, d)
		}
		if three[i].Tokens != one[i].Tokens || one[i].Tokens >= int64(6*16) {
			t.Errorf("step %d: %d and %d target tokens; want equal, fewer than the batch's %d (rolled-out prefixes do not count)", i+1, three[i].Tokens, one[i].Tokens, 6*16)
		}
	}
}

// A teacher with a longer context than the student's distils on the
// student's windows, and is evaluated on them at the end (its own KL to the
// synthetic truth): the run does not fail after training.
func TestTeacherWithLongerContext(t *testing.T) {
	tcfg := testConfig(t, 2, 4)
	tcfg.Model.Ctx = 32
	trainRun(t, tcfg, 1)
	cfg := testConfig(t, 2, 4) // ctx 16
	cfg.Loss.Teacher = filepath.Join(tcfg.Run.Dir, "checkpoints", "step-000002")
	cfg.Cluster.Workers = 2
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	sum, err := Simulate(ctx, cfg, testLogger(t), nil)
	if err != nil {
		t.Fatalf("a teacher of context 32 for a student of 16: %v", err)
	}
	if sum.TeacherKLToTruth == nil || !(*sum.TeacherKLToTruth > 0) || math.IsInf(*sum.TeacherKLToTruth, 0) {
		t.Errorf("the teacher's KL to the truth = %v; want a finite positive value", sum.TeacherKLToTruth)
	}
	if sum.Steps != 2 {
		t.Errorf("%d steps; want 2", sum.Steps)
	}
}
