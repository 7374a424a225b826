package cluster

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/klring/klring/config"
	"github.com/klring/klring/engine"
	"github.com/klring/klring/lm"
	"github.com/klring/klring/loss"
	"github.com/klring/klring/natsnet"
	"github.com/klring/klring/outputs"
	"github.com/klring/klring/protocol"
	"github.com/klring/klring/teacherstore"
)

// Failures a cluster meets that involve files and processes, each kept fixed
// by a test; those of the protocol alone are scenarios in
// protocol/testdata/scenarios.

// A checkpoint torn by a crash (a truncated model, a missing trainer state)
// and a temporary folder of an interrupted save are skipped, each named in
// the log; the run resumes from the newest checkpoint that verifies.
func TestTornCheckpointIsSkipped(t *testing.T) {
	cfg := testConfig(t, 6, 4)
	cfg.Run.CheckpointEvery = 2
	trainRun(t, cfg, 1)
	ck := filepath.Join(cfg.Run.Dir, "checkpoints")
	mf := filepath.Join(ck, "step-000006", "model.safetensors")
	b, err := os.ReadFile(mf)
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(mf, b[:len(b)/2], 0o644)
	os.Remove(filepath.Join(ck, "step-000004", "trainer_state.json"))
	os.MkdirAll(filepath.Join(ck, ".tmp-step-000008-123"), 0o755)

	var logs bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	c, err := NewCoordinator(cfg, log, nil)
	if err != nil {
		t.Fatalf("NewCoordinator with torn checkpoints: %v", err)
	}
	if c.job.step != 2 {
		t.Errorf("resumed from step %d; want 2, the newest checkpoint that verifies", c.job.step)
	}
	for _, want := range []string{"step-000006", "step-000004", "skipping"} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("the log does not name %q:\n%s", want, logs.String())
		}
	}
	// The resumed run moves the damaged ones aside (kept, out of run.keep's
	// count and the audit's way) and its run verifies.
	cfg.Run.Keep = 3
	trainRun(t, cfg, 1)
	for _, d := range []string{"damaged-step-000006", "damaged-step-000004"} {
		if _, err := os.Stat(filepath.Join(ck, d)); err != nil {
			t.Errorf("the damaged checkpoint was not moved aside: %v", err)
		}
	}
	all, err := listCheckpoints(cfg.Run.Dir)
	if err != nil || len(all) != 3 || all[0].step != 2 || all[2].step != 6 {
		t.Errorf("checkpoints after the resumed run: %v, %v; want steps 2, 4, 6", all, err)
	}
	if _, err := Verify(cfg.Run.Dir, ""); err != nil {
		t.Errorf("Verify after a resume over damaged checkpoints: %v", err)
	}
}

// Checkpoint folders are ordered by step number, not by name: past step
// 999999, keep-N keeps the newest.
func TestCheckpointOrderIsNumeric(t *testing.T) {
	dir := t.TempDir()
	for _, s := range []uint64{999998, 999999, 1000000, 1000001} {
		os.MkdirAll(filepath.Join(dir, "checkpoints", checkpointName(s)), 0o755)
	}
	all, err := listCheckpoints(dir)
	if err != nil {
		t.Fatal(err)
	}
	var got []uint64
	for _, c := range all {
		got = append(got, c.step)
	}
	if len(got) != 4 || got[0] != 999998 || got[3] != 1000001 {
		t.Errorf("checkpoints in order %v; want 999998 .. 1000001", got)
	}
}

// Resuming with other data settings is refused, naming the difference; the
// run directory is left as it was.
func TestResumeWithOtherDataIsRefused(t *testing.T) {
	dir := t.TempDir()
	tokens := filepath.Join(dir, "train.bin")
	writeTokens(t, tokens, 20000, 7)
	cfg := testConfig(t, 4, 4)
	cfg.Data.Source = "tokens:" + tokens
	trainRun(t, cfg, 1)
	refuseResumes(t, cfg, []resumeCase{
		{"seed", func(c *config.Config) { c.Data.Seed = 7 }, "seed: 1, 7"},
		{"val_fraction", func(c *config.Config) { c.Data.ValFraction = 0.2 }, "val_fraction: 0.05, 0.2"},
		{"another file", func(c *config.Config) {
			other := filepath.Join(dir, "other.bin")
			writeTokens(t, other, 20000, 11)
			c.Data.Source = "tokens:" + other
		}, "sha256"},
		{"a shorter file", func(c *config.Config) {
			short := filepath.Join(dir, "short.bin")
			writeTokens(t, short, 10000, 7)
			c.Data.Source = "tokens:" + short
		}, "bytes: 40000, 20000"},
	})
}

// resumeCase is a change to a finished run's configuration that its resume
// refuses, with what the error must say.
type resumeCase struct {
	name string
	mod  func(*config.Config)
	want string
}

// refuseResumes checks that NewCoordinator refuses each case's change to
// cfg (a run already trained in cfg.Run.Dir) with an error saying its want,
// and that run.dir is left as it was.
func refuseResumes(t *testing.T, cfg config.Config, cases []resumeCase) {
	t.Helper()
	before := treeDigest(t, cfg.Run.Dir)
	for _, tc := range cases {
		c := cfg
		tc.mod(&c)
		_, err := NewCoordinator(c, testLogger(t), nil)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: NewCoordinator = %v; want an error naming %q", tc.name, err, tc.want)
		}
	}
	if treeDigest(t, cfg.Run.Dir) != before {
		t.Error("a refused resume changed run.dir")
	}
}

