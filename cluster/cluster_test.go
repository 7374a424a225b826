package cluster

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/klring/klring/natsnet"
	"github.com/klring/klring/protocol"
)

// I1: N workers with global batch G give the loss curve of 1 worker with G,
// up to float summation order.
func TestI1WorldSizeInvariance(t *testing.T) {
	// 1 worker, 4 workers, and 2 workers in micro-batches: the same run.
	cfg := testConfig(t, 20, 8)
	one := trainRun(t, cfg, 1)
	cfg.Run.Dir = t.TempDir()
	cfg.Job += "b"
	four := trainRun(t, cfg, 4)
	// Two workers computing their shards one window per pass (micro-batches).
	cfg.Run.Dir = t.TempDir()
	cfg.Job += "m"
	cfg.Train.MicroWindows = 1
	micro := trainRun(t, cfg, 2)
	if len(one) != 20 || len(four) != 20 || len(micro) != 20 {
		t.Fatalf("steps: %d, %d and %d; want 20 each", len(one), len(four), len(micro))
	}
	for i := range one {
		tol := 1e-3
		if i < 5 {
			tol = 1e-5
		}
		if d := relDiff(four[i].Loss, one[i].Loss); d > tol {
			t.Errorf("step %d: loss with 4 workers %.8f, with 1 %.8f: relative difference %.2g > %g", i+1, four[i].Loss, one[i].Loss, d, tol)
		}
		if d := relDiff(micro[i].Loss, one[i].Loss); d > tol {
			t.Errorf("step %d: loss with 2 workers in micro-batches of 1 window %.8f, with 1 worker %.8f: relative difference %.2g > %g", i+1, micro[i].Loss, one[i].Loss, d, tol)
		}
		if four[i].Workers != 4 || one[i].Workers != 1 {
			t.Errorf("step %d: workers %d and %d", i+1, four[i].Workers, one[i].Workers)
		}
	}
	// MFU: the model's training FLOPs per second of the step over the
	// configured peak.
	mc, err := modelConfig(cfg.Model, 64)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range four {
		want := mc.TrainFLOPs(8, mc.Ctx) / m.StepS / 1e9 / 100
		if relDiff(m.MFU, want) > 1e-9 || m.MFU <= 0 {
			t.Fatalf("step %d: mfu %v, want %v (%g FLOPs in %v s against 100 GFLOP/s)", m.Step, m.MFU, want, mc.TrainFLOPs(8, mc.Ctx), m.StepS)
		}
	}
	if !(one[19].Loss < one[0].Loss) {
		t.Errorf("loss did not fall: %.4f -> %.4f", one[0].Loss, one[19].Loss)
	}
}

// killingRing wraps a worker's ring so that, at step s, the worker dies after
// it sent some of its ring traffic.
type killingRing struct {
	step  uint64
	after int
	kill  func()
	fired atomic.Bool
}

func (k *killingRing) wrap(step uint64, r stepRing) stepRing {
	if step != k.step || k.fired.Load() {
		return r
	}
	return func(ctx context.Context, c ringCall, owned func(int, []float32)) error {
		c.onSend = func(sent int) {
			if sent == k.after && !k.fired.Swap(true) {
				k.kill() // the connection closes under the ring, as if the process died
			}
		}
		return r(ctx, c, owned)
	}
}

