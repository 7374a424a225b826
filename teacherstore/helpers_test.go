package teacherstore

import (
	"context"
	"math/rand/v2"
	"path/filepath"
	"strings"
	"testing"

	"github.com/klring/klring/kernels"
	"github.com/klring/klring/lm"
	"github.com/klring/klring/shard"
)

// tinyModel is a randomly initialised GPT-2 of vocabulary 64 and context
// 16.
func tinyModel(t testing.TB, seed uint64, pool *kernels.Pool) *lm.Model {
	t.Helper()
	m, err := lm.New(lm.Config{Vocab: 64, NEmbd: 32, NLayer: 2, NHead: 2, Ctx: 16}, pool)
	if err != nil {
		t.Fatal(err)
	}
	m.Init(seed)
	// Larger weights than the initialisation's make the teacher's
	// distributions far from uniform.
	rng := rand.New(rand.NewPCG(seed, 9))
	for i := range m.Params {
		m.Params[i] += float32(rng.NormFloat64() * 0.05)
	}
	return m
}

// tinyData is synthetic data of vocabulary 64 cut into windows of ctx.
func tinyData(t testing.TB, ctx, windows int) *shard.Dataset {
	t.Helper()
	d, err := shard.Open(shard.Options{Source: "synthetic", Ctx: ctx, Tokens: ctx*windows + 1, Seed: 3, ValFraction: 0.1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return d
}

const fakeSHA = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"

// dumpTiny writes a store of teacher over data into a new folder.
func dumpTiny(t testing.TB, teacher *lm.Model, data *shard.Dataset, o DumpOptions) (string, DumpStats) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "teacher.topk")
	if o.TeacherSHA256 == "" {
		o.TeacherSHA256 = fakeSHA
	}
	st, err := Dump(context.Background(), path, teacher, data, o)
	if err != nil {
		t.Fatal(err)
	}
	return path, st
}

// testHeader is a valid header.
func testHeader() Header {
	return Header{TeacherSHA256: fakeSHA,
		Data:  shard.Fingerprint{Kind: "tokens", Bytes: 2 * 101, SHA256: strings.Repeat("ab", 32), Tokens: 101, Vocab: 50, Ctx: 4},
		Vocab: 64, Ctx: 4, K: 3, Dtype: Float32, Temperature: 1, Windows: 25}
}
