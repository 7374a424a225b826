package teacherstore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/klring/klring/kernels"
	"github.com/klring/klring/lm"
	"github.com/klring/klring/loss"
	"github.com/klring/klring/shard"
)

// compareLive runs the student over windows and, chunk by chunk of its
// head, computes the loss and its gradient against the live teacher (its
// logits at o.TeacherTemperature, cut to o.TeacherTopK) and against the
// store's sparse targets, as engine composes them, and returns the largest
// differences of the per-row losses and of the logits' gradients.
func compareLive(t *testing.T, student, teacher *lm.Model, s *Store, windows []int32, o loss.Options) (dLoss, dGrad float64) {
	t.Helper()
	T, V, K := s.Ctx(), student.Config.Vocab, s.K()
	if o.TeacherTopK > 0 {
		K = o.TeacherTopK // the store's rows cut to the top k
	}
	B := len(windows)
	data := tinyData(t, T, s.Header().Windows)
	in := make([]int32, B*T)
	win := make([]int32, T+1)
	for b, w := range windows {
		data.Window(int(w), win)
		copy(in[b*T:], win[:T])
	}
	ids, probs := make([]int32, B*T*K), make([]float32, B*T*K)
	if err := s.Targets(ids, probs, windows, T, K); err != nil {
		t.Fatal(err)
	}
	if err := teacher.ForwardHidden(in, B, T); err != nil {
		t.Fatal(err)
	}
	lc := loss.NewComputer(kernels.NewPool(1))
	sparse := o
	sparse.TeacherTopK = 0 // the store's K is the target's
	var tl []float32
	err := student.Forward(in, B, T, func(logits []float32, first, rows int) error {
		tl = append(tl[:0], make([]float32, rows*V)...)
		teacher.HeadLogits(tl, first, rows)
		g1, g2 := append([]float32(nil), logits...), append([]float32(nil), logits...)
		r1, r2 := make([]float64, rows), make([]float64, rows)
		if _, err := lc.ForwardBackward(g1, rows, V, loss.Target{TeacherLogits: tl}, o, 1, r1); err != nil {
			return fmt.Errorf("live: %w", err)
		}
		st := loss.Target{SparseIDs: ids[first*K : (first+rows)*K], SparseProbs: probs[first*K : (first+rows)*K], K: K}
		if _, err := lc.ForwardBackward(g2, rows, V, st, sparse, 1, r2); err != nil {
			return fmt.Errorf("store: %w", err)
		}
		for i := range r1 {
			dLoss = math.Max(dLoss, math.Abs(r1[i]-r2[i]))
		}
		for i := range g1 {
			dGrad = math.Max(dGrad, math.Abs(float64(g1[i]-g2[i])))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return dLoss, dGrad
}

// A store at k = V in float32 is the live teacher: every direction's loss
// within 1e-6 per token, and its gradient too.
func TestStoreIsTheLiveTeacher(t *testing.T) {
	pool := kernels.NewPool(2)
	teacher, student := tinyModel(t, 1, pool), tinyModel(t, 2, pool)
	const T = 16
	data := tinyData(t, T, 24)
	for _, temp := range []float64{1, 2} {
		path, st := dumpTiny(t, teacher, data, DumpOptions{K: 64, Dtype: Float32, Temperature: temp, Batch: 5, Pool: pool})
		if st.MeanKept != 1 || st.Windows != 24 || st.Tokens != 24*T {
			t.Fatalf("stats %+v; want 24 windows, kept mass 1", st)
		}
		s, err := Open(path)
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		windows := []int32{0, 7, 23, 2, 11}
		for _, dir := range []loss.Direction{loss.Forward, loss.Reverse, loss.JSD} {
			o := loss.DefaultOptions()
			o.Direction, o.TeacherTemperature = dir, temp
			dl, dg := compareLive(t, student, teacher, s, windows, o)
			if dl > 1e-6 || dg > 1e-6 {
				t.Errorf("temperature %v %v: store vs live teacher: loss differs by %.3g, gradient by %.3g; want <= 1e-6", temp, dir, dl, dg)
			}
		}
	}
}

// A store at k < V gives the live teacher's top k, with every tail, also
// cut to a smaller k.
func TestStoreTopKIsTheLiveTopK(t *testing.T) {
	pool := kernels.NewPool(2)
	teacher, student := tinyModel(t, 3, pool), tinyModel(t, 4, pool)
	data := tinyData(t, 16, 12)
	path, st := dumpTiny(t, teacher, data, DumpOptions{K: 12, Dtype: Float32, Batch: 4, Pool: pool})
	if !(st.MeanKept > 0.1 && st.MeanKept < 1) {
		t.Fatalf("mean kept mass %v", st.MeanKept)
	}
	s, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for _, tc := range []struct {
		dir  loss.Direction
		tail loss.Tail
		eps  float64
	}{{loss.Forward, loss.TailRenormalize, 0}, {loss.Forward, loss.TailUniform, 0}, {loss.Forward, loss.TailRest, 0},
		{loss.Reverse, loss.TailUniform, 0}, {loss.Reverse, loss.TailRenormalize, 0.01}, {loss.JSD, loss.TailRenormalize, 0}} {
		o := loss.DefaultOptions()
		o.Direction, o.TeacherTopK, o.TeacherTail, o.LabelSmoothing = tc.dir, 8, tc.tail, tc.eps // the store's top 12 cut to 8
		dl, dg := compareLive(t, student, teacher, s, []int32{1, 5, 11}, o)
		if dl > 2e-6 || dg > 2e-6 {
			t.Errorf("%v tail %v: store vs live top k: loss differs by %.3g, gradient by %.3g", tc.dir, tc.tail, dl, dg)
		}
	}
}

// float16 halves the store; the loss moves by about float16's precision.
func TestFloat16Store(t *testing.T) {
	pool := kernels.NewPool(2)
	teacher, student := tinyModel(t, 5, pool), tinyModel(t, 6, pool)
	data := tinyData(t, 16, 8)
	p32, s32 := dumpTiny(t, teacher, data, DumpOptions{K: 16, Dtype: Float32, Pool: pool})
	p16, s16 := dumpTiny(t, teacher, data, DumpOptions{K: 16, Dtype: Float16, Pool: pool})
	if got, want := float64(s16.FileBytes-s16.Header.dataOffset()), float64(s32.FileBytes-s32.Header.dataOffset())*(2+2+4.0/16)/(2+4+4.0/16); got != want {
		t.Fatalf("float16 records take %v bytes; want %v", got, want)
	}
	if math.Abs(s16.MeanKept-s32.MeanKept) > 1e-7 {
		t.Fatalf("mean kept %v (float16) vs %v (float32)", s16.MeanKept, s32.MeanKept)
	}
	s, err := Open(p16)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	o := loss.DefaultOptions()
	o.TeacherTopK, o.TeacherTail = 16, loss.TailUniform
	dl, _ := compareLive(t, student, teacher, s, []int32{0, 3, 7}, o)
	if dl > 2e-3 || dl == 0 {
		t.Errorf("float16 store: loss differs from the live top k by %.3g; want (0, 2e-3]", dl)
	}
	_ = p32
}

// A dump stopped part-way is continued by the next and ends as one that
// never stopped; a complete store is not written again; another teacher's
// store is refused.
// stopDumpAt runs Dump with o into path and stops it (ctx cancelled) once
// n windows are written, returning the stopped dump's stats.
func stopDumpAt(t *testing.T, path string, teacher *lm.Model, data *shard.Dataset, o DumpOptions, n int) DumpStats {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	o.Progress = func(done, total int) {
		if done >= n {
			cancel()
		}
	}
	st, err := Dump(ctx, path, teacher, data, o)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("stopped dump: %v; want context.Canceled", err)
	}
	return st
}

func TestDumpResumes(t *testing.T) {
	pool := kernels.NewPool(2)
	teacher := tinyModel(t, 7, pool)
	data := tinyData(t, 16, 30)
	whole, _ := dumpTiny(t, teacher, data, DumpOptions{K: 5, Dtype: Float16, Batch: 4, Pool: pool})

	path := filepath.Join(t.TempDir(), "resumed.topk")
	o := DumpOptions{K: 5, Dtype: Float16, Batch: 4, Pool: pool, TeacherSHA256: fakeSHA, SyncEvery: 1}
	stopDumpAt(t, path, teacher, data, o, 12)
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Fatal("a stopped dump left a store at its path")
	}
	st, err := Dump(context.Background(), path, teacher, data, o)
	if err != nil {
		t.Fatal(err)
	}
	if st.Resumed != 12 || st.NewTokens != 18*16 {
		t.Fatalf("resumed dump: %+v; want 12 windows resumed, 18 computed", st)
	}
	a, _ := os.ReadFile(whole)
	b, _ := os.ReadFile(path)
	if !bytes.Equal(a, b) {
		t.Fatal("the resumed store differs from the one dumped in one go")
	}
	d1, d2 := digest(t, whole), digest(t, path)
	if d1 != d2 || len(d1) != 64 {
		t.Fatalf("digests %s, %s of one store", d1, d2)
	}
	other, _ := dumpTiny(t, teacher, data, DumpOptions{K: 5, Dtype: Float32, Batch: 4, Pool: pool})
	if digest(t, other) == d1 {
		t.Fatal("a float32 store has the digest of the float16 one")
	}
	st, err = Dump(context.Background(), path, teacher, data, o)
	if err != nil || !st.Complete || st.NewTokens != 0 {
		t.Fatalf("dump of a complete store: %+v, %v; want Complete", st, err)
	}
	o.TeacherSHA256 = "ff" + fakeSHA[2:]
	if _, err := Dump(context.Background(), path, teacher, data, o); !errors.Is(err, ErrMismatch) {
		t.Fatalf("dump over another teacher's store: %v; want ErrMismatch", err)
	}
}

// The store keys on the data's source and ctx, not on its seed or
// held-out fraction.
func TestDataKeyIgnoresSeedAndSplit(t *testing.T) {
	pool := kernels.NewPool(1)
	teacher := tinyModel(t, 8, pool)
	d1 := tinyData(t, 16, 6)
	path, _ := dumpTiny(t, teacher, d1, DumpOptions{K: 4, Pool: pool})
	s, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	tok := filepath.Join(t.TempDir(), "tok.bin")
	ids := make([]int32, 16*6+1)
	win := make([]int32, 17)
	for w := range 6 {
		d1.Window(w, win)
		copy(ids[w*16:], win)
	}
	if err := shard.WriteTokenFile(tok, shard.LLMC, ids); err != nil {
		t.Fatal(err)
	}
	for _, o := range []shard.Options{
		{Source: "synthetic", Ctx: 16, Tokens: 16*6 + 1, Seed: 3, ValFraction: 0.3},
	} {
		d, err := shard.Open(o)
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Check(Header{Data: d.Fingerprint()}); err != nil {
			t.Errorf("%+v: %v", o, err)
		}
		d.Close()
	}
	for _, o := range []shard.Options{
		{Source: "synthetic", Ctx: 16, Tokens: 16*6 + 1, Seed: 4}, // another corpus
		{Source: "synthetic", Ctx: 8, Tokens: 16*6 + 1, Seed: 3},  // other windows
		{Source: "tokens:" + tok, Ctx: 16},                        // the same ids, another source kind
	} {
		d, err := shard.Open(o)
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Check(Header{Data: d.Fingerprint()}); !errors.Is(err, ErrMismatch) {
			t.Errorf("%+v: Check = %v; want ErrMismatch", o, err)
		}
		d.Close()
	}
}

func digest(t *testing.T, path string) string {
	t.Helper()
	s, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	return s.Digest()
}

// A negative batch is refused, not taken for the default.
func TestDumpRejectsNegativeBatch(t *testing.T) {
	pool := kernels.NewPool(1)
	teacher := tinyModel(t, 1, pool)
	path := filepath.Join(t.TempDir(), "t.topk")
	_, err := Dump(context.Background(), path, teacher, tinyData(t, 16, 2), DumpOptions{K: 4, Batch: -1, TeacherSHA256: fakeSHA, Pool: pool})
	if err == nil || !strings.Contains(err.Error(), "batch = -1") {
		t.Fatalf("Dump with Batch -1 = %v; want an error naming the batch", err)
	}
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Errorf("a refused Dump left %s (%v)", path, err)
	}
	if _, err := os.Stat(path + ".partial"); !os.IsNotExist(err) {
		t.Errorf("a refused Dump left %s.partial (%v)", path, err)
	}
}
