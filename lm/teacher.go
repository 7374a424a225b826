package lm

import (
	"fmt"

	"github.com/klring/klring/kernels"
)

// What a teacher model needs for distillation, with no knowledge of the
// loss: a forward pass that stops at the final LayerNorm and keeps its
// output (ForwardHidden), the head's logits of any rows of it on demand
// (HeadLogits), so a caller can produce the teacher's logits chunk by chunk
// in lockstep with the student's head chunks ([N, V] never exists at once
// for either model), and forward-only models that share one read-only
// parameter buffer and have no gradient (NewInference): in simulation mode
// every in-process worker runs its own teacher over one copy of the
// weights.

// NewInference returns a forward-only model of shape cfg over params
// [NumParams()], laid out by Layout(), which it reads and never writes: any
// number of inference models may share one buffer and run at the same time
// (each has its own activation arena; they may also share pool). It has no
// gradient (Grads is nil): Forward, ForwardHidden, HeadLogits and Sample
// work, ForwardBackward panics, and Init, SaveCheckpoint and optimizers are
// not for it. The caller must not change params while a pass runs.
func NewInference(cfg Config, params []float32, pool *kernels.Pool) (*Model, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("new inference model: %w", err)
	}
	if pool == nil {
		panic("lm: NewInference with a nil pool")
	}
	n := cfg.NumParams()
	if len(params) != n {
		panic(fmt.Sprintf("lm: NewInference with %d parameters, want NumParams() = %d", len(params), n))
	}
	params = params[:n:n]
	m := &Model{
		Config: cfg,
		Params: params,
		layout: cfg.Layout(),
		pool:   pool,
		run:    newRunner(pool),
	}
	m.pv = newViews(m.layout, cfg.NLayer, params)
	return m, nil
}

// checkParams is checkBuffers for the passes that only read the parameters:
// an inference model (Grads nil) checks Params alone.
func (m *Model) checkParams() {
	if m.Grads != nil {
		m.checkBuffers()
		return
	}
	if len(m.Params) != m.Config.NumParams() || &m.Params[0] != &m.pv.wte[0] {
		panic("lm: Params of an inference model was replaced")
	}
}

// checkTrainable panics for an inference model, which has no gradient.
func (m *Model) checkTrainable() {
	if m.Grads == nil {
		panic("lm: ForwardBackward of an inference model (NewInference): it has no gradient; use Forward or ForwardHidden")
	}
}

// ForwardHidden runs the model over tokens [B, T] (1 <= T <= Ctx) up to and
// including the final LayerNorm and keeps its output [B*T, C] in the
// activation arena for HeadLogits, until the model's next pass. It computes
// no logits. A token outside [0, V) is an error (ErrTokenRange) and nothing
// is computed.
func (m *Model) ForwardHidden(tokens []int32, B, T int) error {
	if err := m.checkInput(tokens, B, T); err != nil {
		return fmt.Errorf("forward hidden: %w", err)
	}
	m.forward(m.ensure(B, T), tokens, B, T)
	return nil
}

// HeadLogits writes the logits dst [rows, V] of rows firstRow..firstRow+rows
// (row = b*T + t) of the hidden state kept by the model's last pass
// (ForwardHidden, or Forward and ForwardBackward, which keep it too):
// logits = lnf[rows] @ wte^T, the product Forward hands its HeadFunc. For
// the chunks Forward uses (see HeadFunc) the values are bitwise those of
// Forward. Rows outside the last pass, or a dst of another size, are
// programmer errors and panic.
func (m *Model) HeadLogits(dst []float32, firstRow, rows int) {
	C, V := m.Config.NEmbd, m.Config.Vocab
	if m.act == nil || m.hidden == 0 {
		panic("lm: HeadLogits before any pass: call ForwardHidden first")
	}
	if firstRow < 0 || rows < 1 || firstRow+rows > m.hidden {
		panic(fmt.Sprintf("lm: HeadLogits rows %d..%d, the last pass kept rows 0..%d", firstRow, firstRow+rows, m.hidden))
	}
	if len(dst) != rows*V {
		panic(fmt.Sprintf("lm: HeadLogits len(dst) = %d, want rows*V = %d", len(dst), rows*V))
	}
	m.pool.Sgemm(false, true, rows, V, C, 1, m.act.lnf[firstRow*C:], C, m.pv.wte, C, 0, dst, V)
}
