package lm

import (
	"errors"
	"fmt"
)

// Sentinel errors of package lm, tested with errors.Is.
var (
	ErrConfig        = errors.New("lm: invalid config")
	ErrTokenRange    = errors.New("lm: token out of range")
	ErrSafetensors   = errors.New("lm: malformed safetensors")
	ErrDtype         = errors.New("lm: unsupported dtype")
	ErrShape         = errors.New("lm: tensor shape mismatch")
	ErrMissingTensor = errors.New("lm: missing tensor")
	ErrCheckpoint    = errors.New("lm: invalid checkpoint")
	ErrOptimizer     = errors.New("lm: invalid optimizer options")
	ErrSchedule      = errors.New("lm: invalid schedule")
	ErrSample        = errors.New("lm: invalid sampling request")
)

// Config is the shape of a GPT-2 model.
type Config struct {
	Vocab  int // V: vocabulary size
	NEmbd  int // C: channels
	NLayer int // L: transformer blocks
	NHead  int // NH: attention heads; HS = C / NH
	Ctx    int // maxT: the longest sequence (positions in wpe)
	// VocabPad rounds the rows of wte up to a multiple of it, as llm.c
	// does (64: 50257 becomes 50304); 0 or 1: no padding. The padded rows
	// (PaddedVocab() - Vocab of them) are parameters that stay exactly zero:
	// no token id reaches them, the head never predicts them (its logits
	// are over the V real rows only), so their gradient is zero and AdamW
	// leaves them zero; checkpoints hold the V real rows.
	VocabPad int
}

// MaxVocabPad bounds Config.VocabPad.
const MaxVocabPad = 1 << 16

// PaddedVocab is Vp, the rows of wte in memory: Vocab rounded up to a
// multiple of VocabPad (Vocab itself when VocabPad is 0 or 1).
func (c Config) PaddedVocab() int {
	if c.VocabPad <= 1 {
		return c.Vocab
	}
	return (c.Vocab + c.VocabPad - 1) / c.VocabPad * c.VocabPad
}

// Preset returns a named configuration: "tiny" (C 128, 4 layers, 4 heads,
// ctx 128) or "small" (C 256, 6 layers, 8 heads, ctx 256). Vocab is left 0:
// it comes from the data and must be set before Validate.
func Preset(name string) (Config, error) {
	switch name {
	case "tiny":
		return Config{NEmbd: 128, NLayer: 4, NHead: 4, Ctx: 128}, nil
	case "small":
		return Config{NEmbd: 256, NLayer: 6, NHead: 8, Ctx: 256}, nil
	}
	return Config{}, fmt.Errorf("preset %q (want tiny or small): %w", name, ErrConfig)
}

// maxDim bounds every dimension so that sizes cannot overflow an int.
const maxDim = 1 << 20

// Validate reports the first field that cannot describe a model.
func (c Config) Validate() error {
	check := func(name string, v int) error {
		if v <= 0 || v > maxDim {
			return fmt.Errorf("%s = %d, want 1..%d: %w", name, v, maxDim, ErrConfig)
		}
		return nil
	}
	for _, f := range []struct {
		name string
		v    int
	}{{"vocab", c.Vocab}, {"n_embd", c.NEmbd}, {"n_layer", c.NLayer}, {"n_head", c.NHead}, {"ctx", c.Ctx}} {
		if err := check(f.name, f.v); err != nil {
			return err
		}
	}
	if c.VocabPad < 0 || c.VocabPad > MaxVocabPad {
		return fmt.Errorf("vocab_pad = %d, want 0..%d (0 or 1: no padding): %w", c.VocabPad, MaxVocabPad, ErrConfig)
	}
	if c.NEmbd%c.NHead != 0 {
		return fmt.Errorf("n_embd %d not a multiple of n_head %d: %w", c.NEmbd, c.NHead, ErrConfig)
	}
	if c.NLayer > 1024 {
		return fmt.Errorf("n_layer = %d, want at most 1024: %w", c.NLayer, ErrConfig)
	}
	if n := c.numParams64(); n > 1<<31-1 {
		return fmt.Errorf("%d parameters, want fewer than 2^31: %w", n, ErrConfig)
	}
	return nil
}

func (c Config) numParams64() int64 {
	C, V, L, T := int64(c.NEmbd), int64(c.PaddedVocab()), int64(c.NLayer), int64(c.Ctx)
	return V*C + T*C + L*(12*C*C+13*C) + 2*C
}

// NumParams is the number of float32 parameters (the length of Params and of
// Grads without the two trailing slots), the padded rows of wte included
// (PaddedVocab). It equals the sum of the layout table.
func (c Config) NumParams() int { return int(c.numParams64()) }

// TrainFLOPs is the floating-point work of one training step (forward and
// backward, twice the multiply-adds) over B sequences of T tokens: the matrix
// products of the blocks and the tied head (over the V real rows: the padded
// rows are never computed), and causal attention. The
// recomputation of attention scores in backward is not counted.
func (c Config) TrainFLOPs(B, T int) float64 {
	C, V, L := float64(c.NEmbd), float64(c.Vocab), float64(c.NLayer)
	tokens := float64(B * T)
	matmul := 2 * tokens * (L*12*C*C + V*C)
	// QK^T and att@V over the causal triangle, every head: 2 products x 2 flops.
	attn := L * float64(B) * 4 * C * float64(T*(T+1)/2)
	return 3 * (matmul + attn)
}
