package lm

import (
	"context"
	"errors"
	"math"
	"runtime"
	"slices"
	"strings"
	"testing"

	"github.com/klring/klring/kernels"
)

var micro = Config{Vocab: 11, NEmbd: 8, NLayer: 2, NHead: 2, Ctx: 6}

func newMicro(t testing.TB, cfg Config, threads int, seed uint64) *Model {
	t.Helper()
	m, err := New(cfg, kernels.NewPool(threads))
	if err != nil {
		t.Fatalf("New(%+v) = %v", cfg, err)
	}
	m.Init(seed)
	return m
}

func randTokens(r *RNG, n, V int) []int32 {
	toks := make([]int32, n)
	for i := range toks {
		toks[i] = int32(r.Uint64() % uint64(V))
	}
	return toks
}

func TestConfigValidate(t *testing.T) {
	ok := Config{Vocab: 64, NEmbd: 32, NLayer: 2, NHead: 4, Ctx: 8}
	for _, c := range []struct {
		name string
		edit func(*Config)
		want string // "" for valid
	}{
		{"valid", func(*Config) {}, ""},
		{"zero vocab", func(c *Config) { c.Vocab = 0 }, "vocab = 0"},
		{"negative embd", func(c *Config) { c.NEmbd = -1 }, "n_embd = -1"},
		{"zero layers", func(c *Config) { c.NLayer = 0 }, "n_layer = 0"},
		{"zero heads", func(c *Config) { c.NHead = 0 }, "n_head = 0"},
		{"zero ctx", func(c *Config) { c.Ctx = 0 }, "ctx = 0"},
		{"heads do not divide", func(c *Config) { c.NHead = 5 }, "not a multiple"},
		{"huge", func(c *Config) { c.NEmbd, c.NHead, c.Vocab = 1<<20, 1, 1<<20 }, "parameters"},
	} {
		cfg := ok
		c.edit(&cfg)
		err := cfg.Validate()
		if c.want == "" {
			if err != nil {
				t.Errorf("%s: Validate(%+v) = %v; want nil", c.name, cfg, err)
			}
			continue
		}
		if !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: Validate(%+v) = %v; want ErrConfig mentioning %q", c.name, cfg, err, c.want)
		}
	}
}

func TestPreset(t *testing.T) {
	for _, c := range []struct {
		name string
		want Config
	}{
		{"tiny", Config{NEmbd: 128, NLayer: 4, NHead: 4, Ctx: 128}},
		{"small", Config{NEmbd: 256, NLayer: 6, NHead: 8, Ctx: 256}},
	} {
		got, err := Preset(c.name)
		if err != nil || got != c.want {
			t.Errorf("Preset(%q) = %+v, %v; want %+v", c.name, got, err, c.want)
		}
	}
	if _, err := Preset("huge"); !errors.Is(err, ErrConfig) {
		t.Errorf("Preset(huge) = %v; want ErrConfig", err)
	}
}

func TestLayout(t *testing.T) {
	cfg := Config{Vocab: 64, NEmbd: 32, NLayer: 2, NHead: 4, Ctx: 8}
	layout := cfg.Layout()
	if len(layout) != 2+12*cfg.NLayer+2 {
		t.Fatalf("len(Layout()) = %d; want %d", len(layout), 2+12*cfg.NLayer+2)
	}
	off := 0
	names := map[string]bool{}
	for _, ten := range layout {
		n := 1
		for _, d := range ten.Shape {
			n *= d
		}
		if ten.Offset != off || ten.Size != n {
			t.Errorf("%s: offset %d size %d; want offset %d size %d", ten.Name, ten.Offset, ten.Size, off, n)
		}
		off += n
		if names[ten.Name] {
			t.Errorf("%s twice in the layout", ten.Name)
		}
		names[ten.Name] = true
		if ten.Decay != (len(ten.Shape) == 2) {
			t.Errorf("%s: Decay = %v; want %v (2-D tensors decay)", ten.Name, ten.Decay, len(ten.Shape) == 2)
		}
	}
	if off != cfg.NumParams() {
		t.Errorf("layout sums to %d; NumParams() = %d", off, cfg.NumParams())
	}
	// The names and file shapes of the golden checkpoint.
	for _, c := range []struct {
		name  string
		shape []int
	}{
		{"wte.weight", []int{64, 32}}, {"wpe.weight", []int{8, 32}},
		{"h.1.attn.c_attn.weight", []int{32, 96}}, {"h.0.mlp.c_fc.weight", []int{32, 128}},
		{"h.0.mlp.c_proj.weight", []int{128, 32}}, {"ln_f.bias", []int{32}},
	} {
		i := slices.IndexFunc(layout, func(x Tensor) bool { return x.Name == c.name })
		if i < 0 || !slices.Equal(layout[i].FileShape(), c.shape) {
			t.Errorf("Layout() entry %q: %+v; want file shape %v", c.name, layout, c.shape)
		}
	}
}

