package cluster

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/klring/klring/config"
	"github.com/klring/klring/outputs"
)

// checksumRun runs cfg with n workers over embedded NATS and returns the
// metrics, the aborted attempts by kind, every worker's parameter checksum
// after each step it applied, and the checksum of the coordinator's final
// checkpoint. ring, if not nil, wraps worker w0's ring.
func checksumRun(t *testing.T, cfg config.Config, n int, ring func(step uint64, r stepRing) stepRing) (rows []outputs.StepMetrics, kinds map[string]int, sums map[uint64]map[string]uint64, final uint64) {
	t.Helper()
	var mu sync.Mutex
	sums = map[uint64]map[string]uint64{}
	rows, kinds, final = hookedRun(t, cfg, n, func(i int) workerHooks {
		id := fmt.Sprintf("w%d", i)
		h := workerHooks{afterApply: func(w *Worker, step uint64) {
			mu.Lock()
			defer mu.Unlock()
			if sums[step] == nil {
				sums[step] = map[string]uint64{}
			}
			sums[step][id] = w.job.checksum()
		}}
		if i == 0 {
			h.ringWrap = ring
		}
		return h
	})
	return rows, kinds, sums, final
}

// The bf16 wire over embedded NATS: no attempt is ever refused (a worker
// whose parameters differed from the master's would abort a step with
// "checksum", a segment the coordinator assembled otherwise than its owner
// reduced it with "segments"), every worker holds the same parameters after
// every step, and the coordinator's final checkpoint holds them too. The
// metrics count half the bytes, and the run stays close to the f32 run.
func TestBF16ReplicasBitIdentical(t *testing.T) {
	const steps, n = 8, 3
	cfg := testConfig(t, steps, 8)
	cfg.Run.CheckpointEvery = 0
	f32, _, _, f32Final := checksumRun(t, cfg, n, nil)

	var noEF uint64
	for _, ef := range []bool{false, true} {
		cfg.Run.Dir = t.TempDir()
		cfg.Job += "b"
		cfg.AllReduce.Wire, cfg.AllReduce.ErrorFeedback = "bf16", ef
		rows, kinds, sums, final := checksumRun(t, cfg, n, nil)
		name := fmt.Sprintf("bf16, error feedback %v", ef)
		if len(rows) != steps || len(kinds) != 0 {
			t.Fatalf("%s: %d steps, aborts by kind %v; want %d steps and no abort", name, len(rows), kinds, steps)
		}
		for s := uint64(1); s <= steps; s++ {
			if len(sums[s]) != n {
				t.Fatalf("%s: step %d applied by %d workers; want %d", name, s, len(sums[s]), n)
			}
			for id, c := range sums[s] {
				if c != sums[s]["w0"] {
					t.Errorf("%s: step %d: %s holds parameters %016x, w0 %016x", name, s, id, c, sums[s]["w0"])
				}
			}
		}
		if final != sums[steps]["w0"] {
			t.Errorf("%s: the coordinator's final parameters %016x, the workers' %016x", name, final, sums[steps]["w0"])
		}
		if final == f32Final {
			t.Errorf("%s: the same parameters as the f32 run: was anything rounded?", name)
		}
		if ef && final == noEF {
			t.Errorf("%s: the same parameters as without error feedback: was any residual fed back?", name)
		}
		noEF = final
		for i, r := range rows {
			if r.Attempts != 1 {
				t.Errorf("%s: step %d took %d attempts", name, r.Step, r.Attempts)
			}
			if want := f32[i].Bytes/2 + 4; r.Bytes != want { // the loss sum and token count stay 4 bytes
				t.Errorf("%s: step %d: allreduce_bytes %d; want %d (f32: %d)", name, r.Step, r.Bytes, want, f32[i].Bytes)
			}
			if d := relDiff(r.Loss, f32[i].Loss); d > 1e-2 {
				t.Errorf("%s: step %d: loss %.6f, on the f32 wire %.6f", name, r.Step, r.Loss, f32[i].Loss)
			}
		}
	}
}

// errRingAfter is the failure failingRing injects.
var errRingAfter = errors.New("test: the ring failed after it finished")

// failingRing makes a worker's ring of step s fail once, after it ran to
// the end: the other ranks finish theirs and stage their update and their
// error-feedback residual, and the attempt is aborted.
type failingRing struct {
	step  uint64
	fired atomic.Bool
}

func (f *failingRing) wrap(step uint64, r stepRing) stepRing {
	if step != f.step {
		return r
	}
	return func(ctx context.Context, c ringCall, owned func(int, []float32)) error {
		err := r(ctx, c, owned)
		if err == nil && !f.fired.Swap(true) {
			return errRingAfter
		}
		return err
	}
}

// Error feedback and an aborted attempt: the residuals the aborted attempt
// staged are discarded with its update, and the retry starts from the
// residuals of the last committed step, so the run ends with exactly the
// parameters of the run without the failure.
func TestErrorFeedbackResidualDiscardedOnAbort(t *testing.T) {
	const steps, n = 7, 3
	cfg := testConfig(t, steps, 8)
	cfg.AllReduce.Wire, cfg.AllReduce.ErrorFeedback = "bf16", true
	clean, _, _, cleanFinal := checksumRun(t, cfg, n, nil)

	cfg.Run.Dir = t.TempDir()
	cfg.Job += "a"
	fr := &failingRing{step: 4}
	rows, kinds, _, final := checksumRun(t, cfg, n, fr.wrap)
	if !fr.fired.Load() || kinds["worker_error"] != 1 || rows[3].Attempts != 2 {
		t.Fatalf("fired %v, aborts by kind %v, step 4 attempts %d; want one worker_error abort (the failed ring) at step 4", fr.fired.Load(), kinds, rows[3].Attempts)
	}
	for i := range rows {
		if rows[i].Loss != clean[i].Loss {
			t.Errorf("step %d: loss %.9f, without the abort %.9f", i+1, rows[i].Loss, clean[i].Loss)
		}
	}
	if final != cleanFinal {
		t.Errorf("final parameters %016x, without the abort %016x: the aborted attempt's residual leaked", final, cleanFinal)
	}
}
