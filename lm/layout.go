package lm

import (
	"fmt"
	"math"
)

// Tensor is one row of the layout table: a named view of the flat parameter
// buffer. The same table drives Params, Grads, AdamW's moments, the checkpoint
// keys, the weight-decay mask, Init and the golden checks.
type Tensor struct {
	Name   string // Hugging Face GPT-2 key, e.g. "h.0.attn.c_attn.weight"
	Shape  []int  // shape in memory, row-major; matrices are [OC, C] (out, in)
	Offset int    // first element in the flat buffer
	Size   int    // number of elements (product of Shape)
	// Conv1D marks matrices that Hugging Face stores transposed, as [in, out];
	// they are transposed at the checkpoint boundary and nowhere else.
	Conv1D bool
	// PadRows are the last rows of Shape[0] that are padding (wte's
	// PaddedVocab() - Vocab rows): zero, initialised to zero, never in a
	// checkpoint. FileShape and FileSize leave them out.
	PadRows int
	Decay   bool    // AdamW applies weight decay (every 2-D tensor, embeddings included)
	Std     float64 // Init: normal(0, Std) when > 0, else the constant Fill
	Fill    float32 // Init value when Std == 0: 1 for LayerNorm weights, 0 for biases
}

// View returns the tensor's part of buf (Params, Grads or a moment buffer) with
// a full slice expression, so appending to the view cannot spill over.
func (t Tensor) View(buf []float32) []float32 {
	return buf[t.Offset : t.Offset+t.Size : t.Offset+t.Size]
}

// FileShape is the shape in the checkpoint: Shape without the PadRows,
// reversed for Conv1D.
func (t Tensor) FileShape() []int {
	if t.Conv1D {
		return []int{t.Shape[1], t.Shape[0]}
	}
	s := append([]int(nil), t.Shape...)
	s[0] -= t.PadRows
	return s
}

// FileSize is the number of elements in the checkpoint: Size without the
// PadRows. They are the first FileSize elements of the view.
func (t Tensor) FileSize() int {
	if t.PadRows == 0 {
		return t.Size
	}
	return t.Size / t.Shape[0] * (t.Shape[0] - t.PadRows)
}

// Layout returns the layout table in Hugging Face order: wte, wpe, then each
// block h.i in order (ln_1, attn.c_attn, attn.c_proj, ln_2, mlp.c_fc,
// mlp.c_proj, weight before bias), then ln_f. wte has PaddedVocab() rows,
// the last PaddedVocab() - Vocab of them PadRows. c must be valid.
func (c Config) Layout() []Tensor {
	C, V, L, T := c.NEmbd, c.PaddedVocab(), c.NLayer, c.Ctx
	const std = 0.02
	projStd := std / math.Sqrt(2*float64(L))
	var ts []Tensor
	off := 0
	add := func(name string, conv1D, decay bool, stdv float64, fill float32, shape ...int) {
		n := 1
		for _, d := range shape {
			n *= d
		}
		ts = append(ts, Tensor{Name: name, Shape: shape, Offset: off, Size: n, Conv1D: conv1D, Decay: decay, Std: stdv, Fill: fill})
		off += n
	}
	add("wte.weight", false, true, std, 0, V, C)
	ts[0].PadRows = V - c.Vocab
	add("wpe.weight", false, true, std, 0, T, C)
	for l := 0; l < L; l++ {
		p := fmt.Sprintf("h.%d.", l)
		add(p+"ln_1.weight", false, false, 0, 1, C)
		add(p+"ln_1.bias", false, false, 0, 0, C)
		add(p+"attn.c_attn.weight", true, true, std, 0, 3*C, C)
		add(p+"attn.c_attn.bias", false, false, 0, 0, 3*C)
		add(p+"attn.c_proj.weight", true, true, projStd, 0, C, C)
		add(p+"attn.c_proj.bias", false, false, 0, 0, C)
		add(p+"ln_2.weight", false, false, 0, 1, C)
		add(p+"ln_2.bias", false, false, 0, 0, C)
		add(p+"mlp.c_fc.weight", true, true, std, 0, 4*C, C)
		add(p+"mlp.c_fc.bias", false, false, 0, 0, 4*C)
		add(p+"mlp.c_proj.weight", true, true, projStd, 0, C, 4*C)
		add(p+"mlp.c_proj.bias", false, false, 0, 0, C)
	}
	add("ln_f.weight", false, false, 0, 1, C)
	add("ln_f.bias", false, false, 0, 0, C)
	return ts
}

// blockViews are the views of one transformer block (parameters or gradients).
type blockViews struct {
	ln1w, ln1b []float32 // [C]
	qkvw       []float32 // [3C, C]
	qkvb       []float32 // [3C]
	attprojw   []float32 // [C, C]
	attprojb   []float32 // [C]
	ln2w, ln2b []float32 // [C]
	fcw        []float32 // [4C, C]
	fcb        []float32 // [4C]
	fcprojw    []float32 // [C, 4C]
	fcprojb    []float32 // [C]
}

// views are the named views of one flat buffer laid out by the table.
type views struct {
	wte    []float32 // [V, C]: the real rows only; the padded rows follow them in the buffer
	wpe    []float32 // [maxT, C]
	blocks []blockViews
	lnfw   []float32 // [C]
	lnfb   []float32 // [C]
}

// newViews cuts buf by the layout table: the table is the only source of offsets.
func newViews(layout []Tensor, nLayer int, buf []float32) views {
	v := views{blocks: make([]blockViews, nLayer)}
	i := 0
	next := func() []float32 { t := layout[i]; i++; return t.View(buf) }
	v.wte, v.wpe = next(), next()
	if n := layout[0].FileSize(); n < len(v.wte) {
		v.wte = v.wte[:n:n] // no pass reads or writes the padded rows
	}
	for l := range v.blocks {
		b := &v.blocks[l]
		b.ln1w, b.ln1b, b.qkvw, b.qkvb, b.attprojw, b.attprojb = next(), next(), next(), next(), next(), next()
		b.ln2w, b.ln2b, b.fcw, b.fcb, b.fcprojw, b.fcprojb = next(), next(), next(), next(), next(), next()
	}
	v.lnfw, v.lnfb = next(), next()
	if i != len(layout) {
		panic("lm: layout table and views disagree")
	}
	return v
}