func TestGradsHaveTwoTrailingSlots(t *testing.T) {
	m := newMicro(t, micro, 1, 1)
	n := micro.NumParams()
	if len(m.Grads) != n || cap(m.Grads) != n+2 {
		t.Fatalf("len, cap(Grads) = %d, %d; want %d, %d", len(m.Grads), cap(m.Grads), n, n+2)
	}
	full := m.Grads[:n+2]
	full[n], full[n+1] = 3, 4
	m.ZeroGrad()
	if full[n] != 0 || full[n+1] != 0 {
		t.Errorf("ZeroGrad left the trailing slots %v", full[n:])
	}
}

func TestInitDeterministicAndScaled(t *testing.T) {
	cfg := Config{Vocab: 300, NEmbd: 64, NLayer: 8, NHead: 4, Ctx: 32}
	a, b := newMicro(t, cfg, 1, 7), newMicro(t, cfg, 2, 7)
	if !slices.Equal(a.Params, b.Params) {
		t.Fatal("Init(7) twice gave different parameters")
	}
	c := newMicro(t, cfg, 1, 8)
	if slices.Equal(a.Params, c.Params) {
		t.Fatal("Init(7) and Init(8) gave the same parameters")
	}
	for _, ten := range a.layout {
		v := ten.View(a.Params)
		var s, s2 float64
		for _, x := range v {
			s += float64(x)
			s2 += float64(x) * float64(x)
		}
		mean, std := s/float64(len(v)), math.Sqrt(s2/float64(len(v)))
		if ten.Std == 0 {
			if mean != float64(ten.Fill) || std != math.Abs(float64(ten.Fill)) {
				t.Errorf("%s: mean %g rms %g; want constant %g", ten.Name, mean, std, ten.Fill)
			}
			continue
		}
		want := 0.02
		if strings.HasSuffix(ten.Name, "c_proj.weight") {
			want = 0.02 / math.Sqrt(2*float64(cfg.NLayer))
		}
		if ten.Std != want || math.Abs(std-want) > 0.1*want || math.Abs(mean) > 0.1*want {
			t.Errorf("%s: std %g (table %g), mean %g; want std %g, mean 0", ten.Name, std, ten.Std, mean, want)
		}
	}
}

// TestModelFiniteDifference checks the whole model's gradient (a sum of
// cross-entropies) against central differences, tensor by tensor.
func TestModelFiniteDifference(t *testing.T) {
	m := newMicro(t, micro, 2, 3)
	for i := range m.Params { // larger weights: every path nonlinear
		m.Params[i] *= 5
	}
	for i, ten := range m.layout {
		if ten.Std == 0 { // LayerNorm and biases away from 1 and 0
			v := ten.View(m.Params)
			r := NewRNG(uint64(i))
			for j := range v {
				v[j] += float32(0.3 * r.NormFloat64())
			}
		}
	}
	B, T := 2, 5
	r := NewRNG(4)
	toks := randTokens(r, B*T, micro.Vocab)
	tgts := randTokens(r, B*T, micro.Vocab)
	m.ZeroGrad()
	h := &ceHead{targets: tgts, V: micro.Vocab, scale: 1}
	if err := m.ForwardBackward(toks, B, T, h.backward); err != nil {
		t.Fatal(err)
	}
	loss := func() float64 {
		fh := &ceHead{targets: tgts, V: micro.Vocab}
		if err := m.Forward(toks, B, T, fh.forward); err != nil {
			t.Fatal(err)
		}
		return fh.sum
	}
	var probes []probe
	for _, ten := range m.layout {
		probes = append(probes, probe{ten.Name, ten.View(m.Params), ten.View(m.Grads)})
	}
	checkDirectional(t, "model", probes, loss, 3e-3, 1e-2, 1e-3)
}

