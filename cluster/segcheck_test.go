package cluster

import (
	"context"
	"fmt"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/klring/klring/config"
	"github.com/klring/klring/lm"
	"github.com/klring/klring/outputs"
	"github.com/klring/klring/protocol"
)

// hookedRun runs cfg with n workers over embedded NATS, worker i with
// hooks(i), and returns the metrics, the aborted attempts by kind and the
// checksum of the coordinator's final checkpoint.
func hookedRun(t *testing.T, cfg config.Config, n int, hooks func(i int) workerHooks) ([]outputs.StepMetrics, map[string]int, uint64) {
	t.Helper()
	tc := newTestCluster(t, cfg)
	for i := range n {
		tc.startWorker(fmt.Sprintf("w%d", i), hooks(i))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	_, rows, kinds, err := tc.runCoordinatorKinds(ctx, tc.cfg, n, coordHooks{})
	if err != nil {
		t.Fatalf("run with %d workers: %v", n, err)
	}
	tc.stopAll()
	m, _, err := lm.LoadCheckpoint(filepath.Join(cfg.Run.Dir, "checkpoints", checkpointName(uint64(cfg.Train.Steps))), NewEnv(1).Pool)
	if err != nil {
		t.Fatal(err)
	}
	return rows, kinds, checksum(m.Params)
}

// The coordinator's checks of the assembled gradient, end to end: a
// segment damaged on its way to the coordinator (after its owner took its
// digest) is caught by seg_sum, and a reduced gradient that overflows in
// the ring (every rank's own floats finite) by the finiteness check taken
// as segments are stored. Either attempt is refused, with its kind, the
// retry commits, and the run ends where the undisturbed run ends, bit for
// bit.
func TestCoordinatorRefusesBadAssembledGradient(t *testing.T) {
	const steps, n, bad = 6, 2, 3
	cfg := testConfig(t, steps, 8)
	cfg.Run.CheckpointEvery = 0
	cfg.AllReduce.BucketBytes = 0 // the ring runs on the finished gradient
	none := func(int) workerHooks { return workerHooks{} }
	_, kinds, want := hookedRun(t, cfg, n, none)
	if len(kinds) != 0 {
		t.Fatalf("the undisturbed run aborted attempts: %v", kinds)
	}

	var damaged atomic.Bool
	segment := func(i int) workerHooks {
		return workerHooks{onSegment: func(step uint64, off int, data []byte) {
			if step == bad && len(data) >= 4 && damaged.CompareAndSwap(false, true) {
				data[1] ^= 0x40 // one float, after the digest
			}
		}}
	}
	var mu sync.Mutex
	overflowed := 0 // ranks whose first attempt at step bad was made to overflow
	overflow := func(i int) workerHooks {
		return workerHooks{ringWrap: func(step uint64, r stepRing) stepRing {
			mu.Lock()
			defer mu.Unlock()
			if step != bad || overflowed == n {
				return r
			}
			overflowed++
			return func(ctx context.Context, c ringCall, owned func(int, []float32)) error {
				c.data[0] = 3e38 // finite on every rank; their sum is not
				return r(ctx, c, owned)
			}
		}}
	}
	for _, tc := range []struct {
		name  string
		hooks func(int) workerHooks
		kind  string
	}{
		{"damaged segment", segment, protocol.AbortSegments},
		{"overflow in the ring", overflow, protocol.AbortNonFinite},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := cfg
			c.Run.Dir = t.TempDir()
			c.Job += "x"
			rows, kinds, final := hookedRun(t, c, n, tc.hooks)
			if kinds[tc.kind] != 1 || len(kinds) != 1 {
				t.Errorf("aborted attempts %v; want one %q", kinds, tc.kind)
			}
			if len(rows) != steps {
				t.Errorf("%d steps committed; want %d", len(rows), steps)
			}
			if final != want {
				t.Errorf("final parameters %016x; want the undisturbed run's %016x", final, want)
			}
		})
	}
	if !damaged.Load() || overflowed != n {
		t.Errorf("the faults were not all injected: segment %v, overflowed ranks %d", damaged.Load(), overflowed)
	}
}
