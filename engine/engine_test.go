package engine

import (
	"context"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/klring/klring/kernels"
	"github.com/klring/klring/lm"
	"github.com/klring/klring/loss"
	"github.com/klring/klring/shard"
	"github.com/klring/klring/tokenizer"
)

const golden = "testdata/gpt_micro"

// loadGrads reads golden d(mean loss)/d(parameter), which has the model's
// keys, through the checkpoint reader (it transposes the Conv1D matrices).
func loadGrads(t *testing.T, pool *kernels.Pool) []float32 {
	t.Helper()
	dir := t.TempDir()
	for _, f := range [][2]string{{"config.json", lm.ConfigFile}, {"grads.safetensors", lm.ModelFile}} {
		b, err := os.ReadFile(filepath.Join(golden, f[0]))
		if err != nil {
			t.Fatal(err)
		}
		os.WriteFile(filepath.Join(dir, f[1]), b, 0o644)
	}
	g, _, err := lm.LoadCheckpoint(dir, pool)
	if err != nil {
		t.Fatal(err)
	}
	return g.Params
}

// The engine's gradient (lm's backward from loss/'s fused cross-entropy
// gradient) over the golden windows, divided by the token count, is
// PyTorch's gradient of the mean loss, tensor by tensor.
func TestGradientMatchesPyTorch(t *testing.T) {
	pool := kernels.NewPool(2)
	model, _, err := lm.LoadCheckpoint(golden, pool)
	if err != nil {
		t.Fatal(err)
	}
	data, err := shard.Open(shard.Options{Source: "tokens:" + filepath.Join(golden, "tokens.bin"), Ctx: 8, Vocab: 64})
	if err != nil {
		t.Fatal(err)
	}
	defer data.Close()
	e, err := New(Options{Loss: loss.DefaultOptions(), Target: TargetHard, MaxWindows: 6}, model, data, pool)
	if err != nil {
		t.Fatal(err)
	}
	s, err := e.Gradient(context.Background(), []int32{0, 1, 2, 3, 4, 5}, 1)
	if err != nil {
		t.Fatal(err)
	}
	var want struct {
		Loss float64 `json:"mean_loss_float64"`
	}
	b, _ := os.ReadFile(filepath.Join(golden, "expected.json"))
	if err := json.Unmarshal(b, &want); err != nil {
		t.Fatal(err)
	}
	if s.Tokens != 48 {
		t.Fatalf("%d tokens; want 48", s.Tokens)
	}
	if got := s.Loss / 48; math.Abs(got-want.Loss) > 1e-5*want.Loss {
		t.Errorf("mean loss %.9f; PyTorch %.9f", got, want.Loss)
	}
	ref := loadGrads(t, pool)
	for _, ts := range model.Layout() {
		g, r := ts.View(model.Grads), ts.View(ref)
		var diff, norm float64
		for i := range g {
			d := float64(g[i])/48 - float64(r[i])
			diff += d * d
			norm += float64(r[i]) * float64(r[i])
		}
		if math.Sqrt(diff) > 1e-4*math.Sqrt(norm) {
			t.Errorf("%s: |engine - PyTorch| = %.3g, %.2g of the tensor's norm %.3g", ts.Name, math.Sqrt(diff), math.Sqrt(diff/norm), math.Sqrt(norm))
		}
	}
}

