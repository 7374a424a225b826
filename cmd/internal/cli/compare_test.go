package cli

import (
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
}
