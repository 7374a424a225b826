package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"slices"

	"github.com/klring/klring/engine"
	"github.com/klring/klring/kernels"
	"github.com/klring/klring/lm"
	"github.com/klring/klring/outputs"
	"github.com/klring/klring/shard"
)

// runRecord is run.json: what a run was started with, so that its outputs
// can be audited (Verify) against its data.
type runRecord struct {
	Job   string  `json:"job"`
	Steps uint64  `json:"steps"`
	Spec  JobSpec `json:"spec"`
}

// ErrVerify is wrapped by the first problem Verify finds.
var ErrVerify = errors.New("verify")

// VerifyReport is what an audit of a run directory found.
type VerifyReport struct {
	RunDir      string   `json:"run_dir"`
	Steps       int      `json:"steps"`        // committed steps in the ledger
	Windows     int      `json:"windows"`      // window contributions checked
	DataEpochs  int      `json:"data_epochs"`  // complete passes over the training windows
	Checkpoints []string `json:"checkpoints"`  // checkpoints whose digests verified
	Metrics     int      `json:"metrics_rows"` // metrics lines checked against the ledger
}

// Verify audits a run directory: ledger.jsonl commits steps 1..N once each;
// each step's windows are exactly its global batch, no window in two ranks;
// the batches are the data's stream from its start, so every data epoch
// visits each training window exactly once and no held-out window is
// trained on; every checkpoint verifies its digests, and the last one a
// finished run's summary.json names is there; metrics.jsonl has one
// finite line per committed step whose tokens agree with the ledger. data,
// when not empty, replaces the run's data source (a file that moved). It
// returns the first problem found, wrapping ErrVerify.
func Verify(runDir, data string) (VerifyReport, error) {
	rep := VerifyReport{RunDir: runDir}
	var rec runRecord
	if err := readJSONFile(filepath.Join(runDir, "run.json"), &rec); err != nil {
		return rep, fmt.Errorf("%w: %w", ErrVerify, err)
	}
	o := dataRequest(rec.Spec)
	if data != "" {
		o.Source = data
	}
	ds, err := engine.OpenData(context.Background(), o, filepath.Join(runDir, "tokens"), slog.New(slog.DiscardHandler))
	if err != nil {
		return rep, fmt.Errorf("%w: opening the run's data %s (give --data if it moved): %w", ErrVerify, o.Source, err)
	}
	defer ds.Close()
	if d := rec.Spec.Data.Diff(ds.Fingerprint()); d != "" {
		return rep, fmt.Errorf("%w: %s is not the data the run trained on (run's, this): %s", ErrVerify, o.Source, d)
	}
	ledger, err := outputs.ReadLedger(runDir)
	if err != nil {
		return rep, fmt.Errorf("%w: %w", ErrVerify, err)
	}
	if len(ledger) == 0 && !exists(filepath.Join(runDir, "ledger.jsonl")) && exists(filepath.Join(runDir, "metrics.jsonl")) {
		return rep, fmt.Errorf("%w: ledger.jsonl is missing, but the run has metrics.jsonl", ErrVerify)
	}
	if err := verifyLedger(&rep, ledger, ds, rec.Spec.BatchWindows); err != nil {
		return rep, err
	}
	if err := verifyMetrics(&rep, runDir, ledger, rec.Spec.Model.Ctx); err != nil {
		return rep, err
	}
	if err := verifyCheckpoints(&rep, runDir, uint64(len(ledger))); err != nil {
		return rep, err
	}
	// A finished run's summary names its last checkpoint: it must be there.
	var sum outputs.Summary
	if err := readJSONFile(filepath.Join(runDir, "summary.json"), &sum); err == nil && sum.Checkpoint != "" &&
		!slices.Contains(rep.Checkpoints, filepath.Base(sum.Checkpoint)) {
		return rep, fmt.Errorf("%w: summary.json names the checkpoint %s, which is not in checkpoints/", ErrVerify, filepath.Base(sum.Checkpoint))
	}
	return rep, nil
}

