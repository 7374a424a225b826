package lm

import (
	"context"
	"encoding/json"
	"errors"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/klring/klring/kernels"
)

// padPair is a model padded to a multiple of pad and the same model
// unpadded, both from Init(seed).
func padPair(t *testing.T, cfg Config, pad int, seed uint64) (plain, padded *Model) {
	t.Helper()
	cfg.VocabPad = 0
	plain = newMicro(t, cfg, 1, seed)
	cfg.VocabPad = pad
	padded = newMicro(t, cfg, 1, seed)
	return plain, padded
}

// realPart is buf of a model laid out by layout with the padded rows cut
// out: the unpadded model's flat buffer.
func realPart(layout []Tensor, buf []float32) []float32 {
	var out []float32
	for _, ts := range layout {
		out = append(out, ts.View(buf)[:ts.FileSize()]...)
	}
	return out
}

// padPart is the padded rows of wte in buf.
func padPart(layout []Tensor, buf []float32) []float32 {
	w := layout[0]
	return w.View(buf)[w.FileSize():]
}

func bitsOf(v []float32) []uint32 {
	u := make([]uint32, len(v))
	for i, x := range v {
		u[i] = math.Float32bits(x)
	}
	return u
}

func allZeroBits(v []float32) bool {
	for _, x := range v {
		if math.Float32bits(x) != 0 {
			return false
		}
	}
	return true
}

func TestVocabPadLayout(t *testing.T) {
	cfg := Config{Vocab: 250, NEmbd: 16, NLayer: 2, NHead: 2, Ctx: 8}
	plain := cfg.NumParams()
	for _, c := range []struct{ pad, vp int }{{0, 250}, {1, 250}, {64, 256}, {50, 250}, {125, 250}, {100, 300}, {1024, 1024}} {
		cfg.VocabPad = c.pad
		if got := cfg.PaddedVocab(); got != c.vp {
			t.Errorf("vocab 250 pad %d: PaddedVocab() = %d; want %d", c.pad, got, c.vp)
		}
		if got, want := cfg.NumParams(), plain+(c.vp-250)*16; got != want {
			t.Errorf("vocab 250 pad %d: NumParams() = %d; want %d", c.pad, got, want)
		}
		l := cfg.Layout()
		w := l[0]
		if !slices.Equal(w.Shape, []int{c.vp, 16}) || w.PadRows != c.vp-250 || !slices.Equal(w.FileShape(), []int{250, 16}) || w.FileSize() != 250*16 {
			t.Errorf("pad %d: wte %+v, file shape %v, file size %d; want shape [%d 16], file shape [250 16]", c.pad, w, w.FileShape(), w.FileSize(), c.vp)
		}
		if l[1].Offset != c.vp*16 {
			t.Errorf("pad %d: wpe at %d; want %d", c.pad, l[1].Offset, c.vp*16)
		}
		for _, ts := range l[1:] {
			if ts.PadRows != 0 || ts.FileSize() != ts.Size {
				t.Errorf("pad %d: %s has padding", c.pad, ts.Name)
			}
		}
	}
	if n := (Config{Vocab: 50257, NEmbd: 768, NLayer: 12, NHead: 12, Ctx: 1024, VocabPad: 64}); n.PaddedVocab() != 50304 || n.NumParams() != 124475904 {
		t.Errorf("GPT-2 124M padded to 64: Vp %d, %d parameters; want 50304 and llm.c's 124475904", n.PaddedVocab(), n.NumParams())
	}
	for _, pad := range []int{-1, MaxVocabPad + 1} {
		cfg.VocabPad = pad
		if err := cfg.Validate(); !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), "vocab_pad") {
			t.Errorf("Validate(vocab_pad %d) = %v; want ErrConfig naming vocab_pad", pad, err)
		}
	}
}

