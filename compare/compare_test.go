package compare

import (
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/spf13/pflag"

	"github.com/klring/klring/cluster"
	"github.com/klring/klring/config"
	"github.com/klring/klring/outputs"
)

// tinyFlags is the configuration of a run that takes well under a second
// a step: a one-layer model on a short synthetic corpus, two workers.
func tinyFlags(t *testing.T, extra ...string) *pflag.FlagSet {
	t.Helper()
	fs := pflag.NewFlagSet("test", pflag.ContinueOnError)
	config.AddFlags(fs)
	args := append([]string{"--model.preset", "custom", "--model.n_embd", "16", "--model.n_layer", "1", "--model.n_head", "2",
		"--model.ctx", "16", "--data.source", "synthetic:tokens=8192", "--train.steps", "6", "--train.batch_windows", "4",
		"--cluster.workers", "2", "--cluster.threads", "1", "--run.checkpoint_every", "0"}, extra...)
	if err := fs.Parse(args); err != nil {
		t.Fatal(err)
	}
	return fs
}

func mustVary(t *testing.T, s string) Vary {
	t.Helper()
	v, err := ParseVary(s)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func TestCompareRunsAndWrites(t *testing.T) {
	dir := t.TempDir()
	vary := []Vary{mustVary(t, "loss.direction=forward,reverse")}
	settings, err := Plan(vary, FlagLoader(tinyFlags(t, "--loss.label_smoothing", "0.01")), dir, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(settings) != 2 || settings[1].Name != "loss.direction=reverse" || settings[0].Config.Run.EvalEvery != 1 {
		t.Fatalf("settings %+v; want forward then reverse, evaluating every step", settings)
	}
	var started []string
	res, err := Run(context.Background(), vary, settings, Options{Dir: dir, Simulate: cluster.Simulate,
		Progress: func(i int, s Setting) func(outputs.StepMetrics) { started = append(started, s.Name); return nil }})
	if err != nil {
		t.Fatal(err)
	}
	if len(started) != 2 {
		t.Fatalf("progress for %v; want both settings", started)
	}
	for _, r := range res.Rows {
		if r.Steps != 6 || r.KL == nil || !(*r.KL > 0) || !(r.CE > *r.Floor) {
			t.Fatalf("row %+v; want 6 steps, a positive KL and a cross-entropy above the floor", r)
		}
		// An evaluation is due every step; one still running when the next
		// is due makes the coordinator skip that one (cluster's
		// TestSlowEvaluationIsSkippedNotWaitedFor), so a loaded machine may
		// leave out a point, never the last.
		if n := len(r.Curve); n < 2 || n > 6 || r.Curve[n-1].Step != 6 || !slices.IsSortedFunc(r.Curve, func(a, b Point) int { return int(a.Step) - int(b.Step) }) {
			t.Fatalf("curve %+v; want up to 6 points in step order, ending at step 6", r.Curve)
		}
		if _, err := os.Stat(filepath.Join(r.RunDir, "metrics.jsonl")); err != nil {
			t.Fatalf("run folder of %s: %v", r.Setting, err)
		}
	}
	if *res.Rows[0].KL == *res.Rows[1].KL {
		t.Fatal("forward and reverse KL trained to the same model")
	}

	f, err := os.Open(res.CSV)
	if err != nil {
		t.Fatal(err)
	}
	recs, err := csv.NewReader(f).ReadAll()
	f.Close()
	if err != nil || len(recs) != 3 || recs[0][1] != "loss.direction" || recs[1][1] != "forward" || recs[2][1] != "reverse" {
		t.Fatalf("compare.csv = %v, %v; want a header and two rows", recs, err)
	}
	b, err := os.ReadFile(res.JSON)
	if err != nil {
		t.Fatal(err)
	}
	var back Result
	if err := json.Unmarshal(b, &back); err != nil || len(back.Rows) != 2 || len(back.Rows[1].Curve) != len(res.Rows[1].Curve) || back.Rows[1].Curve[len(back.Rows[1].Curve)-1].KL == nil {
		t.Fatalf("compare.json: %v, %+v", err, back)
	}
	again, err := ReadResult(dir)
	if err != nil || len(again.Rows) != 2 || again.Rows[0].Setting != "loss.direction=forward" {
		t.Fatalf("ReadResult: %+v, %v", again, err)
	}
	if len(res.Plots) != 3 {
		t.Fatalf("plots %v; want KL, cross-entropy and entropy", res.Plots)
	}
	for _, p := range res.Plots {
		b, err := os.ReadFile(p)
		if err != nil || len(b) < 1000 || string(b[1:4]) != "PNG" {
			t.Fatalf("plot %s: %v (%d bytes)", p, err, len(b))
		}
	}
}

// Everything wrong is found before any run starts.
func TestPlanRefusesBeforeRunning(t *testing.T) {
	for _, tc := range []struct {
		vary  []string
		extra []string
		want  string
	}{
		{[]string{"loss.direction=forward,reverse"}, nil, "loss.label_smoothing > 0"},
		{[]string{"loss.direction=jsd", "loss.beta=0.5,1"}, nil, `"loss.direction=jsd loss.beta=1"`},
		{[]string{"loss.direction=reverse"}, []string{"--data.source", "text:/dev/null"}, "needs soft targets"},
		{[]string{"loss.beta=0.5,many"}, nil, "loss.beta=many"},
		{[]string{"loss.direction=forward,sideways"}, nil, "sideways"},
		{[]string{"train.lr=0.01,-1"}, nil, "train.lr = -1"},
		{[]string{"loss.beta=0.5", "loss.beta=0.2"}, nil, "given twice"},
	} {
		var vary []Vary
		for _, s := range tc.vary {
			vary = append(vary, mustVary(t, s))
		}
		dir := filepath.Join(t.TempDir(), "cmp")
		_, err := Plan(vary, FlagLoader(tinyFlags(t, tc.extra...)), dir, 0)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Plan(%v) error = %v; want one saying %q", tc.vary, err, tc.want)
		}
		if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("Plan(%v) created %s", tc.vary, dir)
		}
	}
	if _, err := Plan(nil, FlagLoader(tinyFlags(t)), t.TempDir(), 0); !errors.Is(err, ErrSetting) {
		t.Errorf("Plan of nothing: %v", err)
	}
}