func TestThreadsDoNotChangeResults(t *testing.T) {
	cfg := Config{Vocab: 50, NEmbd: 32, NLayer: 2, NHead: 4, Ctx: 80}
	B, T := 3, 80
	r := NewRNG(9)
	toks, tgts := randTokens(r, B*T, cfg.Vocab), randTokens(r, B*T, cfg.Vocab)
	var grads [][]float32
	for _, threads := range []int{1, 2, 3} {
		m := newMicro(t, cfg, threads, 11)
		h := &ceHead{targets: tgts, V: cfg.Vocab, scale: 1}
		if err := m.ForwardBackward(toks, B, T, h.backward); err != nil {
			t.Fatal(err)
		}
		grads = append(grads, m.Grads)
	}
	// Sgemm may sum in a different order on another split; the rest is exact.
	for k := 1; k < len(grads); k++ {
		for i := range grads[0] {
			if d := math.Abs(float64(grads[k][i] - grads[0][i])); d > 1e-5*(1+math.Abs(float64(grads[0][i]))) {
				t.Fatalf("threads %d: grad[%d] = %g; want %g (1 thread)", k+1, i, grads[k][i], grads[0][i])
			}
		}
	}
}

// TestHeadChunks runs a vocabulary large enough that the head is cut into
// chunks and checks the chunks cover every row once and the result matches
// one big chunk.
func TestHeadChunks(t *testing.T) {
	cfg := Config{Vocab: 40000, NEmbd: 8, NLayer: 1, NHead: 2, Ctx: 50}
	B, T := 12, 50 // 600 rows; chunks of max(256, 2^20/V) = 256 rows
	r := NewRNG(2)
	toks, tgts := randTokens(r, B*T, cfg.Vocab), randTokens(r, B*T, cfg.Vocab)
	m := newMicro(t, cfg, 2, 5)
	seen := make([]int, B*T)
	var chunks []int
	h := &ceHead{targets: tgts, V: cfg.Vocab, scale: 1}
	err := m.ForwardBackward(toks, B, T, func(logits []float32, first, rows int) error {
		if len(logits) != rows*cfg.Vocab {
			t.Fatalf("head got %d logits for %d rows; want %d", len(logits), rows, rows*cfg.Vocab)
		}
		chunks = append(chunks, rows)
		for i := first; i < first+rows; i++ {
			seen[i]++
		}
		return h.backward(logits, first, rows)
	})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(chunks, []int{256, 256, 88}) {
		t.Errorf("head chunks = %v; want [256 256 88]", chunks)
	}
	for i, n := range seen {
		if n != 1 {
			t.Fatalf("row %d seen %d times; want 1", i, n)
		}
	}
	chunked := append([]float32(nil), m.Grads...)
	m.ZeroGrad()
	m.act.headRows = B * T // one chunk
	m.act.logits = make([]float32, B*T*cfg.Vocab)
	h = &ceHead{targets: tgts, V: cfg.Vocab, scale: 1}
	if err := m.ForwardBackward(toks, B, T, h.backward); err != nil {
		t.Fatal(err)
	}
	for i := range chunked {
		if d := math.Abs(float64(chunked[i] - m.Grads[i])); d > 1e-5*(1+math.Abs(float64(m.Grads[i]))) {
			t.Fatalf("chunked grad[%d] = %g; one chunk %g", i, chunked[i], m.Grads[i])
		}
	}
}