// A padded model is the unpadded one: the same Init, the same loss, the same
// gradient on the real rows bit for bit, a zero gradient on the padded rows,
// and logits over the V real rows only.
func TestVocabPadSameLossAndGrads(t *testing.T) {
	for _, c := range []struct{ vocab, pad int }{{250, 64}, {100, 64}, {100, 128}, {37, 16}} {
		cfg := Config{Vocab: c.vocab, NEmbd: 16, NLayer: 2, NHead: 2, Ctx: 8}
		plain, padded := padPair(t, cfg, c.pad, 7)
		if padded.Config.PaddedVocab() == c.vocab {
			t.Fatalf("vocab %d pad %d: no padding to test", c.vocab, c.pad)
		}
		pl := padded.Layout()
		if !slices.Equal(bitsOf(realPart(pl, padded.Params)), bitsOf(plain.Params)) {
			t.Fatalf("vocab %d pad %d: Init differs from the unpadded model's", c.vocab, c.pad)
		}
		if !allZeroBits(padPart(pl, padded.Params)) {
			t.Fatalf("vocab %d pad %d: Init left padded rows non-zero", c.vocab, c.pad)
		}
		B, T := 3, 8
		r := NewRNG(3)
		toks, tgts := randTokens(r, B*T, c.vocab), randTokens(r, B*T, c.vocab)
		toks[0] = int32(c.vocab - 1) // the last real row is read and trained
		run := func(m *Model) float64 {
			m.ZeroGrad()
			h := &ceHead{targets: tgts, V: c.vocab, scale: 1 / float32(B*T)}
			head := func(logits []float32, first, rows int) error {
				if len(logits) != rows*c.vocab {
					t.Fatalf("vocab %d pad %d: head got %d logits for %d rows; want rows*V", c.vocab, c.pad, len(logits), rows)
				}
				return h.backward(logits, first, rows)
			}
			if err := m.ForwardBackward(toks, B, T, head); err != nil {
				t.Fatal(err)
			}
			return h.sum
		}
		lp, lq := run(plain), run(padded)
		if math.Float64bits(lp) != math.Float64bits(lq) {
			t.Errorf("vocab %d pad %d: loss %v; unpadded %v", c.vocab, c.pad, lq, lp)
		}
		if !slices.Equal(bitsOf(realPart(pl, padded.Grads)), bitsOf(plain.Grads)) {
			t.Errorf("vocab %d pad %d: gradient on the real rows differs from the unpadded model's", c.vocab, c.pad)
		}
		if !allZeroBits(padPart(pl, padded.Grads)) {
			t.Errorf("vocab %d pad %d: padded rows have a gradient", c.vocab, c.pad)
		}
		// Ids of padded rows are not tokens.
		bad := slices.Clone(toks)
		bad[5] = int32(c.vocab)
		if err := padded.Forward(bad, B, T, func([]float32, int, int) error { return nil }); !errors.Is(err, ErrTokenRange) {
			t.Errorf("vocab %d pad %d: Forward with token %d = %v; want ErrTokenRange", c.vocab, c.pad, c.vocab, err)
		}
	}
}

// Padded rows stay exactly zero through AdamW with weight decay and
// clipping; the real rows follow the unpadded model's.
func TestVocabPadStaysZeroUnderAdamW(t *testing.T) {
	cfg := Config{Vocab: 100, NEmbd: 16, NLayer: 1, NHead: 2, Ctx: 8}
	plain, padded := padPair(t, cfg, 64, 11)
	B, T := 2, 8
	r := NewRNG(5)
	toks, tgts := randTokens(r, B*T, cfg.Vocab), randTokens(r, B*T, cfg.Vocab)
	opts := DefaultAdamWOptions()
	opts.WeightDecay = 0.1
	pool := kernels.NewPool(1)
	po, _ := NewAdamW(plain.Layout(), opts, pool)
	qo, err := NewAdamW(padded.Layout(), opts, pool)
	if err != nil {
		t.Fatal(err)
	}
	pl := padded.Layout()
	for s := 0; s < 6; s++ {
		for _, mo := range []struct {
			m *Model
			o *AdamW
		}{{plain, po}, {padded, qo}} {
			mo.m.ZeroGrad()
			h := &ceHead{targets: tgts, V: cfg.Vocab, scale: 1 / float32(B*T)}
			if err := mo.m.ForwardBackward(toks, B, T, h.backward); err != nil {
				t.Fatal(err)
			}
			mo.o.StepClip(mo.m.Params, mo.m.Grads, 1e-2, 0.5)
		}
		if !allZeroBits(padPart(pl, padded.Params)) || !allZeroBits(padPart(pl, qo.State.M)) || !allZeroBits(padPart(pl, qo.State.V)) {
			t.Fatalf("step %d: padded rows (or their moments) are no longer zero", s)
		}
	}
	got := realPart(pl, padded.Params)
	for i, want := range plain.Params {
		if d := math.Abs(float64(got[i] - want)); d > 1e-6 {
			t.Fatalf("param %d after 6 steps = %g; unpadded model %g", i, got[i], want)
		}
	}
}

