package scale

import (
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/klring/klring/config"
	"github.com/klring/klring/netem"
)

func sweepConfig(t testing.TB) config.Config {
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

// TestSweepReportFiles runs a small real sweep (1 and 2 in-process workers
// over shaped links) and checks the report's files: they exist, parse, and
// have a row per point. It asserts no time: whether the measured all-reduce
// follows the cost model is BenchmarkSweep's question, and the model itself
// is checked in virtual time (TestVirtualRingMatchesCostModel).
func TestSweepReportFiles(t *testing.T) {
	link, err := netem.ParseProfile("100MB/s:1ms")
	if err != nil {
		t.Fatal(err)
	}
	o := Options{Workers: []int{1, 2}, Networks: []netem.LinkProfile{link}, Steps: 3, Warmup: 1, ProjectTo: 64}
	dir := t.TempDir()
	rep, err := Run(t.Context(), sweepConfig(t), o, dir, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Points) != 2 {
		t.Fatalf("%d points; want 2", len(rep.Points))
	}
	for _, p := range rep.Points {
		if p.TokensPerStep <= 0 || p.Bytes <= 0 || p.MeasuredStepS <= 0 || p.FinalLoss <= 0 {
			t.Errorf("point n=%d: %+v; want tokens, bytes, a step time and a loss", p.Workers, p)
		}
		if p.Workers == 2 && (p.ModelARS <= 0 || p.VirtualARS <= 0 || p.AllReduceS <= 0) {
			t.Errorf("point n=2: all-reduce %v s, model %v s, virtual %v s; want all > 0", p.AllReduceS, p.ModelARS, p.VirtualARS)
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
	for _, p := range rep.Projection[1:] {
		// Halving the ring's bytes shortens a step whose ring costs
		// something, with or without overlap; overlap never beats the
		// compute alone. (Overlap itself may lose: each bucket pays the
		// ring's latency, TestOverlapAndBF16ByHand.)
		if !(p.BF16.Step < p.Step && p.OverlapBF16.Step <= p.Overlap.Step && p.OverlapBF16.Step >= p.Compute) {
			t.Errorf("n=%d: step %v, overlap %v, bf16 %v, both %v, compute %v", p.Workers, p.Step, p.Overlap.Step, p.BF16.Step, p.OverlapBF16.Step, p.Compute)
		}
	}
	if md := rep.Markdown(); !strings.Contains(md, "### Overlap and bfloat16 on the wire") {
		t.Errorf("the report has no overlap and bf16 table:\n%s", md)
	}
}

// BenchmarkSweep runs the real sweep, n = 2..8 in-process workers over links
// shaped to 100 MB/s and 1 ms, and reports the measured all-reduce against
// the cost model and the virtual-time schedule. It is a measurement of this
// machine (a loaded machine measures slower), never a pass/fail check:
//
//	go test ./scale -run '^$' -bench Sweep -benchtime 1x
func BenchmarkSweep(b *testing.B) {
	link, err := netem.ParseProfile("100MB/s:1ms")
	if err != nil {
		b.Fatal(err)
	}
	for n := 2; n <= 8; n++ {
		b.Run(fmt.Sprintf("n=%d", n), func(b *testing.B) {
			o := Options{Workers: []int{n}, Networks: []netem.LinkProfile{link}, Steps: 6, Warmup: 2, ProjectTo: 64}
			var p Point
			for b.Loop() {
				rep, err := Run(b.Context(), sweepConfig(b), o, b.TempDir(), slog.New(slog.DiscardHandler))
				if err != nil {
					b.Fatal(err)
				}
				p = rep.Points[0]
			}
			b.ReportMetric(p.AllReduceS*1e3, "allreduce_ms")
			b.ReportMetric(p.ModelARS*1e3, "model_ms")
			b.ReportMetric(p.VirtualARS*1e3, "virtual_ms")
			b.ReportMetric(p.AllReduceS/p.ModelARS, "measured/model")
		})
	}
}

func TestOptionsValidate(t *testing.T) {
	ok := Options{Workers: []int{1, 2}}
	if err := ok.Validate(); err != nil {
		t.Fatalf("%+v: %v", ok, err)
	}
	for _, tt := range []struct {
		o    Options
		want string
	}{
		{Options{}, "no worker counts"},
		{Options{Workers: []int{0}}, "0 workers"},
		{Options{Workers: []int{1}, Warmup: -1}, "-1 warmup steps"},
		{Options{Workers: []int{1}, Steps: -3}, "-3 steps"},
		{Options{Workers: []int{1}, ProjectTo: -8}, "projection to -8"},
		{Options{Workers: []int{1}, Steps: 2, Warmup: 2}, "leaves nothing to measure"},
		{Options{Workers: []int{1}, Ring: "tcp"}, `ring "tcp"`},
	} {
		if err := tt.o.Validate(); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%+v: Validate = %v; want an error containing %q", tt.o, err, tt.want)
		}
	}
}