func TestBadTokensAndHeadErrors(t *testing.T) {
	m := newMicro(t, micro, 1, 1)
	toks := []int32{1, 2, 11, 3}
	err := m.ForwardBackward(toks, 1, 4, func([]float32, int, int) error { return nil })
	if !errors.Is(err, ErrTokenRange) {
		t.Errorf("ForwardBackward(token 11, vocab 11) = %v; want ErrTokenRange", err)
	}
	if slices.ContainsFunc(m.Grads, func(g float32) bool { return g != 0 }) {
		t.Error("a rejected batch changed Grads")
	}
	if err := m.Forward([]int32{-1}, 1, 1, nil); !errors.Is(err, ErrTokenRange) {
		t.Errorf("Forward(token -1) = %v; want ErrTokenRange", err)
	}
	boom := errors.New("boom")
	err = m.Forward([]int32{1, 2}, 1, 2, func([]float32, int, int) error { return boom })
	if !errors.Is(err, boom) {
		t.Errorf("Forward with a failing head = %v; want it wrapped", err)
	}
	for _, c := range []struct {
		name string
		f    func()
	}{
		{"T > ctx", func() { m.Forward(make([]int32, 7), 1, 7, nil) }},
		{"len != B*T", func() { m.Forward(make([]int32, 5), 2, 3, nil) }},
		{"replaced Params", func() {
			m2 := newMicro(t, micro, 1, 1)
			m2.Params = make([]float32, len(m2.Params))
			m2.Forward([]int32{1}, 1, 1, nil)
		}},
	} {
		func() {
			defer func() {
				if r := recover(); r == nil || !strings.HasPrefix(r.(string), "lm: ") {
					t.Errorf("%s: recover() = %v; want a panic prefixed lm:", c.name, r)
				}
			}()
			c.f()
		}()
	}
}

// TestNoAllocationPerStep: after the first step a training step (zero grad,
// forward, backward, AdamW) allocates nothing. The pool has one thread: with
// more, Pool.For starts goroutines, which is the pool's business.
func TestNoAllocationPerStep(t *testing.T) {
	// Head size 32 (attention on the tile kernel where the CPU has it) and
	// a vocabulary of 16 blocks (the blocked head backward).
	cfg := Config{Vocab: 16 * HeadVocabBlock, NEmbd: 64, NLayer: 2, NHead: 2, Ctx: 64}
	m := newMicro(t, cfg, 1, 1)
	B, T := 4, 64
	r := NewRNG(3)
	toks, tgts := randTokens(r, B*T, cfg.Vocab), randTokens(r, B*T, cfg.Vocab)
	opt, err := NewAdamW(m.Layout(), DefaultAdamWOptions(), kernels.NewPool(1))
	if err != nil {
		t.Fatal(err)
	}
	h := &ceHead{targets: tgts, V: cfg.Vocab, scale: 1 / float32(B*T)}
	head := h.backward
	step := func() {
		m.ZeroGrad()
		if err := m.ForwardBackward(toks, B, T, head); err != nil {
			t.Fatal(err)
		}
		opt.StepClip(m.Params, m.Grads, 1e-3, 1)
	}
	arena := checkNoAllocs(t, m, "HeadFunc", step)
	// A BlockHead, over this vocabulary and over a small one.
	bh := NewBlockCE(cfg.Vocab, B*T, -100)
	bh.Start(tgts, 1/float32(B*T))
	checkNoAllocs(t, m, "BlockHead", func() {
		m.ZeroGrad()
		if err := m.ForwardBackwardBlocks(toks, B, T, bh, nil); err != nil {
			t.Fatal(err)
		}
	})
	small := Config{Vocab: 50, NEmbd: 64, NLayer: 2, NHead: 2, Ctx: 64}
	ms := newMicro(t, small, 1, 1)
	stoks := randTokens(r, B*T, small.Vocab)
	sh := NewBlockCE(small.Vocab, B*T, -100)
	sh.Start(randTokens(r, B*T, small.Vocab), 1)
	checkNoAllocs(t, ms, "BlockHead, small vocabulary", func() {
		if err := ms.ForwardBackwardBlocks(stoks, B, T, sh, nil); err != nil {
			t.Fatal(err)
		}
	})
	// A smaller batch reuses the arena.
	if err := m.Forward(toks[:T], 1, T, func([]float32, int, int) error { return nil }); err != nil {
		t.Fatal(err)
	}
	if m.ArenaBytes() != arena {
		t.Errorf("a smaller batch resized the arena to %d bytes", m.ArenaBytes())
	}
}

