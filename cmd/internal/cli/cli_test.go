package cli

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/klring/klring/cluster"
	"github.com/klring/klring/config"
)

func TestHelpListsEveryKey(t *testing.T) {
	for name, cmd := range map[string]func() string{
		"coordinator sim": func() string { return helpOf(t, []string{"sim", "--help"}) },
		"worker":          func() string { return helpOfWorker(t) },
	} {
		help := cmd()
		for _, k := range config.Keys() {
			if !strings.Contains(help, k.Name) {
				t.Errorf("%s --help does not list %s", name, k.Name)
			}
		}
	}
}

func helpOf(t *testing.T, args []string) string {
	t.Helper()
	c := Coordinator()
	var out bytes.Buffer
	c.SetOut(&out)
	c.SetErr(&out)
	c.SetArgs(args)
	if err := c.ExecuteContext(context.Background()); err != nil {
		t.Fatal(err)
	}
	return out.String()
}

func helpOfWorker(t *testing.T) string {
	t.Helper()
	c := Worker()
	var out bytes.Buffer
	c.SetOut(&out)
	c.SetErr(&out)
	c.SetArgs([]string{"--help"})
	if err := c.ExecuteContext(context.Background()); err != nil {
		t.Fatal(err)
	}
	return out.String()
}

func TestBadInputIsAClearError(t *testing.T) {
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"sim", "--train.lr", "-1"}, "train.lr = -1"},
		{[]string{"sim", "--train.min_lr", "1"}, "train.min_lr = 1"},
		{[]string{"sim", "--train.steps", "many"}, "train.steps"},
		{[]string{"sim", "--no-such-flag"}, "no-such-flag"},
		{[]string{"sim", "--job", "a.b"}, `job = "a.b"`},
		{[]string{"eval"}, "--checkpoint is required"},
		{[]string{"sample", "--checkpoint", "/nonexistent"}, "/nonexistent"},
		{[]string{"scale", "--network", "fast"}, `link profile: "fast"`},
		{[]string{"scale", "--warmup", "-1"}, "--warmup -1"},
		{[]string{"scale", "--warmup", "0"}, "--warmup 0"},
		{[]string{"scale", "--steps", "3", "--warmup", "3"}, "3 steps with 3 warmup steps"},
		{[]string{"scale", "--project-to", "0"}, "--project-to 0"},
		{[]string{"chaos", "--faults", "-1"}, "-1 faults: want 0..120"},
		{[]string{"chaos", "--faults", "1000", "--train.steps", "4"}, "1000 faults: want 0..4"},
		{[]string{"chaos", "--kinds", "bogus"}, `fault kind "bogus"`},
		{[]string{"eval", "--checkpoint", "x", "--data.val_fraction", "0.9"}, "--data.val_fraction 0.9: want [0, 0.5]"},
		{[]string{"eval", "--checkpoint", "x", "--tokenizer", "gpt2"}, "--tokenizer gpt2: applies to text:PATH"},
	}
	for _, tt := range tests {
		c := Coordinator()
		var out bytes.Buffer
		c.SetOut(&out)
		c.SetErr(&out)
		c.SetArgs(tt.args)
		err := c.ExecuteContext(context.Background())
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("coordinator %v = %v; want an error containing %q", tt.args, err, tt.want)
		}
	}
}

// A run stopped on request says so, and how to resume, instead of
// "finished".
func TestPrintSummaryStopped(t *testing.T) {
	var b bytes.Buffer
	printSummary(&b, cluster.Summary{Steps: 49, Stopped: true, RunDir: "runs/x"}, 200)
	if s := b.String(); !strings.Contains(s, "stopped at step 49 of 200") || !strings.Contains(s, "--run.dir runs/x") || strings.Contains(s, "finished") {
		t.Errorf("stopped run's summary:\n%s", s)
	}
	b.Reset()
	printSummary(&b, cluster.Summary{Steps: 200}, 200)
	if s := b.String(); !strings.Contains(s, "finished: 200 steps") {
		t.Errorf("finished run's summary:\n%s", s)
	}
	// A resumed run gives the whole run's totals apart from this part's
	// steps, time and rate.
	b.Reset()
	printSummary(&b, cluster.Summary{Steps: 150, Tokens: 307200, ResumedFrom: 100, Seconds: 10, TokensPerS: 10240}, 150)
	if s := b.String(); !strings.Contains(s, "150 steps, 307200 tokens in all; resumed at step 100, this part ran 50 steps in 10.0 s at 10240 tokens/s") {
		t.Errorf("resumed run's summary:\n%s", s)
	}
	b.Reset()
	printSummary(&b, cluster.Summary{Steps: 40, Tokens: 81920, ResumedFrom: 40, Seconds: 1.4}, 40)
	if s := b.String(); !strings.Contains(s, "reached step 40 of 40 already") || strings.Contains(s, "tokens/s") {
		t.Errorf("summary of a resumed run that had finished:\n%s", s)
	}
}