// With a byte tokenizer every target token is one byte: bits per byte is
// the cross-entropy over ln 2, exactly.
func TestBitsPerByteOfBytes(t *testing.T) {
	pool := kernels.NewPool(1)
	path := filepath.Join(t.TempDir(), "t.txt")
	os.WriteFile(path, []byte(strings.Repeat("klring trains tiny language models. ", 40)), 0o644)
	data, err := OpenData(context.Background(), DataRequest{Options: shard.Options{Source: "text:" + path, Ctx: 16, ValFraction: 0.2, Seed: 1}}, t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	m, err := lm.New(lm.Config{Vocab: 256, Ctx: 16, NEmbd: 16, NLayer: 1, NHead: 2}, pool)
	if err != nil {
		t.Fatal(err)
	}
	m.Init(3)
	tok, _ := tokenizer.New(tokenizer.NameBytes)
	e, err := New(Options{Loss: loss.DefaultOptions(), Target: TargetHard, MaxWindows: 4, TokenBytes: tok.TokenBytes}, m, data, pool)
	if err != nil {
		t.Fatal(err)
	}
	ev, err := e.Evaluate(data.ValWindows())
	if err != nil {
		t.Fatal(err)
	}
	if ev.Bytes != int64(ev.Tokens) || math.Abs(ev.BPB-ev.CE/math.Ln2) > 1e-12 {
		t.Errorf("bytes %d for %d tokens, bits per byte %v; want CE/ln2 = %v", ev.Bytes, ev.Tokens, ev.BPB, ev.CE/math.Ln2)
	}
}

// Text through GPT-2's tokenizer: each target token counts the bytes it
// decodes to, so the held-out bytes are the text of the held-out targets.
func TestOpenDataTokenizesText(t *testing.T) {
	path := filepath.Join(t.TempDir(), "t.txt")
	text := strings.Repeat("Hello world, the quick brown fox. ", 200)
	os.WriteFile(path, []byte(text), 0o644)
	cache := t.TempDir()
	d, err := OpenData(context.Background(), DataRequest{Options: shard.Options{Source: "text:" + path, Ctx: 8, Seed: 1}, Tokenizer: "gpt2"}, cache, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	tok, _ := tokenizer.New("gpt2")
	want := tok.Encode([]byte(text))
	if d.Vocab() != 50257 || d.NumTokens() != len(want) {
		t.Fatalf("vocabulary %d, %d tokens; want 50257 and %d", d.Vocab(), d.NumTokens(), len(want))
	}
	w := make([]int32, 9)
	d.Window(0, w)
	for i := range w {
		if w[i] != want[i] {
			t.Fatalf("window 0 = %v; the text's ids start %v", w, want[:9])
		}
	}
	// The second open reads the cache.
	d2, err := OpenData(context.Background(), DataRequest{Options: shard.Options{Source: "text:" + path, Ctx: 8, Seed: 1}, Tokenizer: "gpt2"}, cache, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer d2.Close()
	if d2.Fingerprint() != d.Fingerprint() {
		t.Errorf("a cached tokenization differs: %s", d.Fingerprint().Diff(d2.Fingerprint()))
	}
}

// A checkpoint that names GPT-2's tokenizer is sampled from text to text.
func TestSampleWithTheCheckpointsTokenizer(t *testing.T) {
	pool := kernels.NewPool(1)
	m, err := lm.New(lm.Config{Vocab: 50257, Ctx: 16, NEmbd: 8, NLayer: 1, NHead: 1}, pool)
	if err != nil {
		t.Fatal(err)
	}
	m.Init(1)
	dir := t.TempDir()
	if err := lm.SaveCheckpoint(dir, m, nil); err != nil {
		t.Fatal(err)
	}
	if err := WriteTokenizerConfig(dir, "gpt2", 16); err != nil {
		t.Fatal(err)
	}
	out, err := SampleCheckpoint(context.Background(), SampleRequest{Checkpoint: dir, Prompt: "Hello world", Tokens: 5, Temperature: 1, Seed: 2})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(out, "Hello world") || len(out) <= len("Hello world") {
		t.Errorf("sample %q; want the prompt and more text", out)
	}
}

// The entropy of a model's distribution: log V for a model whose logits are
// all equal (zero weights), and less once it has learned anything.
func TestEvaluateEntropy(t *testing.T) {
	pool := kernels.NewPool(1)
	data, err := shard.Open(shard.Options{Source: "synthetic", Ctx: 8, Tokens: 4096, ValFraction: 0.1, Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer data.Close()
	m, err := lm.New(lm.Config{Vocab: 64, Ctx: 8, NEmbd: 8, NLayer: 1, NHead: 1}, pool)
	if err != nil {
		t.Fatal(err)
	}
	e, err := New(Options{Loss: loss.DefaultOptions(), Target: TargetSoft, MaxWindows: 4}, m, data, pool)
	if err != nil {
		t.Fatal(err)
	}
	ev, err := e.Evaluate(data.ValWindows())
	if err != nil {
		t.Fatal(err)
	}
	if math.Abs(ev.Entropy-math.Log(64)) > 1e-5 {
		t.Errorf("entropy of a model with zero weights %v; want log 64 = %v", ev.Entropy, math.Log(64))
	}
	m.Init(1)
	if ev, _ = e.Evaluate(data.ValWindows()); !(ev.Entropy < math.Log(64)) || !(ev.Entropy > 0) {
		t.Errorf("entropy of an initialised model %v; want in (0, log 64)", ev.Entropy)
	}
}