// verifyLedger checks the steps, the split of every batch among ranks, and
// the batches against the data's stream.
func verifyLedger(rep *VerifyReport, ledger []outputs.LedgerEntry, ds *shard.Dataset, G int) error {
	var cur shard.Cursor
	seen := make(map[int32]bool, ds.NumTrain())
	for i, e := range ledger {
		if e.Step != uint64(i+1) {
			return fmt.Errorf("%w: ledger line %d is step %d, want step %d (a step missing or committed twice)", ErrVerify, i+1, e.Step, i+1)
		}
		var got []int32
		for _, r := range e.Ranks {
			got = append(got, r.Windows...)
		}
		if !slices.Equal(got, e.Batch) {
			return fmt.Errorf("%w: step %d: the ranks computed windows %v; the batch is %v", ErrVerify, e.Step, got, e.Batch)
		}
		want, next := ds.NextBatch(cur, G)
		cur = next
		if !slices.Equal(toInt32(want), e.Batch) {
			return fmt.Errorf("%w: step %d trained on windows %v; the data's stream gives %v", ErrVerify, e.Step, e.Batch, want)
		}
		for _, w := range e.Batch {
			if ds.IsHeldOut(int(w)) {
				return fmt.Errorf("%w: step %d trained on held-out window %d", ErrVerify, e.Step, w)
			}
			if seen[w] {
				return fmt.Errorf("%w: step %d: window %d comes twice in data epoch %d", ErrVerify, e.Step, w, rep.DataEpochs+1)
			}
			seen[w] = true
			rep.Windows++
			if len(seen) == ds.NumTrain() {
				rep.DataEpochs++
				clear(seen)
			}
		}
		rep.Steps++
	}
	return nil
}

// verifyMetrics checks metrics.jsonl against the ledger.
func verifyMetrics(rep *VerifyReport, runDir string, ledger []outputs.LedgerEntry, ctx int) error {
	rows, err := outputs.ReadMetrics(runDir)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrVerify, err)
	}
	if len(rows) == 0 && len(ledger) > 0 && !exists(filepath.Join(runDir, "metrics.jsonl")) {
		return fmt.Errorf("%w: metrics.jsonl is missing; the ledger has %d committed steps", ErrVerify, len(ledger))
	}
	if len(rows) != len(ledger) {
		return fmt.Errorf("%w: metrics.jsonl has %d lines, the ledger %d committed steps", ErrVerify, len(rows), len(ledger))
	}
	var total int64
	for i, m := range rows {
		e := ledger[i]
		want := int64(len(e.Batch) * ctx)
		total += m.Tokens
		switch {
		case m.Step != e.Step:
			return fmt.Errorf("%w: metrics line %d is step %d, the ledger's step %d", ErrVerify, i+1, m.Step, e.Step)
		case m.Tokens != want:
			return fmt.Errorf("%w: step %d: metrics count %d tokens, the ledger's %d windows have %d", ErrVerify, m.Step, m.Tokens, len(e.Batch), want)
		case m.TotalTok != total:
			return fmt.Errorf("%w: step %d: tokens_total %d, the sum of tokens so far is %d", ErrVerify, m.Step, m.TotalTok, total)
		case math.IsNaN(m.Loss) || math.IsInf(m.Loss, 0):
			return fmt.Errorf("%w: step %d: loss %v", ErrVerify, m.Step, m.Loss)
		case m.Workers != len(e.Ranks):
			return fmt.Errorf("%w: step %d: metrics say %d workers, the ledger %d", ErrVerify, m.Step, m.Workers, len(e.Ranks))
		}
		rep.Metrics++
	}
	return nil
}

// verifyCheckpoints loads every checkpoint, which checks its digests, and
// its workers' error-feedback residuals if it records any.
func verifyCheckpoints(rep *VerifyReport, runDir string, last uint64) error {
	all, err := listCheckpoints(runDir)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrVerify, err)
	}
	pool := kernels.NewPool(1)
	for _, c := range all {
		m, st, err := lm.LoadCheckpoint(c.dir, pool)
		if err == nil && st != nil {
			_, err = checkpointResiduals(c.dir, st.Data, m.Config.NumParams()+2)
		}
		switch {
		case err != nil:
			return fmt.Errorf("%w: checkpoint %s: %w", ErrVerify, c.dir, err)
		case st == nil:
			return fmt.Errorf("%w: checkpoint %s has no %s", ErrVerify, c.dir, lm.TrainerStateFile)
		case uint64(st.Step) != c.step:
			return fmt.Errorf("%w: checkpoint %s holds step %d", ErrVerify, c.dir, st.Step)
		case c.step > last:
			return fmt.Errorf("%w: checkpoint of step %d, beyond the ledger's last step %d", ErrVerify, c.step, last)
		}
		rep.Checkpoints = append(rep.Checkpoints, filepath.Base(c.dir))
	}
	return nil
}

// exists reports whether path names a file or folder that can be looked up.
func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

func readJSONFile(path string, v any) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("reading %s: %w", path, err)
	}
	return nil
}
