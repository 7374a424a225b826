package cluster

import (
	"context"
	"math"
	"path/filepath"
	"testing"
	"time"

	"github.com/klring/klring/lm"
)

// A padded vocabulary (model.vocab_pad) changes the layout, not the model:
// two workers train the unpadded model's run, every replica matches the
// coordinator's checksum at every step (the padded rows are in the flat
// vector: zero everywhere), checkpoints hold V rows with the padded rows zero
// in memory, and a run resumed from them keeps the checkpoint's padding.
func TestVocabPadRun(t *testing.T) {
	cfg := testConfig(t, 12, 8)
	cfg.Data.Source = "synthetic:vocab=100"
	cfg.Run.CheckpointEvery = 6
	plain := trainRun(t, cfg, 2)

	cfg.Run.Dir = t.TempDir()
	cfg.Job += "p"
	cfg.Model.VocabPad = 64
	tc := newTestCluster(t, cfg)
	tc.startWorker("w0", workerHooks{})
	tc.startWorker("w1", workerHooks{})
	ctx, cancel := context.WithCancel(context.Background())
	first, _, kinds, err := tc.runCoordinatorKinds(ctx, tc.cfg, 2, coordHooks{afterCommit: func(s uint64) {
		if s == 6 {
			cancel()
		}
	}})
	if err != nil || !first.Stopped || first.Steps < 6 || first.Steps >= 12 {
		t.Fatalf("interrupted padded run: %+v, %v; want it stopped between steps 6 and 12", first, err)
	}
	if kinds["checksum"] != 0 {
		t.Errorf("padded run: aborts by kind %v; want no checksum abort", kinds)
	}
	tc.stopAll()
	pool := NewEnv(1).Pool
	m, st, err := lm.LoadCheckpoint(filepath.Join(cfg.Run.Dir, "checkpoints", checkpointName(6)), pool)
	if err != nil {
		t.Fatal(err)
	}
	checkPadded := func(m *lm.Model, st *lm.TrainerState) {
		t.Helper()
		w, _ := m.Tensor("wte.weight")
		if m.Config.Vocab != 100 || m.Config.VocabPad != 64 || w.Shape[0] != 128 || w.FileShape()[0] != 100 {
			t.Fatalf("checkpoint: config %+v, wte %v in memory, %v in the file; want vocab 100 padded to 128", m.Config, w.Shape, w.FileShape())
		}
		for _, buf := range [][]float32{m.Params, st.Adam.M, st.Adam.V} {
			for i, v := range w.View(buf)[w.FileSize():] {
				if math.Float32bits(v) != 0 {
					t.Fatalf("checkpoint: padded element %d is %g; want 0", i, v)
				}
			}
		}
	}
	checkPadded(m, st)

	// Resumed by new workers and a new coordinator whose configuration
	// asks for no padding: the run keeps the checkpoint's.
	cfg.Job += "2"
	cfg.Model.VocabPad = 0
	tc2 := newTestCluster(t, cfg)
	tc2.startWorker("v0", workerHooks{})
	tc2.startWorker("v1", workerHooks{})
	ctx2, cancel2 := context.WithTimeout(context.Background(), time.Minute)
	defer cancel2()
	sum, rows, kinds, err := tc2.runCoordinatorKinds(ctx2, tc2.cfg, 2, coordHooks{})
	if err != nil {
		t.Fatal(err)
	}
	if sum.ResumedFrom != first.Steps || len(rows) != 12 || kinds["checksum"] != 0 {
		t.Fatalf("resumed run: from step %d, %d metrics rows, aborts %v; want from %d, 12 rows, no checksum abort", sum.ResumedFrom, len(rows), kinds, first.Steps)
	}
	m, st, err = lm.LoadCheckpoint(filepath.Join(cfg.Run.Dir, "checkpoints", checkpointName(12)), pool)
	if err != nil {
		t.Fatal(err)
	}
	checkPadded(m, st)
	for i := range plain {
		if d := relDiff(rows[i].Loss, plain[i].Loss); d > 1e-6 {
			t.Errorf("step %d: padded loss %.9f, unpadded %.9f (rel %.2g)", i+1, rows[i].Loss, plain[i].Loss, d)
		}
	}
	checkLedger(t, cfg.Run.Dir, 12)
}
