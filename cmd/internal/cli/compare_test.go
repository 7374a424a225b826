package cli

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestCompare(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "cmp")
	tiny := []string{"--model.preset", "custom", "--model.n_embd", "16", "--model.n_layer", "1", "--model.n_head", "2",
		"--model.ctx", "16", "--data.source", "synthetic:tokens=8192", "--train.batch_windows", "4",
		"--cluster.workers", "1", "--cluster.threads", "1", "--run.checkpoint_every", "0", "--run.dir", dir}
	// Reverse KL against the truth without smoothing: refused before
	// anything runs.
	_, _, err := run(t, append([]string{"compare", "--vary", "loss.direction=forward,reverse", "--steps", "3"}, tiny...)...)
	if err == nil || !strings.Contains(err.Error(), "needs loss.label_smoothing > 0") {
		t.Fatalf("compare of reverse KL without smoothing: %v", err)
	}
	if _, err := os.Stat(dir); err == nil {
		t.Fatal("a refused compare created its run.dir")
	}
	if _, _, err := run(t, append([]string{"compare", "--vary", "loss.no_such=1,2"}, tiny...)...); err == nil || !strings.Contains(err.Error(), `unknown configuration key "loss.no_such"`) {
		t.Fatalf("compare of an unknown key: %v", err)
	}
	stdout, stderr, err := run(t, append([]string{"compare", "--vary", "loss.direction=forward,reverse", "--vary", "loss.temperature=1,2",
		"--loss.label_smoothing", "0.01", "--steps", "3"}, tiny...)...)
	if err != nil {
		t.Fatalf("%v\n%s", err, stderr)
	}
	for _, want := range []string{"loss.direction=forward loss.temperature=1", "loss.direction=reverse loss.temperature=2", "KL to truth", "entropy floor",
		filepath.Join(dir, "compare.csv"), filepath.Join(dir, "compare_kl.png")} {
		if !strings.Contains(stdout, want) {
			t.Errorf("compare output lacks %q:\n%s", want, stdout)
		}
	}
	if !strings.Contains(stderr, "[4/4]") {
		t.Errorf("compare progress lacks the fourth setting:\n%s", stderr)
	}
	for _, f := range []string{"compare.csv", "compare.json", "compare_kl.png", "compare_ce.png", "compare_entropy.png", "04-loss.direction=reverse_loss.temperature=2/metrics.jsonl"} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			t.Errorf("compare did not write %s: %v", f, err)
		}
	}
	// A second comparison into the same run.dir, of other settings or of
	// the same, is refused before it runs: it would resume the first's
	// checkpoints and replace its table and plots.
	before, err := os.ReadFile(filepath.Join(dir, "compare.json"))
	if err != nil {
		t.Fatal(err)
	}
	for _, vary := range []string{"loss.direction=forward,jsd", "loss.direction=forward,reverse"} {
		_, stderr, err := run(t, append([]string{"compare", "--vary", vary, "--loss.label_smoothing", "0.01", "--steps", "3"}, tiny...)...)
		if err == nil || !strings.Contains(err.Error(), filepath.Join(dir, "compare.json")) || !strings.Contains(err.Error(), "choose another --run.dir") {
			t.Errorf("compare --vary %s into the run.dir of an earlier compare: %v; want refused, naming its compare.json", vary, err)
		}
		if strings.Contains(stderr, "[1/") {
			t.Errorf("a refused compare started a run:\n%s", stderr)
		}
	}
	if after, err := os.ReadFile(filepath.Join(dir, "compare.json")); err != nil || string(after) != string(before) {
		t.Errorf("a refused compare changed compare.json: %v", err)
	}
}

// A setting whose files are missing, or a run.dir that holds a setting's run
// folder, is refused before the first run, with an error naming them.
func TestCompareRefusesBeforeRunning(t *testing.T) {
	teacher := tinyTeacher(t)
	missing := filepath.Join(t.TempDir(), "nonexist")
	for _, tc := range []struct {
		name    string
		args    []string
		prepare func(dir string) error
		want    []string
	}{
		{"a missing teacher", []string{"--vary", "loss.teacher=" + teacher + "," + missing, "--data.source", "synthetic:tokens=8192,vocab=256"},
			nil, []string{`setting "loss.teacher=` + missing + `"`, "loss.teacher " + missing}},
		{"a missing teacher store", []string{"--vary", "loss.teacher_store=" + missing},
			nil, []string{`setting "loss.teacher_store=` + missing + `"`, "loss.teacher_store"}},
		{"a missing model.init", []string{"--vary", "train.lr=0.01,0.001", "--model.init", missing},
			nil, []string{`setting "train.lr=0.01"`, `setting "train.lr=0.001"`, "model.init " + missing}},
		{"a missing text", []string{"--vary", "data.source=synthetic:tokens=8192,text:" + missing},
			nil, []string{`setting "data.source=text:` + missing + `"`, "data.source text:" + missing}},
		{"a setting's run folder", []string{"--vary", "loss.direction=forward,jsd", "--loss.label_smoothing", "0.01"},
			func(dir string) error { return os.MkdirAll(filepath.Join(dir, "02-loss.direction=jsd"), 0o755) },
			[]string{filepath.Join("02-loss.direction=jsd"), "choose another --run.dir"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "cmp")
			if tc.prepare != nil {
				if err := tc.prepare(dir); err != nil {
					t.Fatal(err)
				}
			}
			args := append([]string{"compare", "--steps", "3", "--model.preset", "custom", "--model.n_embd", "16", "--model.n_layer", "1", "--model.n_head", "2",
				"--model.ctx", "16", "--data.source", "synthetic:tokens=8192", "--train.batch_windows", "4",
				"--cluster.workers", "1", "--cluster.threads", "1", "--run.checkpoint_every", "0", "--run.dir", dir}, tc.args...)
			_, stderr, err := run(t, args...)
			if err == nil {
				t.Fatalf("compare with %s ran", tc.name)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("compare with %s: %v; want an error saying %q", tc.name, err, w)
				}
			}
			if strings.Contains(stderr, "[1/") {
				t.Errorf("compare with %s started a run:\n%s", tc.name, stderr)
			}
			if tc.prepare == nil {
				if _, err := os.Stat(dir); err == nil {
					t.Errorf("compare with %s created its run.dir", tc.name)
				}
			}
		})
	}
}

// The shared flags are checked with each setting, not alone: a key that
// only some settings read is refused naming the settings that ignore it,
// and not at all when every setting reads it.
func TestCompareChecksSharedFlagsPerSetting(t *testing.T) {
	c := Coordinator()
	var out bytes.Buffer
	c.SetOut(&out)
	c.SetErr(&out)
	c.SetArgs([]string{"compare", "--run.dir", t.TempDir(), "--loss.beta", "0.3", "--vary", "loss.direction=forward,jsd"})
	err := c.ExecuteContext(context.Background())
	if err == nil || !strings.Contains(err.Error(), `setting "loss.direction=forward"`) || !strings.Contains(err.Error(), "loss.beta") ||
		strings.Contains(err.Error(), `setting "loss.direction=jsd"`) {
		t.Errorf("compare --loss.beta 0.3 --vary loss.direction=forward,jsd = %v; want an error naming the forward setting only", err)
	}
}
