package compare

import (
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"log/slog"
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

// A run.dir that holds an earlier comparison, or a run folder of one of the
// settings, is refused before anything runs: the settings would resume the
// earlier runs' checkpoints and compare.csv, compare.json and the plots
// would be replaced.
func TestPlanRefusesUsedRunDir(t *testing.T) {
	for _, tc := range []struct {
		name    string
		prepare func(dir string) error
		want    string // "" : Plan succeeds
	}{
		{"missing", func(dir string) error { return os.RemoveAll(dir) }, ""},
		{"empty", func(string) error { return nil }, ""},
		{"unrelated file", func(dir string) error { return os.WriteFile(filepath.Join(dir, "notes.txt"), nil, 0o644) }, ""},
		{"compare.json", func(dir string) error { return os.WriteFile(filepath.Join(dir, "compare.json"), []byte("{}"), 0o644) }, "compare.json"},
		{"compare.csv", func(dir string) error { return os.WriteFile(filepath.Join(dir, "compare.csv"), nil, 0o644) }, "compare.csv"},
		{"a setting's run folder", func(dir string) error {
			return os.MkdirAll(filepath.Join(dir, "02-loss.direction=reverse", "checkpoints"), 0o755)
		}, "02-loss.direction=reverse"},
		{"a setting's run folder as a file", func(dir string) error {
			return os.WriteFile(filepath.Join(dir, "01-loss.direction=forward"), nil, 0o644)
		}, "01-loss.direction=forward"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "cmp")
			if err := os.Mkdir(dir, 0o755); err != nil {
				t.Fatal(err)
			}
			if err := tc.prepare(dir); err != nil {
				t.Fatal(err)
			}
			vary := []Vary{mustVary(t, "loss.direction=forward,reverse")}
			_, err := Plan(vary, FlagLoader(tinyFlags(t, "--loss.label_smoothing", "0.01")), dir, 0)
			if tc.want == "" {
				if err != nil {
					t.Fatalf("Plan into a run.dir with %s: %v", tc.name, err)
				}
				return
			}
			if !errors.Is(err, ErrRunDirUsed) || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), dir) ||
				!strings.Contains(err.Error(), "choose another --run.dir") {
				t.Fatalf("Plan into a run.dir with %s: %v; want ErrRunDirUsed naming %s and %s, saying to choose another --run.dir", tc.name, err, dir, tc.want)
			}
		})
	}
}

// The files a setting's configuration names are checked before the first
// run, each error naming the setting and the key.
func TestPlanChecksFiles(t *testing.T) {
	tmp := t.TempDir()
	missing := filepath.Join(tmp, "nonexist")
	good := filepath.Join(tmp, "gpt2")     // a GPT-2 folder
	empty := filepath.Join(tmp, "empty")   // a folder without one
	text := filepath.Join(tmp, "text.txt") // a text file
	short := filepath.Join(tmp, "short.store")
	for _, d := range []string{good, empty} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for name, b := range map[string]string{
		filepath.Join(good, "config.json"):       `{"model_type": "gpt2", "vocab_size": 64, "n_positions": 8, "n_ctx": 8, "n_embd": 32, "n_layer": 2, "n_head": 4}`,
		filepath.Join(good, "model.safetensors"): "",
		text:                                     strings.Repeat("some text to train on. ", 100),
		short:                                    "not a store",
	} {
		if err := os.WriteFile(name, []byte(b), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		vary string
		want []string // nil: Plan succeeds
	}{
		{"loss.teacher=" + good, nil},
		{"data.source=synthetic,text:" + text, nil},
		{"model.init=" + good, nil},
		{"loss.teacher=" + good + "," + missing, []string{`setting "loss.teacher=` + missing + `"`, "loss.teacher " + missing}},
		{"loss.teacher=" + empty, []string{`setting "loss.teacher=` + empty + `"`, "loss.teacher", "config.json"}},
		{"loss.teacher=" + text, []string{"loss.teacher", "not a folder"}},
		{"loss.teacher_store=" + missing, []string{`setting "loss.teacher_store=` + missing + `"`, "loss.teacher_store"}},
		{"loss.teacher_store=" + short, []string{"loss.teacher_store", "header"}},
		{"model.init=" + missing, []string{`setting "model.init=` + missing + `"`, "model.init"}},
		{"model.init=" + empty, []string{"model.init", "config.json"}},
		{"data.source=synthetic,text:" + missing, []string{`setting "data.source=text:` + missing + `"`, "data.source"}},
		{"data.source=tokens:" + missing, []string{`setting "data.source=tokens:` + missing + `"`, "data.source"}},
		{"data.source=text:" + empty, []string{"data.source", "a folder"}},
	} {
		dir := filepath.Join(t.TempDir(), "cmp")
		settings, err := Plan([]Vary{mustVary(t, tc.vary)}, FlagLoader(tinyFlags(t)), dir, 0)
		if tc.want == nil {
			if err != nil {
				t.Errorf("Plan(%s): %v", tc.vary, err)
			}
			continue
		}
		if !errors.Is(err, ErrSetting) {
			t.Errorf("Plan(%s) = %d settings, %v; want ErrSetting", tc.vary, len(settings), err)
			continue
		}
		for _, w := range tc.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("Plan(%s) error = %v; want one saying %q", tc.vary, err, w)
			}
		}
		if strings.Contains(err.Error(), `setting "loss.teacher=`+good+`"`) {
			t.Errorf("Plan(%s) error = %v; the good teacher is not wrong", tc.vary, err)
		}
		if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("Plan(%s) created %s", tc.vary, dir)
		}
	}
}

// A setting whose files do not fit its job (a teacher of a shorter context
// than the student's windows) is found by Options.Check before any
// setting runs: the settings before it do not train for nothing, and the
// comparison's run.dir stays unused.
func TestRunChecksEverySettingFirst(t *testing.T) {
	dir := t.TempDir()
	cases, err := ParseCases([]string{"good:loss.direction=forward", "bad:loss.teacher=../cluster/testdata/gpt_micro"})
	if err != nil {
		t.Fatal(err)
	}
	settings, err := Plan([]Vary{cases}, FlagLoader(tinyFlags(t)), dir, 0)
	if err != nil {
		t.Fatalf("Plan (which reads headers only): %v", err)
	}
	ran := 0
	_, err = Run(context.Background(), []Vary{cases}, settings, Options{Dir: dir, Check: func(cfg config.Config) error { return cluster.CheckJob(cfg, nil) },
		Simulate: func(ctx context.Context, cfg config.Config, l *slog.Logger, p func(outputs.StepMetrics)) (outputs.Summary, error) {
			ran++
			return cluster.Simulate(ctx, cfg, l, p)
		}})
	if err == nil || !strings.Contains(err.Error(), `setting "bad"`) || !strings.Contains(err.Error(), "context 8") {
		t.Fatalf("Run = %v; want the bad setting's teacher refused, naming its context", err)
	}
	if ran != 0 {
		t.Errorf("%d settings ran before the check refused one", ran)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Errorf("the comparison's run.dir holds %d entries after a refused check; want none", len(ents))
	}
}