// I2 and I4: a worker killed in the middle of a step, after it sent part of
// its ring traffic. The step is aborted and retried by the survivors with the
// same windows; every window of every step counts exactly once; the losses
// match those of a run without the failure.
func TestWorkerKilledMidStep(t *testing.T) {
	cfg := testConfig(t, 12, 8)
	clean := trainRun(t, cfg, 3)

	cfg.Run.Dir = t.TempDir()
	cfg.Job += "k"
	tc := newTestCluster(t, cfg)
	tc.startWorker("w0", workerHooks{})
	tc.startWorker("w1", workerHooks{})
	var victim *testWorker
	kr := &killingRing{step: 5, after: 2}
	kr.kill = func() { victim.kill() }
	victim = tc.startWorker("w2", workerHooks{ringWrap: kr.wrap})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	sum, rows, err := tc.runCoordinator(ctx, tc.cfg, 3, coordHooks{})
	if err != nil {
		t.Fatal(err)
	}
	if !kr.fired.Load() {
		t.Fatal("the worker was never killed")
	}
	if sum.Aborts < 1 {
		t.Errorf("aborts = %d; want the killed step aborted", sum.Aborts)
	}
	ledger := checkLedger(t, cfg.Run.Dir, 12)
	for _, e := range ledger[5:] {
		if len(e.Ranks) != 2 {
			t.Errorf("step %d committed by %d workers; want the 2 survivors", e.Step, len(e.Ranks))
		}
	}
	if rows[4].Attempts < 2 {
		t.Errorf("step 5 committed after %d attempts; want a retry", rows[4].Attempts)
	}
	for i := range rows {
		if d := relDiff(rows[i].Loss, clean[i].Loss); d > 1e-3 {
			t.Errorf("step %d: loss %.6f, without the failure %.6f", i+1, rows[i].Loss, clean[i].Loss)
		}
	}
}

// I3: a worker whose parameters differ from the master's is detected by its
// checksum and re-seeded from a snapshot; the run goes on.
func TestChecksumMismatchReseeds(t *testing.T) {
	cfg := testConfig(t, 10, 8)
	tc := newTestCluster(t, cfg)
	tc.startWorker("w0", workerHooks{})
	var corrupted atomic.Bool
	tc.startWorker("w1", workerHooks{afterApply: func(w *Worker, step uint64) {
		if step == 4 && !corrupted.Load() {
			corrupted.Store(true)
			w.job.model.Params[7] += 1 // a bit flip of sorts
		}
	}})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	_, rows, kinds, err := tc.runCoordinatorKinds(ctx, tc.cfg, 2, coordHooks{})
	if err != nil {
		t.Fatal(err)
	}
	if !corrupted.Load() {
		t.Fatal("the hook never corrupted the replica")
	}
	if kinds["checksum"] != 1 || rows[4].Attempts < 2 {
		t.Errorf("aborts by kind %v, step 5 attempts %d; want one checksum abort, at step 5", kinds, rows[4].Attempts)
	}
	checkLedger(t, cfg.Run.Dir, 10)
}

// A worker that joins mid-run receives the snapshot and trains from the next
// step; the global batch and the learning rate do not change.
func TestWorkerJoinsMidRun(t *testing.T) {
	cfg := testConfig(t, 12, 8)
	clean := trainRun(t, cfg, 2)

	cfg.Run.Dir = t.TempDir()
	cfg.Job += "j"
	tc := newTestCluster(t, cfg)
	tc.startWorker("w0", workerHooks{})
	tc.startWorker("w1", workerHooks{})
	joined := make(chan struct{})
	hooks := coordHooks{afterCommit: func(step uint64) {
		if step == 4 {
			tc.startWorker("w2", workerHooks{})
			close(joined)
		}
	}}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	_, rows, err := tc.runCoordinator(ctx, tc.cfg, 2, hooks)
	if err != nil {
		t.Fatal(err)
	}
	<-joined
	ledger := checkLedger(t, cfg.Run.Dir, 12)
	three := 0
	for _, e := range ledger {
		if len(e.Ranks) == 3 {
			three++
		}
	}
	if three == 0 {
		t.Fatal("the new worker never computed a step")
	}
	for i := range rows {
		if rows[i].LR != clean[i].LR {
			t.Errorf("step %d: lr %g; without the join %g", i+1, rows[i].LR, clean[i].LR)
		}
		if d := relDiff(rows[i].Loss, clean[i].Loss); d > 1e-3 {
			t.Errorf("step %d: loss %.6f; without the join %.6f", i+1, rows[i].Loss, clean[i].Loss)
		}
	}
}

