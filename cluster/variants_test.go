package cluster

import (
	"context"
	"encoding/binary"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/klring/klring/config"
	"github.com/klring/klring/outputs"
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
		{"hard targets", func(c *config.Config) { c.Loss.Target = "hard"; c.Loss.LabelSmoothing = 0.1 }},
		{"reverse KL", func(c *config.Config) { c.Loss.Direction = "reverse"; c.Loss.LabelSmoothing = 0.01 }},
		{"JSD", func(c *config.Config) { c.Loss.Direction = "jsd" }},
		{"temperature", func(c *config.Config) { c.Loss.Temperature = 2 }},
		{"sgd constant", func(c *config.Config) { c.Train.Optimizer = "sgd"; c.Train.Schedule = "constant"; c.Train.LR = 0.5 }},
		{"model.init", func(c *config.Config) {
			c.Model.Init = "testdata/gpt_micro"
			c.Model.Ctx = 0
		}},
	}
	// Reverse KL against a truth with zeros is infinite: refused before the start.
	bad := testConfig(t, 2, 4)
	bad.Loss.Direction = "reverse"
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
