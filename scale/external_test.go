package scale

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/klring/klring/cluster"
	"github.com/klring/klring/natsnet"
)

// RunExternal drives workers started elsewhere (here: two worker processes'
// runtimes, cluster.Work, on an embedded server): a run with 1 of them,
// which ends with a pause, then one with 2, which ends the job. The points
// are marked as real processes, the ring as external, and the workers exit
// when the sweep ends.
func TestRunExternal(t *testing.T) {
	srv, err := natsnet.StartServer(natsnet.ServerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Shutdown()
	cfg := sweepConfig(t)
	cfg.NATS.URL = srv.URL()
	cfg.Cluster.Threads = 1
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var wg sync.WaitGroup
	errs := make([]error, 2)
	for i := range 2 {
		wg.Go(func() { errs[i] = cluster.Work(ctx, cfg, fmt.Sprintf("ext%d", i), slog.New(slog.DiscardHandler)) })
	}
	rep, err := RunExternal(ctx, cfg, Options{Workers: []int{1, 2}, Steps: 3, Warmup: 1, ProjectTo: 8}, t.TempDir(), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("worker %d: %v; want nil (the sweep ended the job)", i, err)
		}
	}
	if len(rep.Points) != 2 {
		t.Fatalf("%d points; want 2", len(rep.Points))
	}
	for _, p := range rep.Points {
		if !p.Real || p.Ring != "external" || p.TokensPerStep <= 0 || p.ComputeS <= 0 {
			t.Errorf("point n=%d: real %v, ring %q, %v tokens, compute %v s; want a real, external point with tokens and compute", p.Workers, p.Real, p.Ring, p.TokensPerStep, p.ComputeS)
		}
	}
	if p := rep.Points[1]; p.AllReduceS <= 0 || p.BusBW <= 0 {
		t.Errorf("point n=2: all-reduce %v s, busbw %v; want both > 0", p.AllReduceS, p.BusBW)
	}
	if len(rep.Topology) != 1 || rep.Topology[0].Points != 1 || rep.Topology[0].Follows != "" {
		t.Errorf("Topology = %+v; want one series with one point and no verdict", rep.Topology)
	}
	files, err := rep.Write()
	if err != nil {
		t.Fatal(err)
	}
	if md := rep.Markdown(); !strings.Contains(md, "external (*real*)") || !strings.Contains(md, "Through one NATS server or a cluster") {
		t.Errorf("report.md (%s) does not mark the real points or compare the two models:\n%s", files.Markdown, md)
	}
}
