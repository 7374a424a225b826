package cluster

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/url"
	"os"
	"runtime"
	"sort"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/klring/klring/config"
	"github.com/klring/klring/natsnet"
	"github.com/klring/klring/outputs"
)

// testConfig is a micro job that trains in milliseconds per step.
// distillConfig is testConfig for a student that starts from
// distill_micro's (model.init gives its shape) and trains on gpt_micro's
// tokens, all of them: the job of the distillation tests.
func distillConfig(t *testing.T, steps, batch int) config.Config {
	t.Helper()
	cfg := testConfig(t, steps, batch)
	cfg.Data.Source, cfg.Data.ValFraction = "tokens:testdata/gpt_micro/tokens.bin", 0
	cfg.Model.Init, cfg.Model.Ctx, cfg.Model.Vocab = "testdata/distill_micro/student", 0, 0
	cfg.Model.NEmbd, cfg.Model.NLayer, cfg.Model.NHead = 0, 0, 0
	return cfg
}

func testConfig(t *testing.T, steps, batch int) config.Config {
	t.Helper()
	cfg, err := config.Load(nil)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Job = "t" + fmt.Sprint(time.Now().UnixNano()%1e6)
	cfg.Model.Preset = "custom"
	cfg.Model.NEmbd, cfg.Model.NLayer, cfg.Model.NHead, cfg.Model.Ctx = 32, 2, 2, 16
	cfg.Train.Steps = steps
	cfg.Train.BatchWindows = batch
	cfg.Run.PeakGFLOPs = 100 // not measured by every test's coordinator
	cfg.Train.WarmupSteps = 2
	cfg.Train.LR = 1e-2
	cfg.Train.MinLR = 1e-3
	cfg.Run.Dir = t.TempDir()
	cfg.Run.EvalEvery = 0
	cfg.Run.CheckpointEvery = 0
	cfg.AllReduce.ChunkBytes = 16 << 10 // many parts per segment: exercises the pipeline
	cfg.Cluster.Heartbeat = 300 * time.Millisecond
	cfg.Cluster.StepDeadline = 5 * time.Second
	cfg.AllReduce.Deadline = 4 * time.Second
	cfg.Cluster.Threads = 2
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	return cfg
}

func testLogger(t *testing.T) *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// cluster is a test deployment: an embedded NATS server, a coordinator and
// workers, each worker with a connection of its own.
type testCluster struct {
	t       *testing.T
	cfg     config.Config
	srv     *natsnet.Server
	env     *Env
	log     *slog.Logger
	mu      sync.Mutex
	workers map[string]*testWorker
	wg      sync.WaitGroup
}

type testWorker struct {
	w      *Worker
	nc     *natsnet.Conn
	cancel context.CancelFunc
	done   chan error
}

func newTestCluster(t *testing.T, cfg config.Config) *testCluster {
	t.Helper()
	srv, err := natsnet.StartServer(natsnet.ServerOptions{})
	if err != nil {
		t.Fatalf("embedded NATS server: %v", err)
	}
	cfg.NATS.URL = srv.URL()
	tc := &testCluster{t: t, cfg: cfg, srv: srv, env: NewEnv(cfg.Cluster.Threads), log: testLogger(t), workers: map[string]*testWorker{}}
	t.Cleanup(func() {
		tc.stopAll()
		tc.mu.Lock()
		defer tc.mu.Unlock()
		tc.srv.Shutdown()
	})
	return tc
}

func (tc *testCluster) conn(name string) *natsnet.Conn {
	tc.t.Helper()
	nc, err := connect(context.Background(), tc.cfg, name, tc.log, nil)
	if err != nil {
		tc.t.Fatalf("connecting %s: %v", name, err)
	}
	return nc
}

// restartServer stops the NATS server and starts a new one on the same
// address: the clients reconnect to it.
func (tc *testCluster) restartServer() error {
	u, err := url.Parse(tc.srv.URL())
	if err != nil {
		return err
	}
	port, _ := strconv.Atoi(u.Port())
	tc.srv.Shutdown()
	srv, err := natsnet.StartServer(natsnet.ServerOptions{Port: port})
	if err != nil {
		return fmt.Errorf("restarting the server on port %d: %w", port, err)
	}
	tc.mu.Lock()
	tc.srv = srv
	tc.mu.Unlock()
	return nil
}

