package lm

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/klring/klring/kernels"
)

// forwardLogits returns every chunk of logits Forward hands its HeadFunc,
// concatenated [B*T, V], with the chunks' (first, rows).
func forwardLogits(t *testing.T, m *Model, tokens []int32, B, T int) ([]float32, [][2]int) {
	t.Helper()
	V := m.Config.Vocab
	out := make([]float32, B*T*V)
	var chunks [][2]int
	err := m.Forward(tokens, B, T, func(logits []float32, first, rows int) error {
		copy(out[first*V:(first+rows)*V], logits)
		chunks = append(chunks, [2]int{first, rows})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out, chunks
}

func randomTokens(n, V int, seed uint64) []int32 {
	r := NewRNG(seed)
	toks := make([]int32, n)
	for i := range toks {
		toks[i] = int32(r.Uint64() % uint64(V))
	}
	return toks
}

// TestHeadLogitsChunks: ForwardHidden + HeadLogits over Forward's chunks give
// Forward's logits bit for bit, and other chunkings the same values.
func TestHeadLogitsChunks(t *testing.T) {
	// V large enough that Forward cuts the head into several chunks of
	// min(B*T, max(256, 2^20/V)) rows.
	cfg := Config{Vocab: 8191, Ctx: 64, NEmbd: 32, NLayer: 2, NHead: 4}
	pool := kernels.NewPool(2)
	m, err := New(cfg, pool)
	if err != nil {
		t.Fatal(err)
	}
	m.Init(7)
	const B, T = 9, 64
	tokens := randomTokens(B*T, cfg.Vocab, 1)
	want, chunks := forwardLogits(t, m, tokens, B, T)
	if len(chunks) < 2 {
		t.Fatalf("Forward used %d head chunk(s); the test needs several", len(chunks))
	}
	if err := m.ForwardHidden(tokens, B, T); err != nil {
		t.Fatal(err)
	}
	V := cfg.Vocab
	for _, ch := range chunks {
		got := make([]float32, ch[1]*V)
		m.HeadLogits(got, ch[0], ch[1])
		for i, v := range got {
			if w := want[ch[0]*V+i]; math.Float32bits(v) != math.Float32bits(w) {
				t.Fatalf("HeadLogits chunk %v: [%d] = %v; Forward %v", ch, i, v, w)
			}
		}
	}
	// Other chunkings: one row, odd sizes, everything at once.
	for _, ch := range [][2]int{{0, 1}, {5, 37}, {100, 292}, {0, B * T}} {
		got := make([]float32, ch[1]*V)
		m.HeadLogits(got, ch[0], ch[1])
		for i, v := range got {
			w := want[ch[0]*V+i]
			if math.Abs(float64(v-w)) > 1e-5*max(1, math.Abs(float64(w))) {
				t.Fatalf("HeadLogits rows %v: [%d] = %v; Forward %v", ch, i, v, w)
			}
		}
	}
}

// TestInferenceShared: two inference models over one parameter buffer give
// the training model's logits, running at the same time (run with -race:
// neither writes the shared buffer), and never touch it.
func TestInferenceShared(t *testing.T) {
	cfg := Config{Vocab: 300, Ctx: 16, NEmbd: 32, NLayer: 2, NHead: 4}
	m, err := New(cfg, kernels.NewPool(1))
	if err != nil {
		t.Fatal(err)
	}
	m.Init(3)
	params := append([]float32(nil), m.Params...)
	orig := append([]float32(nil), params...)
	const B, T = 4, 16
	inputs := [][]int32{randomTokens(B*T, cfg.Vocab, 11), randomTokens(B*T, cfg.Vocab, 12)}
	var want [2][]float32
	for i, in := range inputs {
		want[i], _ = forwardLogits(t, m, in, B, T)
	}
	pool := kernels.NewPool(2) // shared by both, as simulated workers share one
	var wg sync.WaitGroup
	errs := make([]string, 2)
	for w := 0; w < 2; w++ {
		inf, err := NewInference(cfg, params, pool)
		if err != nil {
			t.Fatal(err)
		}
		if inf.Grads != nil {
			t.Fatalf("NewInference: Grads has %d floats; want none", len(inf.Grads))
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			V := cfg.Vocab
			for rep := 0; rep < 3; rep++ {
				in := inputs[(w+rep)%2]
				if err := inf.ForwardHidden(in, B, T); err != nil {
					errs[w] = err.Error()
					return
				}
				got := make([]float32, B*T*V)
				for r0 := 0; r0 < B*T; r0 += 24 {
					rows := min(24, B*T-r0)
					inf.HeadLogits(got[r0*V:(r0+rows)*V], r0, rows)
				}
				wt := want[(w+rep)%2]
				for i := range got {
					if math.Abs(float64(got[i]-wt[i])) > 1e-5*max(1, math.Abs(float64(wt[i]))) {
						errs[w] = "logits differ from the training model's"
						return
					}
				}
				// Forward works too.
				if err := inf.Forward(in, B, T, func([]float32, int, int) error { return nil }); err != nil {
					errs[w] = err.Error()
					return
				}
			}
		}()
	}
	wg.Wait()
	for w, e := range errs {
		if e != "" {
			t.Errorf("inference model %d: %s", w, e)
		}
	}
	for i := range params {
		if math.Float32bits(params[i]) != math.Float32bits(orig[i]) {
			t.Fatalf("shared params[%d] = %v after the passes; want it unchanged %v", i, params[i], orig[i])
		}
	}
}

// TestInferenceMisuse: ForwardBackward of an inference model, HeadLogits
// before a pass or beyond its rows, and a short parameter buffer panic with
// "lm: ".
func TestInferenceMisuse(t *testing.T) {
	cfg := Config{Vocab: 50, Ctx: 8, NEmbd: 16, NLayer: 1, NHead: 2}
	pool := kernels.NewPool(1)
	params := make([]float32, cfg.NumParams())
	inf, err := NewInference(cfg, params, pool)
	if err != nil {
		t.Fatal(err)
	}
	tokens := make([]int32, 8)
	expectPanic := func(name, want string, f func()) {
		t.Helper()
		defer func() {
			s, _ := recover().(string)
			if !strings.HasPrefix(s, "lm: ") || !strings.Contains(s, want) {
				t.Errorf("%s panicked with %q; want \"lm: ...%s...\"", name, s, want)
			}
		}()
		f()
	}
	expectPanic("HeadLogits before a pass", "ForwardHidden first", func() { inf.HeadLogits(make([]float32, 50), 0, 1) })
	expectPanic("ForwardBackward", "inference model", func() {
		inf.ForwardBackward(tokens, 1, 8, func([]float32, int, int) error { return nil })
	})
	if err := inf.ForwardHidden(tokens, 1, 8); err != nil {
		t.Fatal(err)
	}
	expectPanic("HeadLogits beyond the pass", "kept rows 0..8", func() { inf.HeadLogits(make([]float32, 2*50), 7, 2) })
	expectPanic("HeadLogits short dst", "len(dst)", func() { inf.HeadLogits(make([]float32, 49), 0, 1) })
	expectPanic("NewInference short params", "parameters", func() { NewInference(cfg, params[1:], pool) })
	if err := inf.ForwardHidden([]int32{0, 1, 2, 3, 4, 5, 6, 50}, 1, 8); err == nil || !strings.Contains(err.Error(), "forward hidden") {
		t.Errorf("ForwardHidden with token 50 of vocab 50 = %v; want a forward hidden error", err)
	}
}

// TestGoldenGPTMicroHidden: the golden model's mean cross-entropy through an
// inference model's ForwardHidden and HeadLogits, chunk by chunk.
func TestGoldenGPTMicroHidden(t *testing.T) {
	pool := kernels.NewPool(2)
	m, _, err := LoadCheckpoint(goldenDir, pool)
	if err != nil {
		t.Fatalf("LoadCheckpoint(%s) = %v", goldenDir, err)
	}
	var exp struct {
		Loss64 float64 `json:"mean_loss_float64"`
	}
	b, err := os.ReadFile(filepath.Join(goldenDir, "expected.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &exp); err != nil {
		t.Fatal(err)
	}
	inf, err := NewInference(m.Config, m.Params, pool)
	if err != nil {
		t.Fatal(err)
	}
	inputs, targets, nw := windows(readGoldenTokens(t), m.Config.Ctx)
	T, V := m.Config.Ctx, m.Config.Vocab
	if err := inf.ForwardHidden(inputs, nw, T); err != nil {
		t.Fatal(err)
	}
	h := &ceHead{targets: targets, V: V}
	const chunk = 5 // rows at a time, not a divisor of nw*T
	buf := make([]float32, chunk*V)
	for r0 := 0; r0 < nw*T; r0 += chunk {
		rows := min(chunk, nw*T-r0)
		inf.HeadLogits(buf[:rows*V], r0, rows)
		if err := h.forward(buf[:rows*V], r0, rows); err != nil {
			t.Fatal(err)
		}
	}
	if got := h.sum / float64(nw*T); math.Abs(got-exp.Loss64) > 1e-5*exp.Loss64 {
		t.Errorf("mean loss through ForwardHidden + HeadLogits = %.9g; want %.9g (rel 1e-5)", got, exp.Loss64)
	}
}

// A teacher's logits in lockstep with a student's head: the teacher, a
// forward-only model over a trained model's weights, runs ForwardHidden once
// over the batch; the student's HeadFunc then asks it for the logits of the
// same rows, chunk by chunk, and a loss compares the two (here it leaves a
// zero gradient).
func ExampleModel_HeadLogits() {
	cfg := Config{Vocab: 8, NEmbd: 16, NLayer: 1, NHead: 2, Ctx: 4}
	pool := kernels.NewPool(1)
	trained, _ := New(cfg, pool)
	trained.Init(1)
	teacher, _ := NewInference(cfg, trained.Params, pool) // shares the weights, no gradient
	student, _ := New(cfg, pool)
	student.Init(2)

	tokens := []int32{1, 2, 3, 4, 5, 6, 7, 0} // [B=2, T=4]
	if err := teacher.ForwardHidden(tokens, 2, 4); err != nil {
		fmt.Println(err)
		return
	}
	buf := make([]float32, 2*4*cfg.Vocab) // at most one chunk of rows
	student.ZeroGrad()
	err := student.ForwardBackward(tokens, 2, 4, func(logits []float32, first, rows int) error {
		t := buf[:rows*cfg.Vocab]
		teacher.HeadLogits(t, first, rows)
		fmt.Printf("rows %d..%d: %d student and %d teacher logits\n", first, first+rows, len(logits), len(t))
		clear(logits) // dL/dlogits of the loss would go here
		return nil
	})
	fmt.Println(err)
	// Output:
	// rows 0..8: 64 student and 64 teacher logits
	// <nil>
}