// checkNoAllocs runs step once, then checks that it allocates nothing and
// leaves the arena as it was; it returns the arena's size.
func checkNoAllocs(t *testing.T, m *Model, name string, step func()) int {
	t.Helper()
	step()
	arena := m.ArenaBytes()
	allocs := testing.AllocsPerRun(5, step)
	// TotalAlloc counts every goroutine's allocations: one the rest of the
	// process makes now and then (a few bytes, seen in whole-package runs)
	// lands in one measurement, a step's lands in every one of three.
	var perStep float64
	for range 3 {
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		for range 5 {
			step()
		}
		runtime.ReadMemStats(&after)
		if perStep = float64(after.TotalAlloc-before.TotalAlloc) / 5; perStep == 0 {
			break
		}
	}
	t.Logf("%s: arena %d bytes; per step %.0f allocations, %.0f bytes", name, arena, allocs, perStep)
	if m.ArenaBytes() != arena {
		t.Errorf("%s: arena grew from %d to %d bytes", name, arena, m.ArenaBytes())
	}
	if allocs != 0 || perStep != 0 {
		t.Errorf("%s: a step allocates %.0f times, %.0f bytes; want 0", name, allocs, perStep)
	}
	return arena
}

// TestOverfit drives the loss of one small batch close to zero.
func TestOverfit(t *testing.T) {
	cfg := Config{Vocab: 16, NEmbd: 32, NLayer: 2, NHead: 4, Ctx: 8}
	m := newMicro(t, cfg, 2, 1)
	B, T := 2, 8
	r := NewRNG(6)
	toks, tgts := randTokens(r, B*T, cfg.Vocab), randTokens(r, B*T, cfg.Vocab)
	opts := DefaultAdamWOptions()
	opts.WeightDecay = 0
	opt, err := NewAdamW(m.Layout(), opts, kernels.NewPool(2))
	if err != nil {
		t.Fatal(err)
	}
	var first, last float64
	for step := 0; step < 300; step++ {
		m.ZeroGrad()
		h := &ceHead{targets: tgts, V: cfg.Vocab, scale: 1 / float32(B*T)}
		if err := m.ForwardBackward(toks, B, T, h.backward); err != nil {
			t.Fatal(err)
		}
		last = h.sum / float64(B*T)
		if step == 0 {
			first = last
		}
		opt.Step(m.Params, m.Grads, 3e-3)
	}
	if !(last < 0.05) {
		t.Errorf("mean loss after 300 steps = %.4g (from %.4g); want < 0.05", last, first)
	}
	t.Logf("overfit: loss %.4g -> %.4g", first, last)
}