// startWorker starts worker id with optional hooks.
func (tc *testCluster) startWorker(id string, hooks workerHooks) *testWorker {
	tc.t.Helper()
	nc := tc.conn(id)
	w, err := NewWorker(context.Background(), id, tc.cfg.Job, nc, tc.log, tc.env)
	if err != nil {
		tc.t.Fatal(err)
	}
	w.hooks = hooks
	if hooks.coordTimeout > 0 {
		w.SetCoordinatorTimeout(hooks.coordTimeout)
	}
	ctx, cancel := context.WithCancel(context.Background())
	tw := &testWorker{w: w, nc: nc, cancel: cancel, done: make(chan error, 1)}
	tc.mu.Lock()
	tc.workers[id] = tw
	tc.mu.Unlock()
	tc.wg.Add(1)
	go func() {
		defer tc.wg.Done()
		tw.done <- w.Run(ctx)
	}()
	return tw
}

// kill ends a worker abruptly: its connection closes as if the process died.
func (tw *testWorker) kill() {
	tw.nc.Close()
	tw.cancel()
}

func (tc *testCluster) stopAll() {
	tc.mu.Lock()
	for _, w := range tc.workers {
		w.cancel()
	}
	tc.mu.Unlock()
	tc.wg.Wait()
	tc.mu.Lock()
	for _, w := range tc.workers {
		w.nc.Close()
	}
	tc.mu.Unlock()
}

// runCoordinator runs a coordinator to the end (or ctx's end).
func (tc *testCluster) runCoordinator(ctx context.Context, cfg config.Config, startWorkers int, hooks coordHooks) (Summary, []outputs.StepMetrics, error) {
	sum, rows, _, err := tc.runCoordinatorKinds(ctx, cfg, startWorkers, hooks)
	return sum, rows, err
}

// runCoordinatorKinds also returns the aborted attempts by kind.
func (tc *testCluster) runCoordinatorKinds(ctx context.Context, cfg config.Config, startWorkers int, hooks coordHooks) (Summary, []outputs.StepMetrics, map[string]int, error) {
	tc.t.Helper()
	env := NewEnv(cfg.Cluster.Threads)
	env.StartWorkers = startWorkers
	c, err := NewCoordinator(cfg, tc.log, env)
	if err != nil {
		return Summary{}, nil, nil, err
	}
	c.hooks = hooks
	nc := tc.conn("coordinator")
	defer nc.Close()
	sum, err := c.Run(ctx, nc)
	rows, rerr := outputs.ReadMetrics(cfg.Run.Dir)
	if rerr != nil && err == nil {
		err = rerr
	}
	return sum, rows, c.abortKinds, err
}

// trainRun runs a whole job with n workers and returns its per-step losses.
// It injects no fault, so liveness runs at the production heartbeat: under
// the race detector on a loaded machine, testConfig's 300 ms heartbeat (three
// missed in 0.9 s) could evict a slow but healthy worker and change the
// membership the caller compares.
func trainRun(t *testing.T, cfg config.Config, n int) []outputs.StepMetrics {
	t.Helper()
	cfg.Cluster.Heartbeat = max(cfg.Cluster.Heartbeat, time.Second)
	tc := newTestCluster(t, cfg)
	for i := range n {
		tc.startWorker(fmt.Sprintf("w%d", i), workerHooks{})
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	_, rows, err := tc.runCoordinator(ctx, tc.cfg, n, coordHooks{})
	if err != nil {
		t.Fatalf("run with %d workers: %v", n, err)
	}
	return rows
}

func relDiff(a, b float64) float64 {
	return math.Abs(a-b) / math.Max(math.Abs(b), 1e-12)
}

// checkLedger asserts that every step 1..steps was committed once and that
// each step's ranks computed disjoint windows covering its batch exactly.
func checkLedger(t *testing.T, dir string, steps int) []outputs.LedgerEntry {
	t.Helper()
	ledger, err := outputs.ReadLedger(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(ledger) != steps {
		t.Fatalf("ledger has %d entries; want %d", len(ledger), steps)
	}
	for i, e := range ledger {
		if e.Step != uint64(i+1) {
			t.Fatalf("ledger entry %d is step %d; want %d", i, e.Step, i+1)
		}
		var got []int
		for _, r := range e.Ranks {
			for _, w := range r.Windows {
				got = append(got, int(w))
			}
		}
		want := toInt(e.Batch)
		sort.Ints(got)
		sort.Ints(want)
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("step %d: ranks computed windows %v; the batch is %v", e.Step, got, want)
		}
	}
	return ledger
}

func goroutinesSettle(t *testing.T, before int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > before+2 && time.Now().Before(deadline) {
		runtime.Gosched()
		time.Sleep(10 * time.Millisecond) // polling a counter, not synchronising
	}
	if n := runtime.NumGoroutine(); n > before+2 {
		buf := make([]byte, 1<<20)
		t.Errorf("%d goroutines after shutdown, %d before:\n%s", n, before, buf[:runtime.Stack(buf, true)])
	}
}