func writeTokens(t *testing.T, path string, n, mul int) {
	t.Helper()
	b := make([]byte, 2*n)
	for i := 0; i < n; i++ {
		v := (i*mul + i/3) % 50
		b[2*i], b[2*i+1] = byte(v), byte(v>>8)
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// A worker whose copy of the data differs from the coordinator's refuses to
// join, naming the difference.
func TestWorkerWithOtherDataRefusesToJoin(t *testing.T) {
	cfg := testConfig(t, 2, 4)
	c, err := NewCoordinator(cfg, testLogger(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	spec := c.spec
	spec.Data.SHA256 = strings.Repeat("0", 64)
	_, err = newWorkerJob(spec, NewEnv(1))
	if err == nil || !strings.Contains(err.Error(), "not the coordinator's") || !strings.Contains(err.Error(), "sha256") {
		t.Errorf("newWorkerJob(other data) = %v; want a refusal naming sha256", err)
	}
}

// Workers trust no field of a welcome: out of bounds, it is refused before
// anything is built from it.
func TestWelcomeOutOfBoundsIsRefused(t *testing.T) {
	cfg := testConfig(t, 2, 4)
	c, err := NewCoordinator(cfg, testLogger(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.spec.Validate(); err != nil {
		t.Fatalf("the coordinator's own spec: %v", err)
	}
	for name, mod := range map[string]func(*JobSpec){
		"zero heartbeat":    func(s *JobSpec) { s.Heartbeat = 0 },
		"negative deadline": func(s *JobSpec) { s.ARDeadline = -1 },
		"huge batch":        func(s *JobSpec) { s.BatchWindows = 1 << 30 },
		"tiny chunks":       func(s *JobSpec) { s.ChunkBytes = 16 },
		"no layers":         func(s *JobSpec) { s.Model.NLayer = 0 },
		"NaN clip":          func(s *JobSpec) { s.GradClip = math.NaN() },
		"unknown direction": func(s *JobSpec) { s.Direction = "sideways" },
		"unknown optimizer": func(s *JobSpec) { s.Optimizer = "lion" },
	} {
		s := c.spec
		mod(&s)
		if err := s.Validate(); err == nil {
			t.Errorf("%s: Validate = nil; want an error", name)
		}
	}
}

// Settings that could never run are refused before the run starts.
func TestImpossibleSettingsAreRefused(t *testing.T) {
	cfg := testConfig(t, 2, 4)
	cfg.Cluster.Workers, cfg.Cluster.MinWorkers = 2, 3
	if _, err := Simulate(context.Background(), cfg, testLogger(t), nil); err == nil || !strings.Contains(err.Error(), "cluster.min_workers") {
		t.Errorf("Simulate(min_workers 3 > workers 2) = %v; want an error naming cluster.min_workers", err)
	}
	cfg = testConfig(t, 2, 4)
	cfg.Train.BatchWindows = 1 << 20
	if _, err := NewCoordinator(cfg, testLogger(t), nil); err == nil || !strings.Contains(err.Error(), "train.batch_windows") {
		t.Errorf("NewCoordinator(batch larger than the data) = %v; want an error naming train.batch_windows", err)
	}
	cfg = testConfig(t, 2, 4)
	cfg.Cluster.Heartbeat = time.Millisecond
	if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), "cluster.heartbeat") {
		t.Errorf("Validate(heartbeat 1ms) = %v; want an error naming cluster.heartbeat", err)
	}
}

// A gradient that is not finite is never committed: the step is aborted,
// no ledger line and no non-finite number is written, and after a few such
// attempts the run ends with an error naming the step and the worker.
func TestNonFiniteGradientIsNeverCommitted(t *testing.T) {
	// Without overlap, and with the ring overlapping backward in buckets
	// (a bucket that is not finite is never handed to the ring).
	for _, bucket := range []int{0, 4096} {
		t.Run(fmt.Sprintf("bucket_bytes=%d", bucket), func(t *testing.T) { nonFiniteNeverCommitted(t, bucket) })
	}
}

func nonFiniteNeverCommitted(t *testing.T, bucketBytes int) {
	cfg := testConfig(t, 30, 4)
	cfg.Train.Optimizer, cfg.Train.LR, cfg.Train.MinLR, cfg.Train.GradClip = "sgd", 1e4, 1e3, 0
	cfg.Train.Schedule, cfg.Train.WarmupSteps = "constant", 0
	cfg.Cluster.Workers = 2
	cfg.AllReduce.BucketBytes = bucketBytes
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	_, err := Simulate(ctx, cfg, testLogger(t), nil)
	if !errors.Is(err, protocol.ErrStepFailed) || !strings.Contains(err.Error(), "non-finite") || !strings.Contains(err.Error(), "worker w") {
		t.Fatalf("Simulate(lr 1e4, no clip) = %v; want the run to fail on a non-finite step, naming the worker", err)
	}
	rows, err := outputs.ReadMetrics(cfg.Run.Dir)
	if err != nil {
		t.Fatal(err)
	}
	ledger, err := outputs.ReadLedger(cfg.Run.Dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != len(ledger) {
		t.Errorf("%d metrics lines, %d ledger lines: every committed step has both", len(rows), len(ledger))
	}
	for _, r := range rows {
		if math.IsNaN(r.Loss) || math.IsInf(r.Loss, 0) || math.IsNaN(r.GradNorm) {
			t.Errorf("step %d: a non-finite number reached metrics.jsonl: %+v", r.Step, r)
		}
	}
	b, _ := os.ReadFile(filepath.Join(cfg.Run.Dir, "metrics.jsonl"))
	if bytes.Contains(b, []byte("NaN")) {
		t.Error("metrics.jsonl holds NaN")
	}
}

var _ = io.Discard

// A NATS server restart in the middle of a run: everyone reconnects, the
// attempt in flight is retried, and training goes on without shrinking the
// membership.
func TestNATSServerRestart(t *testing.T) {
	cfg := testConfig(t, 12, 6)
	tc := newTestCluster(t, cfg)
	for _, id := range []string{"w0", "w1", "w2"} {
		tc.startWorker(id, workerHooks{})
	}
	restarted := make(chan error, 1)
	hooks := coordHooks{afterCommit: func(s uint64) {
		if s == 4 {
			go func() { restarted <- tc.restartServer() }()
		}
	}}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	_, rows, kinds, err := tc.runCoordinatorKinds(ctx, tc.cfg, 3, hooks)
	if err != nil {
		t.Fatal(err)
	}
	if err := <-restarted; err != nil {
		t.Fatal(err)
	}
	checkLedger(t, cfg.Run.Dir, 12)
	for _, r := range rows {
		if r.Workers != 3 {
			t.Errorf("step %d ran with %d workers; a server restart must not shrink the membership (aborts %v)", r.Step, r.Workers, kinds)
		}
	}
}

// A checkpoint that takes long (a slow disk) does not stop the protocol:
// steps go on committing while it is written, and no worker is taken for
// dead.
func TestSlowCheckpointIsOffTheCriticalPath(t *testing.T) {
	cfg := testConfig(t, 14, 4)
	cfg.Run.CheckpointEvery, cfg.Run.Keep = 4, 10
	tc := newTestCluster(t, cfg)
	tc.startWorker("w0", workerHooks{})
	tc.startWorker("w1", workerHooks{})
	release := make(chan struct{})
	var committedWhileHeld []uint64
	held := make(chan struct{})
	hooks := coordHooks{
		holdCheckpoint: func(s uint64) {
			if s == 4 {
				close(held)
				<-release
			}
		},
		afterCommit: func(s uint64) {
			select {
			case <-held:
				committedWhileHeld = append(committedWhileHeld, s)
				if len(committedWhileHeld) == 3 {
					close(release)
				}
			default:
			}
		},
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	_, _, kinds, err := tc.runCoordinatorKinds(ctx, tc.cfg, 2, hooks)
	if err != nil {
		t.Fatal(err)
	}
	if len(committedWhileHeld) < 3 {
		t.Errorf("steps committed while the checkpoint of step 4 was held: %v; want at least 3", committedWhileHeld)
	}
	_ = kinds
	checkLedger(t, cfg.Run.Dir, 14)
	if _, err := os.Stat(filepath.Join(cfg.Run.Dir, "checkpoints", "step-000004", "trainer_state.json")); err != nil {
		t.Errorf("the held checkpoint was not written: %v", err)
	}
}

// The coordinator's own optimizer step is off the critical path: while the
// master's apply of step 3 is held, the plan of step 4 reaches the workers
// (they apply step 3 from it). The reports of step 4 are checked against the
// master's checksum once the apply is done, the checkpoint of step 3 waits
// for it, and the run is the same, bit for bit, as one whose applies are not
// held.
func TestSlowMasterApplyIsOffTheCriticalPath(t *testing.T) {
	cfg := testConfig(t, 10, 4)
	cfg.Run.CheckpointEvery, cfg.Run.Keep = 3, 10
	clean := trainRun(t, cfg, 2)

	cfg.Run.Dir = t.TempDir()
	cfg.Job += "a"
	tc := newTestCluster(t, cfg)
	planned := make(chan struct{})
	var once atomic.Bool
	for _, id := range []string{"w0", "w1"} {
		tc.startWorker(id, workerHooks{afterApply: func(_ *Worker, s uint64) {
			if s == 3 && once.CompareAndSwap(false, true) {
				close(planned) // the plan of step 4 arrived
			}
		}})
	}
	var stuck atomic.Bool
	hooks := coordHooks{holdApply: func(s uint64) {
		if s != 3 {
			return
		}
		select {
		case <-planned:
		case <-time.After(time.Minute):
			stuck.Store(true) // the plan of step 4 waited for the apply
		}
	}}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	_, rows, kinds, err := tc.runCoordinatorKinds(ctx, tc.cfg, 2, hooks)
	if err != nil {
		t.Fatal(err)
	}
	if stuck.Load() {
		t.Fatal("the plan of step 4 did not go out while the master applied step 3")
	}
	if len(kinds) != 0 {
		t.Errorf("aborted attempts %v; want none (a checksum abort: a replica is not the master)", kinds)
	}
	if len(rows) != len(clean) {
		t.Fatalf("%d metrics lines; want %d", len(rows), len(clean))
	}
	for i := range rows {
		if rows[i].Loss != clean[i].Loss || rows[i].GradNorm != clean[i].GradNorm {
			t.Errorf("step %d: loss %v, grad norm %v; without the held apply %v, %v", i+1, rows[i].Loss, rows[i].GradNorm, clean[i].Loss, clean[i].GradNorm)
		}
	}
	checkLedger(t, cfg.Run.Dir, 10)
	if _, err := Verify(cfg.Run.Dir, ""); err != nil {
		t.Errorf("verify: %v", err)
	}
}

// An evaluation that takes longer than run.eval_every steps does not stop
// the protocol: the steps go on, the evaluations that come due meanwhile are
// skipped, and metrics.jsonl keeps every step in order, with the held
// evaluation's result on its own step.
func TestSlowEvaluationIsSkippedNotWaitedFor(t *testing.T) {
	cfg := testConfig(t, 14, 4)
	cfg.Run.EvalEvery = 2
	cfg.Data.ValFraction = 0.2
	tc := newTestCluster(t, cfg)
	tc.startWorker("w0", workerHooks{})
	tc.startWorker("w1", workerHooks{})
	release := make(chan struct{})
	held := make(chan struct{})
	var committedWhileHeld []uint64
	var heldStep atomic.Uint64
	hooks := coordHooks{
		holdEval: func(s uint64) {
			if heldStep.CompareAndSwap(0, s) {
				close(held)
				<-release
			}
		},
		afterCommit: func(s uint64) {
			select {
			case <-held:
				committedWhileHeld = append(committedWhileHeld, s)
				if len(committedWhileHeld) == 5 {
					close(release)
				}
			default:
			}
		},
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	_, rows, kinds, err := tc.runCoordinatorKinds(ctx, tc.cfg, 2, hooks)
	if err != nil {
		t.Fatal(err)
	}
	if len(committedWhileHeld) < 5 {
		t.Fatalf("steps committed while the evaluation of step %d was held: %v; want 5", heldStep.Load(), committedWhileHeld)
	}
	if len(kinds) != 0 {
		t.Errorf("aborted attempts %v; want none", kinds)
	}
	if len(rows) != 14 {
		t.Fatalf("%d metrics lines; want 14", len(rows))
	}
	var evaluated []uint64
	for i, m := range rows {
		if m.Step != uint64(i+1) {
			t.Fatalf("metrics line %d is step %d", i+1, m.Step)
		}
		if m.ValLoss != nil {
			evaluated = append(evaluated, m.Step)
		}
	}
	// The held step evaluated; the next two came due while it ran (five
	// steps committed meanwhile).
	h := heldStep.Load()
	if !slices.Contains(evaluated, h) || slices.Contains(evaluated, h+2) || slices.Contains(evaluated, h+4) {
		t.Errorf("evaluated steps %v; want %d, not %d or %d", evaluated, h, h+2, h+4)
	}
	checkLedger(t, cfg.Run.Dir, 14)
}

// A checkpoint is renamed into place only once metrics.jsonl holds its
// step's line: while the line waits for a held evaluation, the checkpoint
// of that step is not on disk, so a run resumed from it never lacks a
// metrics line.
func TestCheckpointWaitsForItsMetricsLine(t *testing.T) {
	cfg := testConfig(t, 12, 4)
	cfg.Run.EvalEvery, cfg.Run.CheckpointEvery, cfg.Run.Keep = 4, 4, 10
	cfg.Data.ValFraction = 0.2
	tc := newTestCluster(t, cfg)
	tc.startWorker("w0", workerHooks{})
	release := make(chan struct{})
	var early []uint64
	hooks := coordHooks{
		holdEval: func(s uint64) {
			if s == 4 {
				<-release
			}
		},
		afterCommit: func(s uint64) {
			if s < 5 || s > 8 {
				return
			}
			if _, err := os.Stat(filepath.Join(cfg.Run.Dir, "checkpoints", "step-000004")); err == nil {
				early = append(early, s)
			}
			if s == 8 {
				close(release)
			}
		},
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	_, rows, _, err := tc.runCoordinatorKinds(ctx, tc.cfg, 1, hooks)
	if err != nil {
		t.Fatal(err)
	}
	if len(early) > 0 {
		t.Errorf("the checkpoint of step 4 was on disk at steps %v, before its metrics line", early)
	}
	if len(rows) != 12 || rows[3].ValLoss == nil {
		t.Fatalf("%d metrics lines, step 4 evaluated: %v", len(rows), len(rows) > 3 && rows[3].ValLoss != nil)
	}
	// The last step's line carries the final evaluation (which is no
	// periodic one), written before the final checkpoint.
	if rows[11].ValLoss == nil || rows[11].ValEntropy == nil {
		t.Errorf("the last metrics line (step 12) has no held-out figures: %+v", rows[11])
	}
	if _, err := os.Stat(filepath.Join(cfg.Run.Dir, "checkpoints", "step-000004", "trainer_state.json")); err != nil {
		t.Errorf("the checkpoint of step 4 was not written: %v", err)
	}
}

// Verify passes on a run that had failures, and finds each kind of damage:
// a step committed twice, a window in two ranks, a batch off the data's
// stream, a metrics line that disagrees, a checkpoint that does not verify.
func TestVerify(t *testing.T) {
	cfg := testConfig(t, 10, 4)
	cfg.Run.CheckpointEvery = 4
	cfg.Data.ValFraction = 0.2
	rows := trainRun(t, cfg, 2)
	rep, err := Verify(cfg.Run.Dir, "")
	if err != nil {
		t.Fatalf("Verify of a good run: %v", err)
	}
	if rep.Steps != 10 || rep.Metrics != 10 || rep.Windows != 40 || len(rep.Checkpoints) != 3 {
		t.Errorf("Verify = %+v; want 10 steps and metrics lines, 40 windows, 3 checkpoints", rep)
	}
	_ = rows
	damage := []struct {
		name string
		file string
		edit func(lines []string) []string
		want string
	}{
		{"a step twice", "ledger.jsonl", func(l []string) []string { return append(l[:5], l[4:]...) }, "ledger line 6 is step 5"},
		{"a window in two ranks", "ledger.jsonl", func(l []string) []string {
			l[2] = strings.Replace(l[2], `"windows":[`, `"windows":[0,`, 1)
			return l
		}, "step 3: the ranks computed windows"},
		{"a metrics line off", "metrics.jsonl", func(l []string) []string {
			l[3] = strings.Replace(l[3], `"tokens":64`, `"tokens":63`, 1)
			return l
		}, "step 4"},
		{"a missing metrics line", "metrics.jsonl", func(l []string) []string { return l[:9] }, "9 lines"},
	}
	for _, d := range damage {
		dir := t.TempDir()
		copyTree(t, cfg.Run.Dir, dir)
		p := filepath.Join(dir, d.file)
		b, _ := os.ReadFile(p)
		lines := strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
		os.WriteFile(p, []byte(strings.Join(d.edit(lines), "\n")+"\n"), 0o644)
		if _, err := Verify(dir, ""); !errors.Is(err, ErrVerify) || !strings.Contains(err.Error(), d.want) {
			t.Errorf("%s: Verify = %v; want an error naming %q", d.name, err, d.want)
		}
	}
	for _, f := range []struct{ file, want string }{
		{"metrics.jsonl", "metrics.jsonl is missing; the ledger has 10"},
		{"ledger.jsonl", "ledger.jsonl is missing"},
		{"checkpoints", "summary.json names the checkpoint step-000010"},
	} {
		dir := t.TempDir()
		copyTree(t, cfg.Run.Dir, dir)
		os.RemoveAll(filepath.Join(dir, f.file))
		if _, err := Verify(dir, ""); !errors.Is(err, ErrVerify) || !strings.Contains(err.Error(), f.want) {
			t.Errorf("no %s: Verify = %v; want an error naming %q", f.file, err, f.want)
		}
	}
	dir := t.TempDir()
	copyTree(t, cfg.Run.Dir, dir)
	mf := filepath.Join(dir, "checkpoints", "step-000008", "model.safetensors")
	b, _ := os.ReadFile(mf)
	b[len(b)-1] ^= 1
	os.WriteFile(mf, b, 0o644)
	if _, err := Verify(dir, ""); !errors.Is(err, ErrVerify) || !strings.Contains(err.Error(), "step-000008") {
		t.Errorf("a flipped bit in a checkpoint: Verify = %v; want an error naming step-000008", err)
	}
	if _, err := Verify(cfg.Run.Dir, "synthetic:vocab=32"); err == nil || !strings.Contains(err.Error(), "not the data") {
		t.Error("Verify with other data passed")
	}
}

// A worker whose teacher is not the coordinator's refuses to join, naming
// both identities.
func TestWorkerWithAnotherTeacherRefusesToJoin(t *testing.T) {
	cfg := distillConfig(t, 1, 6)
	cfg.Loss.Teacher = "testdata/gpt_micro"
	c, err := NewCoordinator(cfg, testLogger(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(c.spec.TeacherSHA256) != 64 {
		t.Fatalf("the welcome's teacher identity %q; want a SHA-256", c.spec.TeacherSHA256)
	}
	spec := c.spec
	spec.TeacherSHA256 = strings.Repeat("a", 64)
	if _, err := newWorkerJob(spec, NewEnv(1)); err == nil || !strings.Contains(err.Error(), "another teacher") {
		t.Errorf("newWorkerJob(another teacher) = %v; want a refusal", err)
	}
}

// A teacher store that does not fit the job (another temperature) is
// refused at start naming the field; a worker whose store holds other
// records than the coordinator's refuses to join.
func TestTeacherStoreMismatchIsRefused(t *testing.T) {
	cfg := distillConfig(t, 1, 6)
	cfg.Loss.TeacherStore = dumpStore(t, "testdata/gpt_micro", 2)
	if _, err := NewCoordinator(cfg, testLogger(t), nil); err == nil || !strings.Contains(err.Error(), "temperature") {
		t.Fatalf("a store at temperature 2 for a teacher temperature of 1: %v; want a refusal naming the temperature", err)
	}
	cfg.Loss.TeacherTemperature = 2
	c, err := NewCoordinator(cfg, testLogger(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(c.spec.TeacherStoreDigest) != 64 || c.spec.TeacherStoreHeader.K != 64 {
		t.Fatalf("the welcome's store: digest %q, header %+v", c.spec.TeacherStoreDigest, c.spec.TeacherStoreHeader)
	}
	if _, err := newWorkerJob(c.spec, NewEnv(1)); err != nil {
		t.Fatalf("a worker with the same store: %v", err)
	}
	spec := c.spec
	spec.TeacherStoreDigest = strings.Repeat("a", 64)
	if _, err := newWorkerJob(spec, NewEnv(1)); err == nil || !strings.Contains(err.Error(), "another store") {
		t.Errorf("newWorkerJob(another store) = %v; want a refusal", err)
	}
	spec = c.spec
	spec.TeacherStoreHeader.K = 32
	if _, err := newWorkerJob(spec, NewEnv(1)); err == nil || !strings.Contains(err.Error(), "not the coordinator's") {
		t.Errorf("newWorkerJob(another header) = %v; want a refusal", err)
	}
}

// Reverse KL from a float16 store is refused at start, since float16
// rounds the smallest probabilities to 0 (an infinite divergence found
// only when a step reaches one); label smoothing makes it finite.
func TestFloat16StoreReverseIsRefused(t *testing.T) {
	cfg := distillConfig(t, 1, 6)
	cfg.Loss.TeacherStore = dumpStoreAs(t, "testdata/gpt_micro", 1, teacherstore.Float16)
	cfg.Loss.Direction = loss.Reverse
	if _, err := NewCoordinator(cfg, testLogger(t), nil); err == nil || !strings.Contains(err.Error(), "keeps float16 probabilities") || !strings.Contains(err.Error(), "loss.label_smoothing") {
		t.Fatalf("reverse KL from a float16 store: %v; want a refusal naming float16 and label smoothing", err)
	}
	cfg.Loss.LabelSmoothing = 0.01
	if _, err := NewCoordinator(cfg, testLogger(t), nil); err != nil {
		t.Fatalf("reverse KL from a float16 store with label smoothing: %v", err)
	}
}

// A resume whose settings the checkpoint cannot honour is refused before
// anything is written, naming the setting: train.steps below the
// checkpoint's step, another model shape. A run directory whose checkpoints
// all fail to verify is not started again over them.
func TestResumeRefusedLeavesRunDir(t *testing.T) {
	cfg := testConfig(t, 4, 4)
	cfg.Run.CheckpointEvery = 2
	trainRun(t, cfg, 1)
	refuseResumes(t, cfg, []resumeCase{
		{"fewer steps", func(c *config.Config) { c.Train.Steps = 3 }, "train.steps = 3, but the checkpoint"},
		{"wider", func(c *config.Config) { c.Model.NEmbd = 64 }, "model.n_embd = 64, but the checkpoint"},
		{"deeper", func(c *config.Config) { c.Model.NLayer = 3 }, "model.n_layer = 3"},
		{"longer context", func(c *config.Config) { c.Model.Ctx = 32 }, "model.ctx = 32"},
		// What the run trains toward, and its batch, which Verify follows.
		{"other batch", func(c *config.Config) { c.Train.BatchWindows = 2 }, "train.batch_windows = 2, but the run in"},
		{"other loss", func(c *config.Config) { c.Loss.Direction = loss.Reverse; c.Loss.LabelSmoothing = 0.1 },
			"loss.direction = reverse, loss.label_smoothing = 0.1, but the run in " + cfg.Run.Dir + " was trained with loss.direction = forward, loss.label_smoothing = 0"},
	})
	// More steps with the same model resume.
	more := cfg
	more.Train.Steps = 6
	if _, err := NewCoordinator(more, testLogger(t), nil); err != nil {
		t.Errorf("resuming with more steps: %v", err)
	}

	// Every checkpoint damaged: refused, nothing changed.
	dir := t.TempDir()
	copyTree(t, cfg.Run.Dir, dir)
	for _, s := range []string{"step-000002", "step-000004"} {
		mf := filepath.Join(dir, "checkpoints", s, "model.safetensors")
		b, err := os.ReadFile(mf)
		if err != nil {
			t.Fatal(err)
		}
		os.WriteFile(mf, b[:len(b)/2], 0o644)
	}
	damaged := treeDigest(t, dir)
	c := cfg
	c.Run.Dir = dir
	_, err := NewCoordinator(c, testLogger(t), nil)
	if !errors.Is(err, ErrNoCheckpoint) || !strings.Contains(err.Error(), "2 checkpoints and none verifies") || !strings.Contains(err.Error(), "step-000004") {
		t.Errorf("every checkpoint damaged: NewCoordinator = %v; want ErrNoCheckpoint naming the newest", err)
	}
	if treeDigest(t, dir) != damaged {
		t.Error("a refused resume changed the damaged run.dir")
	}
	// Only the newest damaged: the run resumes from the one before.
	dir2 := t.TempDir()
	copyTree(t, cfg.Run.Dir, dir2)
	mf := filepath.Join(dir2, "checkpoints", "step-000004", "model.safetensors")
	b, _ := os.ReadFile(mf)
	os.WriteFile(mf, b[:len(b)/2], 0o644)
	c.Run.Dir = dir2
	co, err := NewCoordinator(c, testLogger(t), nil)
	if err != nil || co.job.step != 2 {
		t.Errorf("newest damaged: NewCoordinator = %v; want a resume from step 2", err)
	}
}

// checkResume names a model shape that the preset gives and the checkpoint
// does not have.
func TestCheckResumePreset(t *testing.T) {
	cfg, err := config.Load(nil)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Model.Preset, cfg.Train.Steps = "tiny", 10
	tiny, _ := lm.Preset("tiny")
	small, _ := lm.Preset("small")
	if err := checkResume(cfg, tiny, 10, "ck"); err != nil {
		t.Errorf("tiny on tiny: %v", err)
	}
	if err := checkResume(cfg, small, 5, "ck"); err == nil || !strings.Contains(err.Error(), "model.preset tiny has model.n_embd = 128, but the checkpoint ck has 256") {
		t.Errorf("tiny on small: %v", err)
	}
	cfg.Model.Init = "some/folder" // the shape is the init's: only explicit settings count
	if err := checkResume(cfg, small, 5, "ck"); err != nil {
		t.Errorf("model.init on small: %v", err)
	}
	cfg.Model.NHead = 4
	if err := checkResume(cfg, small, 5, "ck"); err == nil || !strings.Contains(err.Error(), "model.n_head = 4") {
		t.Errorf("model.n_head 4 on small: %v", err)
	}
}

// A token file with ids above 255 read with data.tokenizer bytes trains, but
// says that its samples and bits per byte will not mean what they say.
func TestBytesTokenizerOverWideIdsWarns(t *testing.T) {
	path := filepath.Join(t.TempDir(), "wide.bin")
	b := make([]byte, 2*20000)
	for i := range 20000 {
		v := (i * 7) % 300
		b[2*i], b[2*i+1] = byte(v), byte(v>>8)
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := testConfig(t, 2, 4)
	cfg.Data.Source, cfg.Data.Tokenizer = "tokens:"+path, "bytes"
	var logs bytes.Buffer
	if _, err := NewCoordinator(cfg, slog.New(slog.NewTextHandler(&logs, nil)), nil); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(logs.String(), "level=WARN") || !strings.Contains(logs.String(), "ids above 255") {
		t.Errorf("no warning about ids above 255 with data.tokenizer bytes; log:\n%s", logs.String())
	}
	logs.Reset()
	cfg.Run.Dir = t.TempDir()
	cfg.Data.Tokenizer = "gpt2"
	if _, err := NewCoordinator(cfg, slog.New(slog.NewTextHandler(&logs, nil)), nil); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(logs.String(), "ids above 255") {
		t.Errorf("warned with data.tokenizer gpt2:\n%s", logs.String())
	}
}

// model.init fixes the model: a shape also set in the configuration must be
// the folder's, or the run is refused naming it (it was silently ignored).
func TestModelInitWithAnotherShapeIsRefused(t *testing.T) {
	cfg := testConfig(t, 2, 4) // n_embd 32, n_layer 2, n_head 2, ctx 16
	cfg.Model.Init, cfg.Model.Ctx = "testdata/gpt_micro", 0
	_, err := NewCoordinator(cfg, testLogger(t), nil) // gpt_micro has 4 heads
	if !errors.Is(err, config.ErrInvalid) || !strings.Contains(err.Error(), "model.n_head = 2, but model.init testdata/gpt_micro has 4") {
		t.Errorf("NewCoordinator(model.init with n_head 2) = %v; want an error naming model.n_head", err)
	}
	cfg.Model.NHead = 0
	cfg.Model.Vocab = 100
	if _, err := NewCoordinator(cfg, testLogger(t), nil); err == nil || !strings.Contains(err.Error(), "model.vocab = 100") {
		t.Errorf("NewCoordinator(model.init with vocab 100) = %v; want an error naming model.vocab", err)
	}
	cfg.Model.Vocab = 0
	if _, err := NewCoordinator(cfg, testLogger(t), nil); err != nil {
		t.Errorf("NewCoordinator(model.init, the folder's shape) = %v", err)
	}
}

// A second coordinator on a run.dir in use is refused, naming the holder;
// once the first lets go, the run.dir can be taken again.
func TestRunDirLock(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("no flock: lockRunDir does not lock")
	}
	dir := t.TempDir()
	release, err := lockRunDir(dir, "run-a")
	if err != nil {
		t.Fatal(err)
	}
	_, err = lockRunDir(dir, "run-b")
	if !errors.Is(err, ErrRunDirBusy) || !strings.Contains(err.Error(), "run run-a") || !strings.Contains(err.Error(), fmt.Sprintf("pid %d", os.Getpid())) {
		t.Fatalf("a second lock of the run.dir: %v; want ErrRunDirBusy naming the holder", err)
	}
	release()
	release, err = lockRunDir(dir, "run-c")
	if err != nil {
		t.Fatalf("locking again after the release: %v", err)
	}
	release()
}

// A coordinator connected with the workers' credentials cannot hear the
// workers: it fails at once naming the permission, instead of waiting for
// workers for ever.
func TestCoordinatorWithWorkerCredentialsFails(t *testing.T) {
	cfg := testConfig(t, 2, 2)
	srv, err := natsnet.StartServer(natsnet.ServerOptions{Users: []natsnet.User{
		{Name: "coordinator", Password: "c-secret", Permissions: natsnet.CoordinatorPermissions("*")},
		{Name: "worker", Password: "w-secret", Permissions: natsnet.WorkerPermissions("*", "*")},
	}})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Shutdown()
	cfg.NATS.URL, cfg.NATS.User, cfg.NATS.Password = srv.URL(), "worker", "w-secret"
	c, err := NewCoordinator(cfg, testLogger(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	nc, err := connect(context.Background(), cfg, "coordinator", testLogger(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	_, err = c.Run(ctx, nc)
	if !errors.Is(err, nats.ErrPermissionViolation) || !strings.Contains(err.Error(), "coordinator's role") {
		t.Fatalf("Run with the workers' credentials = %v; want a permissions violation naming the role", err)
	}
}

// Text or token-file data under another tokenizer than model.init's or the
// teacher's (their tokenizer_config.json) is refused at start, naming both.
func TestTokenizerMismatchIsRefused(t *testing.T) {
	gpt2Init := t.TempDir()
	copyTree(t, "testdata/gpt_micro", gpt2Init)
	if err := engine.WriteTokenizerConfig(gpt2Init, "gpt2", 8); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name string
		set  func(*config.Config)
	}{
		{"model.init", func(c *config.Config) {
			c.Model.Init, c.Model.Ctx, c.Model.NEmbd, c.Model.NLayer, c.Model.NHead = gpt2Init, 0, 0, 0, 0
		}},
		{"loss.teacher", func(c *config.Config) { c.Loss.Teacher = gpt2Init }},
	} {
		cfg := testConfig(t, 1, 2)
		cfg.Data.Source, cfg.Data.ValFraction = "tokens:testdata/gpt_micro/tokens.bin", 0
		cfg.Model.Ctx = 8
		c.set(&cfg)
		_, err := NewCoordinator(cfg, testLogger(t), nil)
		if !errors.Is(err, config.ErrInvalid) || !strings.Contains(err.Error(), "data.tokenizer = bytes, but "+c.name) || !strings.Contains(err.Error(), "set data.tokenizer gpt2") {
			t.Errorf("%s trained with gpt2, data under bytes: %v; want a refusal naming both", c.name, err)
		}
	}
}

// Options that would have no effect on this job are refused at start:
// a teacher top k above the teacher's vocabulary, and sampled KL to a
// truth that real data does not have.
func TestNoEffectOptionsAreRefused(t *testing.T) {
	cfg := distillConfig(t, 1, 6)
	cfg.Loss.Teacher, cfg.Loss.TeacherTopK = "testdata/gpt_micro", 1000
	if _, err := NewCoordinator(cfg, testLogger(t), nil); !errors.Is(err, config.ErrInvalid) || !strings.Contains(err.Error(), "loss.teacher_top_k = 1000: the teacher testdata/gpt_micro has a vocabulary of 64") {
		t.Errorf("teacher top k 1000 over 64 ids: %v; want a refusal", err)
	}
	cfg.Loss.TeacherTopK = 0
	cfg.Run.SampleKLWindows = 4
	if _, err := NewCoordinator(cfg, testLogger(t), nil); !errors.Is(err, config.ErrInvalid) || !strings.Contains(err.Error(), "run.sample_kl_windows = 4") {
		t.Errorf("sampled KL on token-file data: %v; want a refusal", err)
	}
	cfg.Run.SampleKLWindows = 0
	if _, err := NewCoordinator(cfg, testLogger(t), nil); err != nil {
		t.Errorf("the same job without them: %v", err)
	}
}

// A second coordinator of a job that a coordinator serves on the same
// NATS server is refused at start, naming the first (klring.<job>.coord),
// before it writes anything; the first run goes on undisturbed.
func TestSecondCoordinatorOfAJobIsRefused(t *testing.T) {
	cfg := testConfig(t, 3, 2)
	tc := newTestCluster(t, cfg)
	tc.startWorker("w0", workerHooks{})
	other := cfg
	other.Run.Dir = t.TempDir()
	var refused error
	hooks := coordHooks{afterCommit: func(s uint64) {
		if s != 1 {
			return
		}
		b, err := NewCoordinator(other, testLogger(t), nil)
		if err != nil {
			refused = err
			return
		}
		nc := tc.conn("second")
		defer nc.Close()
		_, refused = b.Run(context.Background(), nc)
	}}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	_, rows, kinds, err := tc.runCoordinatorKinds(ctx, tc.cfg, 1, hooks)
	if err != nil {
		t.Fatal(err)
	}
	if !errors.Is(refused, ErrJobBusy) || !strings.Contains(refused.Error(), "run.dir "+cfg.Run.Dir) {
		t.Fatalf("a second coordinator of the job: %v; want ErrJobBusy naming the first's run.dir", refused)
	}
	if len(rows) != 3 || len(kinds) != 0 {
		t.Errorf("the first run: %d metrics lines, aborts %v; want 3 and none", len(rows), kinds)
	}
	if ents, _ := os.ReadDir(other.Run.Dir); len(ents) != 1 || ents[0].Name() != lockFile {
		t.Errorf("the refused coordinator's run.dir holds %v; want only its lock", ents)
	}
}

// The settings a resume keeps are compared with run.json's as written: a
// run.json of an older klring that lacks a setting always written now
// resumes, and one whose settings differ is refused.
func TestResumeSpecOfOlderRunJSON(t *testing.T) {
	cfg := testConfig(t, 2, 4)
	cfg.Run.CheckpointEvery = 2
	trainRun(t, cfg, 1)
	path := filepath.Join(cfg.Run.Dir, "run.json")
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var rec map[string]any
	if err := json.Unmarshal(b, &rec); err != nil {
		t.Fatal(err)
	}
	spec := rec["spec"].(map[string]any)
	delete(spec, "teacher_tail")
	delete(spec, "beta")
	write := func() {
		b, _ := json.Marshal(rec)
		if err := os.WriteFile(path, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write()
	more := cfg
	more.Train.Steps = 4
	if _, err := NewCoordinator(more, testLogger(t), nil); err != nil {
		t.Fatalf("resuming a run whose run.json lacks teacher_tail and beta: %v", err)
	}
	spec["batch_windows"] = 8
	write()
	if _, err := NewCoordinator(more, testLogger(t), nil); err == nil || !strings.Contains(err.Error(), "train.batch_windows = 4, but the run in") {
		t.Fatalf("resuming with another batch than run.json's: %v; want a refusal", err)
	}
}