func TestSample(t *testing.T) {
	m := newMicro(t, micro, 1, 1)
	for i := range m.Params {
		m.Params[i] *= 50 // peaked distributions
	}
	ctx := context.Background()
	prompt := []int32{1, 2, 3}
	a, err := m.Sample(ctx, prompt, 10, SampleOptions{Temperature: 1, TopK: 3, Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := m.Sample(ctx, prompt, 10, SampleOptions{Temperature: 1, TopK: 3, Seed: 1})
	if len(a) != 10 || !slices.Equal(a, b) {
		t.Errorf("Sample twice with seed 1 = %v, %v; want the same 10 tokens", a, b)
	}
	// Greedy equals top-1 and equals the argmax of a forward pass.
	g, _ := m.Sample(ctx, prompt, 10, SampleOptions{})
	k1, _ := m.Sample(ctx, prompt, 10, SampleOptions{Temperature: 1, TopK: 1, Seed: 5})
	if !slices.Equal(g, k1) {
		t.Errorf("greedy %v; top-1 %v; want equal", g, k1)
	}
	var arg int32
	m.Forward(prompt, 1, 3, func(l []float32, first, rows int) error {
		last := l[(rows-1)*micro.Vocab : rows*micro.Vocab]
		arg = int32(slices.Index(last, slices.Max(last)))
		return nil
	})
	if g[0] != arg {
		t.Errorf("greedy first token %d; want argmax %d", g[0], arg)
	}
	for _, c := range []struct {
		name   string
		prompt []int32
		n      int
		o      SampleOptions
		want   error
	}{
		{"empty prompt", nil, 1, SampleOptions{}, ErrSample},
		{"negative n", prompt, -1, SampleOptions{}, ErrSample},
		{"n too large", prompt, MaxSampleTokens + 1, SampleOptions{}, ErrSample},
		{"n overflowing", prompt, math.MaxInt, SampleOptions{}, ErrSample},
		{"negative temperature", prompt, 1, SampleOptions{Temperature: -1}, ErrSample},
		{"negative top-k", prompt, 1, SampleOptions{TopK: -1}, ErrSample},
		{"bad token", []int32{99}, 1, SampleOptions{}, ErrTokenRange},
	} {
		if _, err := m.Sample(ctx, c.prompt, c.n, c.o); !errors.Is(err, c.want) {
			t.Errorf("%s: Sample = %v; want %v", c.name, err, c.want)
		}
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := m.Sample(cctx, prompt, 5, SampleOptions{}); !errors.Is(err, context.Canceled) {
		t.Errorf("Sample with a cancelled context = %v; want context.Canceled", err)
	}
	// Prompts longer than ctx slide the window.
	long, err := m.Sample(ctx, randTokens(NewRNG(1), 20, micro.Vocab), 3, SampleOptions{Temperature: 0.7, Seed: 2})
	if err != nil || len(long) != 3 {
		t.Errorf("Sample(20-token prompt) = %v, %v; want 3 tokens", long, err)
	}
}

// TestGradientIsASumOverBatches: the gradient of a sum over tokens computed on
// the whole batch equals the sum of the gradients of its halves, accumulated
// by two calls (what lets N workers add their shards).
func TestGradientIsASumOverBatches(t *testing.T) {
	cfg := Config{Vocab: 30, NEmbd: 16, NLayer: 2, NHead: 2, Ctx: 12}
	B, T := 4, 12
	r := NewRNG(21)
	toks, tgts := randTokens(r, B*T, cfg.Vocab), randTokens(r, B*T, cfg.Vocab)
	whole := newMicro(t, cfg, 2, 4)
	h := &ceHead{targets: tgts, V: cfg.Vocab, scale: 1}
	if err := whole.ForwardBackward(toks, B, T, h.backward); err != nil {
		t.Fatal(err)
	}
	halves := newMicro(t, cfg, 2, 4)
	var sum float64
	for k := 0; k < 2; k++ {
		part := toks[k*2*T : (k+1)*2*T]
		hk := &ceHead{targets: tgts[k*2*T : (k+1)*2*T], V: cfg.Vocab, scale: 1}
		if err := halves.ForwardBackward(part, 2, T, hk.backward); err != nil {
			t.Fatal(err)
		}
		sum += hk.sum
	}
	if math.Abs(sum-h.sum) > 1e-9*h.sum {
		t.Errorf("loss of the halves = %.12g; whole batch %.12g", sum, h.sum)
	}
	for i := range whole.Grads {
		if d := math.Abs(float64(whole.Grads[i] - halves.Grads[i])); d > 1e-5*(1+math.Abs(float64(whole.Grads[i]))) {
			t.Fatalf("grad[%d]: halves %g; whole %g", i, halves.Grads[i], whole.Grads[i])
		}
	}
}
