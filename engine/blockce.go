package engine

import (
	"fmt"
	"math"

	"github.com/klring/klring/kernels"
	"github.com/klring/klring/lm"
	"github.com/klring/klring/loss"
)

// blockCEMinVocab is the smallest vocabulary whose training passes take
// the next-token cross-entropy block by block (hardCE): from 16 blocks of
// lm.HeadVocabBlock on, the model keeps each block of logits in cache
// instead of writing whole rows of them (GPT-2's 50257 tokens: 99 blocks).
const blockCEMinVocab = 16 * lm.HeadVocabBlock

// useBlockCE reports whether training with o over a vocabulary of V tokens
// computes its loss with hardCE: the plain cross-entropy of the next tokens
// (a hard target at temperature 1, no label smoothing), which is what the
// loss package computes for such a target, over a large vocabulary.
func useBlockCE(o Options, V int) bool {
	l := o.Loss
	return o.Target == TargetHard && o.OnPolicy.Fraction == 0 && V >= blockCEMinVocab &&
		l.Direction == loss.Forward && l.Temperature == 1 && l.LabelSmoothing == 0 &&
		l.HardWeight == 0 && l.TeacherTopK == 0
}

// hardCE is the cross-entropy of the next tokens as an lm.BlockHead, for
// training over a large vocabulary (lm.Model.ForwardBackwardBlocks): each
// block of a chunk's logits is handled while it is in cache, where the loss
// package takes whole rows of logits. Per row: Block keeps exp(z - m_b) of
// each block b and its sum s_b (m_b the block's largest logit); Chunk
// combines them into the row's log-sum-exp L = M + log sum_b s_b exp(m_b -
// M) and adds the row's loss L - z[t] to the pass's sums; Grad writes the
// gradient of the sum of the rows' losses, softmax(z) - onehot(t), over the
// block. Rows whose target is Options.Loss.IgnoreIndex add nothing and get
// a zero gradient, as in the loss package. The sums are the loss package's
// for the same rows (Loss, CE and Div all the cross-entropy, Kept 1 per
// row), up to float summation order.
type hardCE struct {
	targets []int32 // the pass's next tokens
	ignore  int32
	V       int
	nb      int       // blocks of the vocabulary
	n       int       // rows of the pass
	zt      []float32 // [maxRows] z[t] of each row
	bmax    []float32 // [nb, maxRows] m_b
	bsum    []float64 // [nb, maxRows] s_b
	fac     []float32 // [nb, maxRows] exp(m_b - M) / S: Grad's factor for the kept values
	sums    *Sums     // the pass's totals
}

func newHardCE(V, maxRows int, ignore int32) *hardCE {
	nb := (V + lm.HeadVocabBlock - 1) / lm.HeadVocabBlock
	return &hardCE{ignore: ignore, V: V, nb: nb, zt: make([]float32, maxRows),
		bmax: make([]float32, nb*maxRows), bsum: make([]float64, nb*maxRows), fac: make([]float32, nb*maxRows)}
}

// start sets the targets of the next pass and the sums it adds to.
func (h *hardCE) start(targets []int32, sums *Sums) {
	h.targets, h.n, h.sums = targets, len(targets), sums
}

// Block keeps exp(z - m_b) of each row of block b and its sum.
func (h *hardCE) Block(b lm.HeadBlock) {
	for r := range b.Rows {
		i := b.First + r
		t := int(h.targets[i])
		if t == int(h.ignore) {
			continue
		}
		z, keep := b.Z[r*b.LdZ:r*b.LdZ+b.Width], b.Keep[r*b.LdKeep:r*b.LdKeep+b.Width]
		if t -= b.V0; t >= 0 && t < b.Width {
			h.zt[i] = z[t]
		}
		mx, _, _ := kernels.MaxMinSum(z)
		h.bmax[b.Index*h.n+i] = mx
		h.bsum[b.Index*h.n+i] = kernels.ExpSumStream(keep, z, 1, mx)
	}
	kernels.StreamFence() // Grad may run on another goroutine
}

// Chunk adds the losses of rows first..first+rows to the pass's sums and
// sets Grad's factors.
func (h *hardCE) Chunk(first, rows int) error {
	for i := first; i < first+rows; i++ {
		t := h.targets[i]
		if t == h.ignore {
			continue
		}
		if t < 0 || int(t) >= h.V {
			return fmt.Errorf("row %d: target %d outside the vocabulary of %d", i, t, h.V)
		}
		M := h.bmax[i]
		for b := 1; b < h.nb; b++ {
			M = max(M, h.bmax[b*h.n+i])
		}
		var S float64
		for b := range h.nb {
			w := math.Exp(float64(h.bmax[b*h.n+i] - M))
			S += h.bsum[b*h.n+i] * w
			h.fac[b*h.n+i] = float32(w)
		}
		for b := range h.nb {
			h.fac[b*h.n+i] = float32(float64(h.fac[b*h.n+i]) / S)
		}
		l := math.Log(S) + float64(M) - float64(h.zt[i])
		s := h.sums
		s.Loss, s.CE, s.Div, s.Kept = s.Loss+l, s.CE+l, s.Div+l, s.Kept+1
		s.Tokens++
	}
	return nil
}

// Grad writes softmax(z) - onehot(t) over block b of each row.
func (h *hardCE) Grad(b lm.HeadBlock) {
	for r := range b.Rows {
		i := b.First + r
		z := b.Z[r*b.LdZ : r*b.LdZ+b.Width]
		t := int(h.targets[i])
		if t == int(h.ignore) {
			clear(z)
			continue
		}
		keep := b.Keep[r*b.LdKeep : r*b.LdKeep+b.Width]
		kernels.Axpby(h.fac[b.Index*h.n+i], keep, 0, z)
		if t -= b.V0; t >= 0 && t < b.Width {
			z[t]--
		}
	}
}
