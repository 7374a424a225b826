package cluster

import (
	"context"
	"sync/atomic"
	"testing"

	"github.com/klring/klring/allreduce"
)

// Overlap of the ring with backward (allreduce.bucket_bytes), over embedded
// NATS: with buckets small enough that the model's gradient is cut into
// many, the ring is handed the buckets from the last to the first (as
// backward finishes them: lm's and engine's tests check that it calls back
// during backward; that the ring then runs alongside is measured, not
// asserted), every worker holds the same parameters after
// every step (I3), and the run is the unbucketed run bit for bit: the same
// losses and the same final parameters, since bucketed and unbucketed
// all-reduces give the same sums. World-size invariance (I1) holds with
// overlap on: 4 workers give the losses of 1.
func TestOverlapBitIdenticalAndWorldSizeInvariant(t *testing.T) {
	const steps, n = 10, 4
	cfg := testConfig(t, steps, 8)
	cfg.AllReduce.BucketBytes = 0
	plain, _, _, plainFinal := checksumRun(t, cfg, n, nil)

	cfg.Run.Dir = t.TempDir()
	cfg.Job += "o"
	cfg.AllReduce.BucketBytes = 4096
	var calls, inOrder, buckets atomic.Int64
	watch := func(step uint64, r stepRing) stepRing {
		return func(ctx context.Context, c ringCall, owned func(int, []float32)) error {
			calls.Add(1)
			bk := allreduce.Options{ChunkBytes: cfg.AllReduce.ChunkBytes, BucketBytes: cfg.AllReduce.BucketBytes}.Buckets(len(c.data), len(c.members))
			buckets.Store(int64(bk.Count()))
			if c.ready == nil {
				return r(ctx, c, owned)
			}
			// Relay the buckets, checking their order.
			relay, in := make(chan int, bk.Count()), c.ready
			c.ready = relay
			go func() {
				ok := true
				for want := bk.Count() - 1; want >= 0; want-- {
					select {
					case b := <-in:
						ok = ok && b == want
						if want == 0 && ok {
							inOrder.Add(1) // before the ring can finish
						}
						relay <- b
					case <-ctx.Done():
						return
					}
				}
			}()
			return r(ctx, c, owned)
		}
	}
	rows, kinds, sums, final := checksumRun(t, cfg, n, watch)
	if len(rows) != steps || len(kinds) != 0 {
		t.Fatalf("%d steps, aborts by kind %v; want %d steps and no abort", len(rows), kinds, steps)
	}
	if calls.Load() != steps || inOrder.Load() != steps || buckets.Load() < 8 {
		t.Fatalf("w0's ring: %d calls, %d of them handed the buckets from the last to the first, %d buckets; want %d, %d, at least 8", calls.Load(), inOrder.Load(), buckets.Load(), steps, steps)
	}
	for s := uint64(1); s <= steps; s++ {
		if len(sums[s]) != n {
			t.Fatalf("step %d applied by %d workers; want %d", s, len(sums[s]), n)
		}
		for id, c := range sums[s] {
			if c != sums[s]["w0"] {
				t.Errorf("step %d: %s holds parameters %016x, w0 %016x", s, id, c, sums[s]["w0"])
			}
		}
	}
	if final != sums[steps]["w0"] || final != plainFinal {
		t.Errorf("final parameters: coordinator %016x, workers %016x, the unbucketed run %016x; want all equal", final, sums[steps]["w0"], plainFinal)
	}
	for i, r := range rows {
		if r.Loss != plain[i].Loss || r.Attempts != 1 {
			t.Errorf("step %d: loss %.9f in %d attempts; unbucketed %.9f", r.Step, r.Loss, r.Attempts, plain[i].Loss)
		}
	}

	cfg.Run.Dir = t.TempDir()
	cfg.Job += "1"
	one := trainRun(t, cfg, 1)
	for i := range one {
		tol := 1e-3
		if i < 5 {
			tol = 1e-5
		}
		if d := relDiff(rows[i].Loss, one[i].Loss); d > tol {
			t.Errorf("step %d: loss with %d workers and overlap %.8f, with 1 %.8f: relative difference %.2g > %g", i+1, n, rows[i].Loss, one[i].Loss, d, tol)
		}
	}
}
