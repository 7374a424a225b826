package shard

import (
	"os"
	"path/filepath"
	"testing"
)

// BenchmarkBatch assembles one rank's part of a step as the cluster layer
// does: the next global batch of G = 16 windows, rank 0's shard of n = 1,
// its tokens and (for synthetic data) its truth rows, into reused buffers.
// It reports windows/s and, through ReportAllocs, bytes allocated per batch.
func BenchmarkBatch(b *testing.B) {
	const G, T = 16, 128
	tokens := filepath.Join(b.TempDir(), "train.bin")
	ids := make([]int, 1<<20)
	for i := range ids {
		ids[i] = (i * 7919) % 50257
	}
	if err := os.WriteFile(tokens, u16(ids...), 0o644); err != nil {
		b.Fatal(err)
	}
	for _, src := range []string{"synthetic", "tokens:" + tokens} {
		name := src
		if src != "synthetic" {
			name = "tokens"
		}
		b.Run(name, func(b *testing.B) {
			d, err := Open(Options{Source: src, Ctx: T, ValFraction: 0.05, Seed: 1})
			if err != nil {
				b.Fatal(err)
			}
			defer d.Close()
			K := d.TruthK()
			win := make([]int32, G*(T+1))
			tids := make([]int32, G*T*K)
			tps := make([]float32, G*T*K)
			batch := make([]int, 0, G)
			var c Cursor
			b.ReportAllocs()
			for b.Loop() {
				batch, c = d.AppendBatch(batch[:0], c, G)
				for i, id := range Shard(batch, 0, 1) {
					d.Window(id, win[i*(T+1):(i+1)*(T+1)])
					if K > 0 {
						d.Truth(id, tids[i*T*K:(i+1)*T*K], tps[i*T*K:(i+1)*T*K])
					}
				}
			}
			b.ReportMetric(float64(b.N*G)/b.Elapsed().Seconds(), "windows/s")
		})
	}
}
