package outputs

import (
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestRunTruncatesToTheCheckpointAndSyncsTheLedger(t *testing.T) {
	dir := t.TempDir()
	o, err := Open(dir, 0)
	if err != nil {
		t.Fatal(err)
	}
	for s := uint64(1); s <= 5; s++ {
		if err := o.AppendLedger(LedgerEntry{Step: s, Batch: []int32{int32(s)}}); err != nil {
			t.Fatal(err)
		}
		if err := o.AppendMetrics(StepMetrics{Step: s, Loss: float64(s), TotalTok: int64(10 * s)}); err != nil {
			t.Fatal(err)
		}
	}
	if err := o.Close(); err != nil {
		t.Fatal(err)
	}
	// A torn last line, as a crash mid-write leaves.
	f, _ := os.OpenFile(filepath.Join(dir, "ledger.jsonl"), os.O_APPEND|os.O_WRONLY, 0)
	f.WriteString(`{"step":6,"ba`)
	f.Close()

	o, err = Open(dir, 3) // resumed from the checkpoint of step 3
	if err != nil {
		t.Fatal(err)
	}
	defer o.Close()
	if len(o.Rows) != 3 || o.TotalTokens != 30 || o.LastLoss != 3 {
		t.Errorf("after a restart at step 3: %d rows, %d tokens, loss %v; want 3, 30, 3", len(o.Rows), o.TotalTokens, o.LastLoss)
	}
	l, err := ReadLedger(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(l) != 3 || l[2].Step != 3 {
		t.Errorf("ledger after the restart: %+v; want steps 1..3", l)
	}
}

func TestNonFiniteMetricsAreRefused(t *testing.T) {
	o, err := Open(t.TempDir(), 0)
	if err != nil {
		t.Fatal(err)
	}
	defer o.Close()
	for _, v := range []float64{math.NaN(), math.Inf(1)} {
		if err := o.AppendMetrics(StepMetrics{Step: 1, Loss: v}); err == nil {
			t.Errorf("AppendMetrics(loss %v) = nil; want an error", v)
		}
	}
	if err := o.AppendMetrics(StepMetrics{Step: 1, Loss: 1}); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(o.MetricsPath)
	if strings.Count(string(b), "\n") != 1 {
		t.Errorf("metrics.jsonl = %q; want one line", b)
	}
}

func TestReadMetricsNamesTheBadLine(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "metrics.jsonl"), []byte("{\"step\":1}\nnot json\n"), 0o644)
	_, err := ReadMetrics(dir)
	if err == nil || !strings.Contains(err.Error(), "line 2") {
		t.Errorf("ReadMetrics = %v; want an error naming line 2", err)
	}
}

func TestPlotLoss(t *testing.T) {
	path := filepath.Join(t.TempDir(), "loss.png")
	v := 2.5
	rows := []StepMetrics{{Step: 1, TotalTok: 10, TrainCE: 3}, {Step: 2, TotalTok: 20, TrainCE: 2, ValLoss: &v}}
	if err := PlotLoss(path, rows, 1.1, "t"); err != nil {
		t.Fatal(err)
	}
	if st, err := os.Stat(path); err != nil || st.Size() < 1000 {
		t.Fatalf("loss.png: %v, %v", st, err)
	}
}
