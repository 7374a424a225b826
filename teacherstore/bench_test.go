package teacherstore

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/klring/klring/kernels"
	"github.com/klring/klring/lm"
	"github.com/klring/klring/shard"
)

// BenchmarkDump: the tiny preset (C 128, 4 layers, context 128) with the
// synthetic vocabulary of 64 as the teacher, over 64 windows (8192
// tokens), at k = 32 in float16 and at k = V in float32.
func BenchmarkDump(b *testing.B) {
	pool := kernels.NewPool(0)
	cfg, _ := lm.Preset("tiny")
	cfg.Vocab = 64
	teacher, err := lm.New(cfg, pool)
	if err != nil {
		b.Fatal(err)
	}
	teacher.Init(1)
	data, err := shard.Open(shard.Options{Source: "synthetic", Ctx: cfg.Ctx, Tokens: 64*cfg.Ctx + 1, Seed: 1})
	if err != nil {
		b.Fatal(err)
	}
	defer data.Close()
	for _, c := range []struct {
		k  int
		dt Dtype
	}{{32, Float16}, {64, Float32}} {
		b.Run(fmt.Sprintf("tiny/k=%d/%v", c.k, c.dt), func(b *testing.B) {
			dir := b.TempDir()
			var st DumpStats
			i := 0
			for b.Loop() {
				path := filepath.Join(dir, fmt.Sprint(i))
				i++
				st, err = Dump(context.Background(), path, teacher, data, DumpOptions{K: c.k, Dtype: c.dt, Batch: 8, Pool: pool, TeacherSHA256: fakeSHA})
				if err != nil {
					b.Fatal(err)
				}
				os.Remove(path)
			}
			b.ReportMetric(float64(st.Tokens)*float64(b.N)/b.Elapsed().Seconds(), "tokens/s")
			b.ReportMetric(float64(st.Header.RecordBytes())/float64(cfg.Ctx), "bytes/token")
		})
	}
}