// I5: stop everything after step 10, resume from the checkpoint, run to step
// 20: steps 11-20 match an uninterrupted run to 1e-6 relative.
func TestI5ResumeEquivalence(t *testing.T) {
	cfg := testConfig(t, 20, 8)
	cfg.Run.CheckpointEvery = 10
	full := trainRun(t, cfg, 2)

	cfg.Run.Dir = t.TempDir()
	cfg.Job += "r"
	tc := newTestCluster(t, cfg)
	tc.startWorker("w0", workerHooks{})
	tc.startWorker("w1", workerHooks{})
	ctx, cancel := context.WithCancel(context.Background())
	first, _, err := tc.runCoordinator(ctx, tc.cfg, 2, coordHooks{afterCommit: func(s uint64) {
		if s == 10 {
			cancel() // as SIGTERM does: pause at the next step boundary
		}
	}})
	// afterCommit(10) runs once the master has applied step 10; by then
	// plan 11 went out at step 10's commit, and step 11 may have committed
	// and plan 12 gone out within the same event: the attempt in flight
	// finishes, so the run pauses at step 10, 11 or 12.
	if err != nil || !first.Stopped || first.Steps < 10 || first.Steps > 12 {
		t.Fatalf("interrupted run: %+v, %v; want it stopped at step 10, 11 or 12", first, err)
	}
	tc.stopAll()

	// Everything new: server, workers, coordinator; only run.dir survives.
	cfg.Job += "2"
	tc2 := newTestCluster(t, cfg)
	tc2.startWorker("v0", workerHooks{})
	tc2.startWorker("v1", workerHooks{})
	ctx2, cancel2 := context.WithTimeout(context.Background(), time.Minute)
	defer cancel2()
	sum, rows, err := tc2.runCoordinator(ctx2, tc2.cfg, 2, coordHooks{})
	if err != nil {
		t.Fatal(err)
	}
	if sum.ResumedFrom != first.Steps {
		t.Fatalf("resumed from step %d; want %d", sum.ResumedFrom, first.Steps)
	}
	if len(rows) != 20 {
		t.Fatalf("metrics.jsonl has %d rows; want 20", len(rows))
	}
	for i := int(first.Steps); i < 20; i++ {
		if d := relDiff(rows[i].Loss, full[i].Loss); d > 1e-6 {
			t.Errorf("step %d: resumed loss %.9f, uninterrupted %.9f (rel %.2g)", i+1, rows[i].Loss, full[i].Loss, d)
		}
	}
	checkLedger(t, cfg.Run.Dir, 20)
}

// The coordinator crashing mid-run and restarting resumes from its newest
// checkpoint and the same workers follow it.
func TestCoordinatorRestart(t *testing.T) {
	cfg := testConfig(t, 16, 8)
	cfg.Run.CheckpointEvery = 5
	tc := newTestCluster(t, cfg)
	tc.startWorker("w0", workerHooks{})
	tc.startWorker("w1", workerHooks{})
	// After the checkpoint of step 5: steps 6 and 7 are redone.
	_, _, err := tc.runCoordinator(context.Background(), tc.cfg, 2, coordHooks{crashAfter: 7})
	if !errors.Is(err, errCrashed) {
		t.Fatalf("first coordinator: %v", err)
	}
	ctx2, cancel2 := context.WithTimeout(context.Background(), time.Minute)
	defer cancel2()
	sum, rows, err := tc.runCoordinator(ctx2, tc.cfg, 2, coordHooks{})
	if err != nil {
		t.Fatal(err)
	}
	if sum.ResumedFrom != 5 {
		t.Errorf("resumed from %d; want 5", sum.ResumedFrom)
	}
	if len(rows) != 16 {
		t.Fatalf("metrics rows %d; want 16", len(rows))
	}
	for i, r := range rows {
		if r.Step != uint64(i+1) {
			t.Fatalf("metrics row %d is step %d", i, r.Step)
		}
	}
	checkLedger(t, cfg.Run.Dir, 16)
}

