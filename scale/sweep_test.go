package scale

import (
	"encoding/csv"
	"encoding/json"
	"io"
	"log/slog"
	"math"
	"os"
	"testing"
	"time"

	"github.com/klring/klring/config"
	"github.com/klring/klring/netem"
)

func sweepConfig(t *testing.T) config.Config {
	t.Helper()
	cfg, err := config.Load(nil)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Job = "scaletest"
	cfg.Model.Preset = "custom"
	cfg.Model.NEmbd, cfg.Model.NLayer, cfg.Model.NHead, cfg.Model.Ctx = 128, 2, 4, 16
	cfg.Train.BatchWindows = 8
	cfg.AllReduce.ChunkBytes = 64 << 10 // several parts per segment: the ring pipelines them
	cfg.Cluster.StepDeadline = 20 * time.Second
	cfg.AllReduce.Deadline = 15 * time.Second
	return cfg
}

// The cost model of the ring all-reduce is within 25% of the measured time
// for n = 2..8 on in-process links shaped to 100 MB/s and 1 ms, and the
// report's files exist, parse, and have a row per point.
func TestSweepMatchesCostModel(t *testing.T) {
	if testing.Short() {
		t.Skip("a sweep of seven simulations; run without -short")
	}
	link, err := netem.ParseProfile("100MB/s:1ms")
	if err != nil {
		t.Fatal(err)
	}
	o := Options{Workers: []int{2, 3, 4, 5, 6, 7, 8}, Networks: []netem.LinkProfile{link}, Steps: 6, Warmup: 2, ProjectTo: 64}
	dir := t.TempDir()
	rep, err := Run(t.Context(), sweepConfig(t), o, dir, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Points) != 7 {
		t.Fatalf("%d points; want 7", len(rep.Points))
	}
	for _, p := range rep.Points {
		rel := math.Abs(p.AllReduceS-p.ModelARS) / p.ModelARS
		t.Logf("n=%d: measured all-reduce %.2f ms, model %.2f ms (%.0f%%), lower bound %.2f ms, %.2f MB", p.Workers, p.AllReduceS*1e3, p.ModelARS*1e3, 100*rel, p.LowerBoundS*1e3, p.Bytes/1e6)
		if rel > 0.25 {
			t.Errorf("n=%d: measured all-reduce %.2f ms, model %.2f ms: off by %.0f%% > 25%%", p.Workers, p.AllReduceS*1e3, p.ModelARS*1e3, 100*rel)
		}
	}
	files, err := rep.Write()
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(files.CSV)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	rows, err := csv.NewReader(f).ReadAll()
	if err != nil {
		t.Fatalf("scaling.csv: %v", err)
	}
	if len(rows) != 1+len(rep.Points) || len(rows[0]) != len(csvHeader) {
		t.Errorf("scaling.csv has %d rows of %d columns; want %d of %d", len(rows), len(rows[0]), 1+len(rep.Points), len(csvHeader))
	}
	var back Report
	b, err := os.ReadFile(files.JSON)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &back); err != nil || len(back.Points) != len(rep.Points) {
		t.Errorf("scaling.json: %v, %d points", err, len(back.Points))
	}
	for _, png := range []string{files.Throughput, files.Efficiency, files.Breakdown, files.ARP} {
		b, err := os.ReadFile(png)
		if err != nil || len(b) < 8 || string(b[1:4]) != "PNG" {
			t.Errorf("%s is not a PNG: %v", png, err)
		}
	}
	if len(rep.Projection) != 7 { // 1, 2, 4, ..., 64
		t.Errorf("projection has %d rows; want 7", len(rep.Projection))
	}
}