func TestVocabPadCheckpoint(t *testing.T) {
	cfg := Config{Vocab: 100, NEmbd: 16, NLayer: 1, NHead: 2, Ctx: 8, VocabPad: 64}
	m := newMicro(t, cfg, 1, 3)
	opt, _ := NewAdamW(m.Layout(), DefaultAdamWOptions(), kernels.NewPool(1))
	B, T := 2, 8
	r := NewRNG(9)
	toks, tgts := randTokens(r, B*T, cfg.Vocab), randTokens(r, B*T, cfg.Vocab)
	h := &ceHead{targets: tgts, V: cfg.Vocab, scale: 1 / float32(B*T)}
	m.ZeroGrad()
	if err := m.ForwardBackward(toks, B, T, h.backward); err != nil {
		t.Fatal(err)
	}
	opt.Step(m.Params, m.Grads, 1e-2)
	dir := t.TempDir()
	if err := SaveCheckpoint(dir, m, &TrainerState{Step: 1, Adam: &opt.State}); err != nil {
		t.Fatal(err)
	}
	// The files hold the Hugging Face layout with V rows.
	for _, c := range []struct{ file, key string }{{ModelFile, "wte.weight"}, {OptimizerFile, "m.wte.weight"}, {OptimizerFile, "v.wte.weight"}} {
		b, err := os.ReadFile(filepath.Join(dir, c.file))
		if err != nil {
			t.Fatal(err)
		}
		f, err := parseSafetensors(b)
		if err != nil {
			t.Fatal(err)
		}
		if e := f.tensors[c.key]; !slices.Equal(e.shape, []int{100, 16}) {
			t.Errorf("%s %s has shape %v; want [100 16]", c.file, c.key, e.shape)
		}
	}
	hc, err := ReadConfig(filepath.Join(dir, ConfigFile))
	if err != nil || hc.Vocab != 100 || hc.VocabPad != 0 {
		t.Errorf("config.json reads as %+v, %v; want vocab 100 (no padding: it is Hugging Face's)", hc, err)
	}
	got, st, err := LoadCheckpoint(dir, kernels.NewPool(1))
	if err != nil {
		t.Fatal(err)
	}
	if got.Config != cfg {
		t.Errorf("loaded config %+v; want %+v", got.Config, cfg)
	}
	if !slices.Equal(bitsOf(got.Params), bitsOf(m.Params)) {
		t.Error("loaded parameters differ from the saved ones")
	}
	if !slices.Equal(bitsOf(st.Adam.M), bitsOf(opt.State.M)) || !slices.Equal(bitsOf(st.Adam.V), bitsOf(opt.State.V)) {
		t.Error("loaded moments differ from the saved ones")
	}

	// A trainer_state.json whose padding disagrees with num_params is refused.
	js, _ := os.ReadFile(filepath.Join(dir, TrainerStateFile))
	var tf map[string]any
	if err := json.Unmarshal(js, &tf); err != nil || tf["vocab_pad"] != float64(64) {
		t.Fatalf("trainer_state.json %s: vocab_pad not 64", js)
	}
	tf["vocab_pad"] = 256
	js, _ = json.Marshal(tf)
	if err := os.WriteFile(filepath.Join(dir, TrainerStateFile), js, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, _, err := LoadCheckpoint(dir, kernels.NewPool(1)); !errors.Is(err, ErrCheckpoint) || !strings.Contains(err.Error(), "num_params") {
		t.Errorf("LoadCheckpoint(vocab_pad 256, num_params of 64) = %v; want ErrCheckpoint naming num_params", err)
	}
}

// A checkpoint without padding (a Hugging Face folder) becomes a padded
// model through WithVocabPad: padded rows zero, the same loss and samples;
// and back again.
func TestVocabPadFromUnpaddedCheckpoint(t *testing.T) {
	cfg := Config{Vocab: 250, NEmbd: 16, NLayer: 1, NHead: 2, Ctx: 8}
	src := newMicro(t, cfg, 1, 13)
	dir := t.TempDir()
	if err := SaveCheckpoint(dir, src, nil); err != nil {
		t.Fatal(err)
	}
	loaded, _, err := LoadCheckpoint(dir, kernels.NewPool(1))
	if err != nil {
		t.Fatal(err)
	}
	if loaded.Config.VocabPad != 0 {
		t.Fatalf("a folder without trainer state loads with vocab_pad %d; want 0", loaded.Config.VocabPad)
	}
	padded, err := loaded.WithVocabPad(64)
	if err != nil {
		t.Fatal(err)
	}
	if padded.Config.VocabPad != 64 || len(padded.Params) != cfg.NumParams()+6*16 {
		t.Fatalf("WithVocabPad(64): config %+v, %d parameters", padded.Config, len(padded.Params))
	}
	pl := padded.Layout()
	if !slices.Equal(bitsOf(realPart(pl, padded.Params)), bitsOf(src.Params)) || !allZeroBits(padPart(pl, padded.Params)) {
		t.Fatal("WithVocabPad(64): real rows differ or padded rows not zero")
	}
	if same, _ := padded.WithVocabPad(64); same != padded {
		t.Error("WithVocabPad with the model's own padding made a new model")
	}
	back, err := padded.WithVocabPad(0)
	if err != nil || !slices.Equal(bitsOf(back.Params), bitsOf(src.Params)) {
		t.Fatalf("WithVocabPad(0) of the padded model: %v, or parameters differ", err)
	}
	if _, err := padded.WithVocabPad(-3); !errors.Is(err, ErrConfig) {
		t.Errorf("WithVocabPad(-3) = %v; want ErrConfig", err)
	}

	// Sampling never draws a padded id and draws what the unpadded model does.
	prompt := []int32{1, 2, 3}
	for _, o := range []SampleOptions{{Temperature: 0}, {Temperature: 2, Seed: 4}} {
		a, err := src.Sample(context.Background(), prompt, 20, o)
		if err != nil {
			t.Fatal(err)
		}
		b, err := padded.Sample(context.Background(), prompt, 20, o)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(a, b) {
			t.Errorf("sample %+v: padded %v; unpadded %v", o, b, a)
		}
		for _, id := range b {
			if id < 0 || int(id) >= cfg.Vocab {
				t.Errorf("sample %+v drew id %d, outside the vocabulary %d", o, id, cfg.Vocab)
			}
		}
	}
}

// A padded model's weights serve as a teacher (NewInference over its
// Params): HeadLogits gives the unpadded model's V logits per row, bit for bit.
func TestVocabPadInference(t *testing.T) {
	cfg := Config{Vocab: 100, NEmbd: 16, NLayer: 1, NHead: 2, Ctx: 8}
	plain, padded := padPair(t, cfg, 64, 17)
	inf, err := NewInference(padded.Config, padded.Params, kernels.NewPool(1))
	if err != nil {
		t.Fatal(err)
	}
	B, T := 2, 8
	toks := randTokens(NewRNG(1), B*T, cfg.Vocab)
	var out [2][]float32
	for i, m := range []*Model{plain, inf} {
		if err := m.ForwardHidden(toks, B, T); err != nil {
			t.Fatal(err)
		}
		out[i] = make([]float32, B*T*cfg.Vocab)
		m.HeadLogits(out[i], 0, B*T)
	}
	if !slices.Equal(bitsOf(out[0]), bitsOf(out[1])) {
		t.Error("HeadLogits of the padded teacher differ from the unpadded model's")
	}
}