// A dead worker is detected by its missed heartbeats and its step retried
// before the step deadline.
func TestDeadWorkerDetectedBeforeDeadline(t *testing.T) {
	cfg := testConfig(t, 8, 8)
	cfg.Cluster.StepDeadline = 5 * time.Second
	tc := newTestCluster(t, cfg)
	tc.startWorker("w0", workerHooks{})
	var victim *testWorker
	var killedAt atomic.Int64
	victim = tc.startWorker("w1", workerHooks{afterApply: func(w *Worker, s uint64) {
		if s == 3 {
			killedAt.Store(time.Now().UnixNano())
			victim.kill() // before the worker can compute step 4: its connection closes as if the process died
		}
	}})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	_, rows, kinds, err := tc.runCoordinatorKinds(ctx, tc.cfg, 2, coordHooks{})
	if err != nil {
		t.Fatal(err)
	}
	if kinds["heartbeat"] < 1 || kinds["deadline"] != 0 {
		t.Errorf("aborts by kind %v; want the dead worker found by its missed heartbeats, before the step deadline", kinds)
	}
	if killedAt.Load() == 0 {
		t.Fatal("the worker was never killed")
	}
	if rows[3].Attempts < 2 || rows[3].Workers != 1 {
		t.Errorf("step 4: attempts %d, workers %d; want a retry by the survivor", rows[3].Attempts, rows[3].Workers)
	}
	checkLedger(t, cfg.Run.Dir, 8)
}

// A wrong checkpoint or data file stops the run before it starts, and nothing
// in run.dir is changed by the failed start.
func TestI6BadStartTouchesNothing(t *testing.T) {
	cfg := testConfig(t, 4, 4)
	cfg.Run.CheckpointEvery = 2
	trainRun(t, cfg, 1)
	before := treeDigest(t, cfg.Run.Dir)

	// A model.init that does not exist.
	cfg2 := cfg
	cfg2.Run.Dir = t.TempDir()
	cfg2.Model.Init = filepath.Join(t.TempDir(), "nothing")
	if _, err := NewCoordinator(cfg2, testLogger(t), nil); err == nil || !strings.Contains(err.Error(), "model.init") {
		t.Errorf("NewCoordinator(missing model.init) = %v; want an error naming model.init", err)
	}

	// A data file that does not exist.
	cfg3 := cfg
	cfg3.Data.Source = "tokens:" + filepath.Join(t.TempDir(), "missing.bin")
	cfg3.Run.Dir = t.TempDir()
	if _, err := NewCoordinator(cfg3, testLogger(t), nil); err == nil || !strings.Contains(err.Error(), "missing.bin") {
		t.Errorf("NewCoordinator(missing data) = %v; want an error naming the file", err)
	}
	if treeDigest(t, cfg.Run.Dir) != before {
		t.Error("run.dir changed")
	}
}

// Garbage and foreign messages on every control subject change nothing.
func TestI6ForeignMessagesChangeNothing(t *testing.T) {
	cfg := testConfig(t, 8, 8)
	clean := trainRun(t, cfg, 2)

	cfg.Run.Dir = t.TempDir()
	cfg.Job += "g"
	tc := newTestCluster(t, cfg)
	tc.startWorker("w0", workerHooks{})
	tc.startWorker("w1", workerHooks{})
	spam := tc.conn("spammer")
	defer spam.Close()
	subj, _ := natsnet.NewSubjects(cfg.Job)
	junk := [][]byte{
		{}, {0xc1}, {0xdb, 0xff, 0xff, 0xff, 0xff}, {0xdd, 0x7f, 0xff, 0xff, 0xff},
		mustEncode(t, protocol.Plan{Run: "other", Epoch: 99, Step: 3, Base: 2, Members: []string{"w0"}, Final: true}),
		mustEncode(t, protocol.Done{Run: "other", Epoch: 1, Step: 1, Sender: "w0"}),
		mustEncode(t, protocol.Segment{Run: "x", Offset: -5, Data: []byte{1, 2, 3}}),
		mustEncode(t, protocol.Segment{Run: "x", Offset: 1<<63 - 1, Data: []byte{1, 2, 3, 4}}),
		mustEncode(t, protocol.Heartbeat{Run: "x", Sender: "ghost"}),
	}
	hooks := coordHooks{afterCommit: func(s uint64) {
		for _, j := range junk {
			r0, _ := subj.Ring("w0")
			r1, _ := subj.Ring("w1")
			for _, sj := range []string{subj.Plan, subj.Done, subj.Seg, subj.HB, r0, r1} {
				spam.NC.Publish(sj, j)
			}
		}
		spam.NC.Flush()
	}}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	_, rows, err := tc.runCoordinator(ctx, tc.cfg, 2, hooks)
	if err != nil {
		t.Fatal(err)
	}
	for i := range rows {
		if rows[i].Loss != clean[i].Loss {
			t.Errorf("step %d: loss %.9f with garbage, %.9f without", i+1, rows[i].Loss, clean[i].Loss)
		}
	}
	checkLedger(t, cfg.Run.Dir, 8)
}