func TestParseVary(t *testing.T) {
	v, err := ParseVary(" loss.direction = forward, reverse ,jsd")
	if err != nil || v.Key != "loss.direction" || strings.Join(v.Values, "|") != "forward|reverse|jsd" {
		t.Fatalf("ParseVary = %+v, %v", v, err)
	}
	for s, want := range map[string]string{
		"loss.directon=forward": `unknown configuration key "loss.directon"`,
		"loss.direction":        "want KEY=VALUE",
		"=forward":              "want KEY=VALUE",
		"loss.beta=0.1,,0.2":    "an empty value",
		"loss.beta=0.1,0.1":     `value "0.1" twice`,
		"run.dir=a,b":           "cannot be varied",
	} {
		if _, err := ParseVary(s); !errors.Is(err, ErrSetting) || !strings.Contains(err.Error(), want) {
			t.Errorf("ParseVary(%q) error = %v; want one saying %q", s, err, want)
		}
	}
}

// Named cases set several keys at once, combine with --vary as a grid, and
// are checked like varied values.
func TestCasesSetSeveralKeys(t *testing.T) {
	cases, err := ParseCases([]string{"hard:loss.target=hard", "smooth:loss.label_smoothing=0.1;train.lr=0.001"})
	if err != nil {
		t.Fatal(err)
	}
	vary := []Vary{cases, mustVary(t, "train.seed=1,2")}
	settings, err := Plan(vary, FlagLoader(tinyFlags(t)), t.TempDir(), 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(settings) != 4 || settings[2].Name != "smooth train.seed=1" {
		t.Fatalf("settings %v; want hard x 2 seeds, then smooth x 2 seeds", settings)
	}
	c := settings[3].Config
	if c.Loss.LabelSmoothing != 0.1 || c.Train.LR != 0.001 || c.Train.Seed != 2 || settings[0].Config.Loss.LabelSmoothing != 0 {
		t.Errorf("smooth seed 2: smoothing %v, lr %v, seed %v", c.Loss.LabelSmoothing, c.Train.LR, c.Train.Seed)
	}
	for _, bad := range [][]string{{"x"}, {"a:nosuch.key=1"}, {"a:train.lr=1,2"}, {"a:train.lr=1", "a:train.lr=2"}} {
		if _, err := ParseCases(bad); !errors.Is(err, ErrSetting) {
			t.Errorf("ParseCases(%q) = %v; want ErrSetting", bad, err)
		}
	}
	// A case that cannot train is refused before anything runs.
	bad, _ := ParseCases([]string{"rev:loss.direction=reverse"})
	if _, err := Plan([]Vary{bad}, FlagLoader(tinyFlags(t)), t.TempDir(), 0); !errors.Is(err, ErrSetting) {
		t.Errorf("reverse KL against the truth without smoothing: %v; want refused", err)
	}
}
