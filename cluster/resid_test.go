package cluster

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/klring/klring/config"
	"github.com/klring/klring/lm"
	"github.com/klring/klring/natsnet"
	"github.com/klring/klring/outputs"
)

// efConfig is testConfig on the bf16 wire with error feedback and a
// checkpoint every 4 steps.
func efConfig(t *testing.T, steps int) config.Config {
	cfg := testConfig(t, steps, 8)
	cfg.AllReduce.Wire, cfg.AllReduce.ErrorFeedback = "bf16", true
	cfg.Run.CheckpointEvery = 4
	return cfg
}

// finalChecksum is the checksum of the parameters in the checkpoint of step.
func finalChecksum(t *testing.T, runDir string, step uint64) uint64 {
	t.Helper()
	m, _, err := lm.LoadCheckpoint(filepath.Join(runDir, "checkpoints", checkpointName(step)), NewEnv(1).Pool)
	if err != nil {
		t.Fatal(err)
	}
	return checksum(m.Params)
}

// savedResiduals reads the residuals of runDir's checkpoint of step.
func savedResiduals(t *testing.T, runDir string, step uint64) [][]float32 {
	t.Helper()
	dir := filepath.Join(runDir, "checkpoints", checkpointName(step))
	m, st, err := lm.LoadCheckpoint(dir, NewEnv(1).Pool)
	if err != nil {
		t.Fatal(err)
	}
	r, err := checkpointResiduals(dir, st.Data, m.Config.NumParams()+2)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// junkResiduals are residual parts and seed requests a coordinator must
// drop: another run, bounds out of range, a lying length.
func junkResiduals(t *testing.T) [][]byte {
	four := []byte{0, 0, 0x80, 0x3f}
	return [][]byte{
		{}, {0xc1}, {0xdb, 0xff, 0xff, 0xff, 0xff},
		mustEncode(t, residPart{Run: "other", Epoch: 1, Step: 4, Sender: "w0", World: 2, Total: 1 << 20, Data: four}),
		mustEncode(t, residPart{Run: "x", Sender: "w0", Rank: 0, World: 2, Total: 8, Offset: 1<<63 - 1, Data: four}),
		mustEncode(t, residPart{Run: "x", Sender: "w0", Rank: 5, World: 2, Total: 8, Data: four}),
		mustEncode(t, residPart{Run: "x", Sender: "w0", World: 1, Total: 8, Offset: -4, Data: four}),
		mustEncode(t, seedRequest{Run: "other", Sender: "w0", World: 1, Max: 1 << 40}),
		mustEncode(t, seedRequest{Run: "x", Sender: "w0", Rank: -1, World: 1, Offset: 1 << 62, Max: 1}),
	}
}

// pauseRun runs cfg with workers named prefix0..prefix(n-1) until a
// coordinator hook stops it after step stopAfter (it pauses at that step
// or at one of the next two, as TestI5ResumeEquivalence explains),
// spamming the residual subjects with junk at every commit. It returns
// the step it paused at.
func pauseRun(t *testing.T, cfg config.Config, prefix string, n int, stopAfter uint64) uint64 {
	t.Helper()
	tc := newTestCluster(t, cfg)
	for i := range n {
		tc.startWorker(fmt.Sprintf("%s%d", prefix, i), workerHooks{})
	}
	spam := tc.conn("spammer")
	defer spam.Close()
	subj, _ := natsnet.NewSubjects(cfg.Job)
	junk := junkResiduals(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	first, _, err := tc.runCoordinator(ctx, tc.cfg, n, coordHooks{afterCommit: func(s uint64) {
		for _, j := range junk {
			spam.NC.Publish(subj.Resid, j)
			spam.NC.Publish(subj.Seed, j)
		}
		spam.NC.Flush()
		if s == stopAfter {
			cancel()
		}
	}})
	if err != nil || !first.Stopped || first.Steps < stopAfter || first.Steps > stopAfter+2 {
		t.Fatalf("interrupted run: %+v, %v; want it stopped at step %d to %d", first, err, stopAfter, stopAfter+2)
	}
	tc.stopAll()
	return first.Steps
}

// resumeRun resumes cfg.Run.Dir with new workers (and a new server) and
// returns the summary and metrics.
func resumeRun(t *testing.T, cfg config.Config, prefix string, n int, hooks func(id string, tw **testWorker) workerHooks) (Summary, []outputs.StepMetrics) {
	t.Helper()
	tc := newTestCluster(t, cfg)
	for i := range n {
		id := fmt.Sprintf("%s%d", prefix, i)
		var tw *testWorker
		h := workerHooks{}
		if hooks != nil {
			h = hooks(id, &tw)
		}
		tw = tc.startWorker(id, h)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	sum, rows, kinds, err := tc.runCoordinatorKinds(ctx, tc.cfg, n, coordHooks{})
	if err != nil || len(kinds) != 0 {
		t.Fatalf("resumed run: %v, aborts by kind %v", err, kinds)
	}
	tc.stopAll()
	return sum, rows
}

// With error feedback, a run paused at a step boundary (its last
// checkpoint is taken at the end) and resumed with as many workers ends
// with exactly the parameters of the uninterrupted run: the workers'
// residuals were saved with the checkpoint and each rank started again
// from its own. Junk on the residual subjects changes nothing.
func TestErrorFeedbackPauseResumeBitIdentical(t *testing.T) {
	const steps, n = 12, 2
	cfg := efConfig(t, steps)
	_, _, _, clean := checksumRun(t, cfg, n, nil)

	cfg.Run.Dir = t.TempDir()
	cfg.Job += "p"
	at := pauseRun(t, cfg, "w", n, 5)
	if r := savedResiduals(t, cfg.Run.Dir, at); len(r) != n {
		t.Fatalf("the checkpoint of step %d holds %d ranks' residuals; want %d", at, len(r), n)
	}
	if r := savedResiduals(t, cfg.Run.Dir, 4); len(r) != n {
		t.Fatalf("the periodic checkpoint of step 4 holds %d ranks' residuals; want %d", len(r), n)
	}
	cfg.Job += "2"
	sum, rows := resumeRun(t, cfg, "v", n, nil)
	if sum.ResumedFrom != at || len(rows) != steps {
		t.Fatalf("resumed from step %d with %d metrics lines; want step %d and %d lines", sum.ResumedFrom, len(rows), at, steps)
	}
	if got := finalChecksum(t, cfg.Run.Dir, steps); got != clean {
		t.Errorf("resumed from step %d: final parameters %016x; uninterrupted %016x", at, got, clean)
	}
	checkLedger(t, cfg.Run.Dir, steps)
	if _, err := Verify(cfg.Run.Dir, ""); err != nil {
		t.Errorf("Verify: %v", err)
	}
}

// A coordinator that crashes resumes from its newest periodic checkpoint,
// whose residuals the workers sent when they applied its step; the same
// workers follow the new run and it ends with exactly the parameters of
// the run without the crash.
func TestErrorFeedbackCrashResumeBitIdentical(t *testing.T) {
	const steps, n = 10, 2
	cfg := efConfig(t, steps)
	_, _, _, clean := checksumRun(t, cfg, n, nil)

	cfg.Run.Dir = t.TempDir()
	cfg.Job += "c"
	tc := newTestCluster(t, cfg)
	for i := range n {
		tc.startWorker(fmt.Sprintf("w%d", i), workerHooks{})
	}
	if _, _, err := tc.runCoordinator(context.Background(), tc.cfg, n, coordHooks{crashAfter: 6}); !errors.Is(err, errCrashed) {
		t.Fatalf("first coordinator: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	sum, rows, err := tc.runCoordinator(ctx, tc.cfg, n, coordHooks{})
	if err != nil || sum.ResumedFrom != 4 || len(rows) != steps {
		t.Fatalf("restarted coordinator: %v, resumed from %d with %d lines; want step 4 and %d lines", err, sum.ResumedFrom, len(rows), steps)
	}
	if got := finalChecksum(t, cfg.Run.Dir, steps); got != clean {
		t.Errorf("final parameters %016x; without the crash %016x", got, clean)
	}
}

// Resumed with another number of workers, the run goes on: the first
// attempt's rank 0 starts from the sum of the saved residuals and the
// other ranks from zero.
func TestErrorFeedbackResumeOtherWorld(t *testing.T) {
	const steps = 8
	cfg := efConfig(t, steps)
	at := pauseRun(t, cfg, "w", 2, 4)
	saved := savedResiduals(t, cfg.Run.Dir, at)
	want := newResidSeeds(at, saved).sum

	var mu sync.Mutex
	seeds := map[int][]float32{} // rank -> the residual it started step at+1 from
	hooks := func(id string, tw **testWorker) workerHooks {
		return workerHooks{ringWrap: func(step uint64, r stepRing) stepRing {
			if step != at+1 {
				return r
			}
			resid := slices.Clone((*tw).w.job.resid) // the ring's goroutine owns the replica now
			return func(ctx context.Context, c ringCall, owned func(int, []float32)) error {
				mu.Lock()
				seeds[c.rank] = resid
				mu.Unlock()
				return r(ctx, c, owned)
			}
		}}
	}
	cfg.Job += "3"
	sum, rows := resumeRun(t, cfg, "v", 3, hooks)
	if sum.ResumedFrom != at || len(rows) != steps || rows[at].Workers != 3 {
		t.Fatalf("resumed from %d, %d lines, %d workers at step %d; want %d, %d, 3", sum.ResumedFrom, len(rows), rows[at].Workers, at+1, at, steps)
	}
	if len(seeds) != 3 {
		t.Fatalf("seeds of ranks %v; want 3 ranks", seeds)
	}
	if !slices.Equal(seeds[0], want) {
		t.Errorf("rank 0 started from another residual than the sum of the saved ones")
	}
	for r := 1; r < 3; r++ {
		if slices.ContainsFunc(seeds[r], func(v float32) bool { return v != 0 }) {
			t.Errorf("rank %d started from a non-zero residual", r)
		}
	}
	if slices.Equal(want, make([]float32, len(want))) {
		t.Errorf("the saved residuals sum to zero: was anything saved?")
	}
}

// The seed rule: a ring of the checkpoint's size takes the residuals rank
// by rank; another size puts their sum on rank 0 and zero elsewhere.
func TestResidSeeds(t *testing.T) {
	ranks := [][]float32{{1, 2, 0}, {0.5, -2, 0}}
	s := newResidSeeds(7, ranks)
	tests := []struct {
		rank, world int
		want        []float32
	}{
		{0, 2, ranks[0]}, {1, 2, ranks[1]},
		{0, 1, []float32{1.5, 0, 0}},
		{0, 3, []float32{1.5, 0, 0}}, {1, 3, nil}, {2, 3, nil},
	}
	for _, tt := range tests {
		if got := s.of(tt.rank, tt.world); !slices.Equal(got, tt.want) {
			t.Errorf("of(%d, %d) = %v; want %v", tt.rank, tt.world, got, tt.want)
		}
	}
}

// writeResidualCheckpoint writes a checkpoint of a tiny model whose trainer
// state records ranks, and returns its folder and vector length.
func writeResidualCheckpoint(t *testing.T, ranks func(n int) [][]float32) (string, int) {
	t.Helper()
	cfg := testConfig(t, 1, 1)
	mc, err := modelConfig(cfg.Model, 16)
	if err != nil {
		t.Fatal(err)
	}
	m, err := lm.New(mc, NewEnv(1).Pool)
	if err != nil {
		t.Fatal(err)
	}
	n := mc.NumParams() + 2
	c := &ckptState{step: 3, model: m, st: &lm.TrainerState{Step: 3}, resid: func(uint64) [][]float32 { return ranks(n) }}
	dir := t.TempDir()
	path, err := c.write(dir, 1)
	if err != nil {
		t.Fatal(err)
	}
	return path, n
}

// A checkpoint's residuals round-trip; a residual file that is missing,
// altered, of another shape or count, or not finite is an error that
// names the file, and the loader skips that checkpoint.
func TestCheckpointResiduals(t *testing.T) {
	good := func(n int) [][]float32 {
		r := [][]float32{make([]float32, n), make([]float32, n)}
		r[0][0], r[1][n-3] = 0.25, -1e-9
		return r
	}
	dir, n := writeResidualCheckpoint(t, good)
	got := readResiduals(t, dir, n)
	if len(got) != 2 || got[0][0] != 0.25 || got[1][n-3] != -1e-9 {
		t.Fatalf("residuals read back wrong: %d ranks", len(got))
	}
	// Without every rank's residual (gather gave nil) the checkpoint has
	// none, and loads as one without them.
	none, n2 := writeResidualCheckpoint(t, func(int) [][]float32 { return nil })
	if _, err := os.Stat(filepath.Join(none, ResidualFile)); !os.IsNotExist(err) {
		t.Errorf("a checkpoint without residuals has %s (%v)", ResidualFile, err)
	}
	if r := readResiduals(t, none, n2); r != nil {
		t.Errorf("a checkpoint without residuals read back %d ranks", len(r))
	}
	path := filepath.Join(dir, ResidualFile)
	orig, _ := os.ReadFile(path)
	nan := slices.Clone(orig)
	binary.LittleEndian.PutUint32(nan[len(nan)-4:], math.Float32bits(float32(math.NaN())))
	tests := []struct {
		name  string
		setup func(t *testing.T, dir string) // alters the checkpoint
		want  string
	}{
		{"missing", func(t *testing.T, dir string) { os.Remove(path) }, "no such file"},
		{"altered", func(t *testing.T, dir string) { os.WriteFile(path, orig[:len(orig)-4], 0o644) }, "digest"},
		{"not finite", func(t *testing.T, dir string) { rewriteResiduals(t, dir, nan) }, "NaN"},
		{"a rank short", func(t *testing.T, dir string) { rewriteResiduals(t, dir, encodeResiduals(good(n)[:1], 3)) }, "1 tensors"},
		{"another shape", func(t *testing.T, dir string) { rewriteResiduals(t, dir, encodeResiduals(good(n-1), 3)) }, "shape"},
		{"lying header", func(t *testing.T, dir string) {
			b := slices.Clone(orig)
			binary.LittleEndian.PutUint64(b, 1<<62)
			rewriteResiduals(t, dir, b)
		}, "header length"},
	}
	for _, tt := range tests {
		d, _ := writeResidualCheckpoint(t, good)
		path = filepath.Join(d, ResidualFile)
		tt.setup(t, d)
		m, st, err := lm.LoadCheckpoint(d, NewEnv(1).Pool)
		if err != nil {
			t.Fatalf("%s: lm's part of the checkpoint: %v", tt.name, err)
		}
		_, err = checkpointResiduals(d, st.Data, m.Config.NumParams()+2)
		if !errors.Is(err, ErrResidual) || !strings.Contains(err.Error(), ResidualFile) || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: checkpointResiduals = %v; want ErrResidual naming %s and saying %q", tt.name, err, ResidualFile, tt.want)
		}
		ld, err := loadNewestCheckpoint(filepath.Dir(filepath.Dir(d)), NewEnv(1).Pool, slog.New(slog.NewTextHandler(io.Discard, nil)))
		if !errors.Is(err, ErrNoCheckpoint) || ld.dir != "" {
			t.Errorf("%s: loadNewestCheckpoint = %q, %v; want the checkpoint skipped and ErrNoCheckpoint (it is the only one)", tt.name, ld.dir, err)
		}
	}
}

func readResiduals(t *testing.T, dir string, n int) [][]float32 {
	t.Helper()
	_, st, err := lm.LoadCheckpoint(dir, NewEnv(1).Pool)
	if err != nil {
		t.Fatal(err)
	}
	r, err := checkpointResiduals(dir, st.Data, n)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// rewriteResiduals replaces a checkpoint's residual file with b and the
// digest its trainer state records with b's, as a save that wrote b would.
func rewriteResiduals(t *testing.T, dir string, b []byte) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, ResidualFile), b, 0o644); err != nil {
		t.Fatal(err)
	}
	m, st, err := lm.LoadCheckpoint(dir, NewEnv(1).Pool)
	if err != nil {
		t.Fatal(err)
	}
	var ds dataState
	if err := json.Unmarshal(st.Data, &ds); err != nil || ds.Residual == nil {
		t.Fatalf("the trainer state's data %s: %v", st.Data, err)
	}
	ds.Residual.SHA256 = residualDigest(b)
	if st.Data, err = json.Marshal(ds); err != nil {
		t.Fatal(err)
	}
	if err := lm.SaveCheckpoint(dir, m, st); err != nil {
		t.Fatal(err)
	}
}

// part is a residual part of floats vals at off, from rank of world.
func part(step, epoch uint64, sender string, rank, world int, total, off int64, vals ...float32) *residPart {
	p := &residPart{Run: "r", Epoch: epoch, Step: step, Sender: sender, Rank: rank, World: world, Total: total, Offset: off}
	for _, v := range vals {
		p.Data = binary.LittleEndian.AppendUint32(p.Data, math.Float32bits(v))
	}
	return p
}

// The collector takes the parts of the ring that committed a step, in
// order, and refuses anything else without changing what it holds; gather
// returns the residuals once every rank is complete, and nil (after its
// wait, or at once for a step no ring committed) otherwise.
func TestResidCollector(t *testing.T) {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	c := newResidCollector(4, time.Millisecond, log)
	c.committed(5, 2, []string{"a", "b"})
	refused := []*residPart{
		part(6, 2, "a", 0, 2, 4, 0, 1),       // no ring committed step 6
		part(5, 1, "a", 0, 2, 4, 0, 1),       // another attempt
		part(5, 2, "b", 0, 2, 4, 0, 1),       // not rank 0
		part(5, 2, "a", 0, 3, 4, 0, 1),       // another world
		part(5, 2, "a", 0, 2, 5, 0, 1),       // another length
		part(5, 2, "a", 0, 2, 4, 2, 1),       // out of order
		part(5, 2, "a", 0, 2, 4, 3, 1, 2, 3), // beyond the vector (Validate's bound)
	}
	for i, p := range refused {
		if p.Validate() == nil && c.add(p) == nil {
			t.Errorf("part %d (%+v) accepted", i, p)
		}
	}
	for _, p := range []*residPart{part(5, 2, "a", 0, 2, 4, 0, 1, 2), part(5, 2, "a", 0, 2, 4, 2, 3, 4), part(5, 2, "b", 1, 2, 4, 0, 5, 6, 7)} {
		if err := c.add(p); err != nil {
			t.Fatalf("add(%+v) = %v", p, err)
		}
	}
	if got := c.gather(5); got != nil {
		t.Fatalf("gather(5) = %v with rank 1 incomplete; want nil", got)
	}
	if err := c.add(part(5, 2, "b", 1, 2, 4, 3, 8)); err != nil {
		t.Fatal(err)
	}
	if err := c.add(part(5, 2, "a", 0, 2, 4, 0, 9)); err == nil {
		t.Errorf("a part of a complete rank was accepted")
	}
	want := [][]float32{{1, 2, 3, 4}, {5, 6, 7, 8}}
	c.wait = time.Hour // complete: no waiting
	if got := c.gather(5); len(got) != 2 || !slices.Equal(got[0], want[0]) || !slices.Equal(got[1], want[1]) {
		t.Errorf("gather(5) = %v; want %v", got, want)
	}
	if got := c.gather(9); got != nil {
		t.Errorf("gather(9) = %v for a step no ring committed; want nil at once", got)
	}
	// Two steps are held at once: a part of an older step than both does
	// not push out what was gathered.
	c.committed(7, 3, []string{"a"})
	c.committed(6, 3, []string{"a"})
	if err := c.add(part(7, 3, "a", 0, 1, 4, 0, 1)); err != nil {
		t.Fatal(err)
	}
	if err := c.add(part(6, 3, "a", 0, 1, 4, 0, 1)); err == nil {
		t.Errorf("a part of step 6 accepted while steps 5 and 7 are held")
	}
	if got := c.gather(5); len(got) != 2 {
		t.Errorf("gather(5) = %v after a part of step 6; want step 5's residuals", got)
	}
}

// gather waits for the parts that come while it waits.
func TestResidCollectorGatherWaits(t *testing.T) {
	c := newResidCollector(2, time.Minute, slog.New(slog.NewTextHandler(io.Discard, nil)))
	c.committed(1, 1, []string{"a"})
	got := make(chan [][]float32)
	go func() { got <- c.gather(1) }()
	if err := c.add(part(1, 1, "a", 0, 1, 2, 0, 1, 2)); err != nil {
		t.Fatal(err)
	}
	if r := <-got; len(r) != 1 || !slices.Equal(r[0], []float32{1, 2}) {
		t.Errorf("gather(1) = %v; want [[1 2]]", r)
	}
}
