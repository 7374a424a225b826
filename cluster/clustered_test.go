package cluster

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/klring/klring/natsnet"
	"github.com/klring/klring/outputs"
)

// A simulation over two clustered NATS servers (routes with TLS and a route
// password, mutual TLS and per-role users for clients): workers w0 and w2
// are on the first server, w1 and w3 on the second, and they say so in
// their hellos; the coordinator places the ring w0 w2 w1 w3, so that the
// ring crosses each route once per direction. Every step commits once.
func TestSimulateClusteredPlacesTheRing(t *testing.T) {
	cfg := testConfig(t, 6, 8)
	cfg.Cluster.Workers = 4
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	sum, err := SimulateWith(ctx, cfg, testLogger(t), nil, SimOptions{Servers: 2, Secure: true})
	if err != nil {
		t.Fatal(err)
	}
	if sum.Steps != 6 {
		t.Errorf("clustered simulation: %d steps; want 6", sum.Steps)
	}
	for _, e := range checkLedger(t, cfg.Run.Dir, 6) {
		var order []string
		for _, r := range e.Ranks {
			order = append(order, r.Worker)
		}
		if want := []string{"w0", "w2", "w1", "w3"}; !slices.Equal(order, want) {
			t.Errorf("step %d: ring %v; want %v (the workers of each server together)", e.Step, order, want)
		}
	}
	if _, err := Verify(cfg.Run.Dir, ""); err != nil {
		t.Errorf("Verify: %v", err)
	}
}

// A coordinator with at most 2 workers and Linger uses exactly 2 of the 3
// workers there and ends its run with a pause: the workers wait, and the
// next coordinator (another run, as the next point of a sweep over
// external workers) uses all 3 and ends the job: they exit.
func TestServeMaxWorkersAndLinger(t *testing.T) {
	cfg := testConfig(t, 3, 6)
	tc := newTestCluster(t, cfg)
	var workers []*testWorker
	for i := range 3 {
		workers = append(workers, tc.startWorker(fmt.Sprintf("w%d", i), workerHooks{}))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	for i, n := range []int{2, 3} {
		c := tc.cfg
		c.Run.Dir = t.TempDir()
		c.Cluster.MinWorkers = n
		if _, err := ServeWith(ctx, c, tc.log, nil, ServeOptions{MaxWorkers: n, Linger: i == 0}); err != nil {
			t.Fatalf("run with %d workers: %v", n, err)
		}
		for _, e := range checkLedger(t, c.Run.Dir, 3) {
			if len(e.Ranks) != n {
				t.Errorf("run %d, step %d: %d ranks; want %d", i, e.Step, len(e.Ranks), n)
			}
		}
	}
	for i, w := range workers {
		select {
		case err := <-w.done:
			if err != nil {
				t.Errorf("worker %d ended with %v; want nil (the job ended)", i, err)
			}
		case <-ctx.Done():
			t.Fatalf("worker %d still runs after the final plan", i)
		}
	}
}

// Workers with nats.embed run their own NATS server in their process,
// routed into the cluster of the coordinator's server; the job runs over
// the routes.
func TestWorkEmbeddedServers(t *testing.T) {
	cfg := testConfig(t, 4, 4)
	hub, err := natsnet.StartServer(natsnet.ServerOptions{Name: "hub", Cluster: &natsnet.ClusterOptions{User: "route", Password: "pw"}})
	if err != nil {
		t.Fatal(err)
	}
	defer hub.Shutdown()
	cfg.NATS.URL = hub.URL()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	wctx, stop := context.WithCancel(ctx)
	defer stop()
	var wg sync.WaitGroup
	errs := make([]error, 2)
	for i := range 2 {
		w := cfg
		w.NATS.Embed, w.NATS.ServerName, w.NATS.Routes = true, fmt.Sprintf("node%d", i), hub.RouteURL()
		w.NATS.ClusterUser, w.NATS.ClusterPassword = "route", "pw"
		wg.Go(func() { errs[i] = Work(wctx, w, fmt.Sprintf("w%d", i), testLogger(t)) })
	}
	c := cfg
	c.Cluster.MinWorkers = 2
	sum, err := Serve(ctx, c, testLogger(t), func(outputs.StepMetrics) {})
	if err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("worker %d: %v", i, err)
		}
	}
	if sum.Steps != 4 {
		t.Errorf("%d steps; want 4", sum.Steps)
	}
	for _, e := range checkLedger(t, cfg.Run.Dir, 4) {
		if len(e.Ranks) != 2 {
			t.Errorf("step %d: %d ranks; want 2", e.Step, len(e.Ranks))
		}
	}
}