func mustEncode(t *testing.T, v any) []byte {
	b, err := encode(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func treeDigest(t *testing.T, root string) string {
	t.Helper()
	h := sha256.New()
	filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fmt.Fprintln(h, p)
		if !d.IsDir() {
			b, _ := os.ReadFile(p)
			h.Write(b)
		}
		return nil
	})
	return fmt.Sprintf("%x", h.Sum(nil))
}

func copyTree(t *testing.T, src, dst string) {
	t.Helper()
	filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		rel, _ := filepath.Rel(src, p)
		if d.IsDir() {
			return os.MkdirAll(filepath.Join(dst, rel), 0o755)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		return os.WriteFile(filepath.Join(dst, rel), b, 0o644)
	})
}

// SIGTERM (a cancelled context) makes a worker finish the step it is in and
// leave at the boundary: no attempt waits for its heartbeats or the deadline.
func TestWorkerLeavesGracefully(t *testing.T) {
	cfg := testConfig(t, 10, 8)
	tc := newTestCluster(t, cfg)
	tc.startWorker("w0", workerHooks{})
	tc.startWorker("w1", workerHooks{})
	var leaver *testWorker
	leaver = tc.startWorker("w2", workerHooks{afterApply: func(w *Worker, s uint64) {
		if s == 3 {
			leaver.cancel() // as SIGTERM does
		}
	}})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	_, rows, kinds, err := tc.runCoordinatorKinds(ctx, tc.cfg, 3, coordHooks{})
	if err != nil {
		t.Fatal(err)
	}
	if err := <-leaver.done; !errors.Is(err, context.Canceled) {
		t.Errorf("the leaving worker returned %v; want context.Canceled", err)
	}
	if kinds["heartbeat"]+kinds["deadline"] != 0 {
		t.Errorf("aborts by kind %v: a graceful leave must not wait for heartbeats or the deadline", kinds)
	}
	if last := rows[len(rows)-1]; last.Workers != 2 {
		t.Errorf("the last step ran with %d workers; want 2", last.Workers)
	}
	checkLedger(t, cfg.Run.Dir, 10)
}

// A worker whose coordinator is gone (it paused and never came back, or
// died for good) ends after cluster.coordinator_timeout instead of waiting
// forever.
func TestWorkerEndsWhenCoordinatorIsGone(t *testing.T) {
	cfg := testConfig(t, 50, 8)
	tc := newTestCluster(t, cfg)
	w := tc.startWorker("w0", workerHooks{coordTimeout: time.Second})
	ctx, cancel := context.WithCancel(context.Background())
	sum, _, err := tc.runCoordinator(ctx, tc.cfg, 1, coordHooks{afterCommit: func(s uint64) {
		if s == 3 {
			cancel()
		}
	}})
	if err != nil || !sum.Stopped {
		t.Fatalf("coordinator: %+v, %v; want it stopped", sum, err)
	}
	if err := <-w.done; !errors.Is(err, ErrCoordinatorGone) {
		t.Errorf("worker returned %v; want ErrCoordinatorGone", err)
	}
}
