package lm

import (
	"fmt"
	"math"

	"github.com/klring/klring/kernels"
)

// BlockCE is the cross-entropy of hard next-token targets as a BlockHead
// (ForwardBackwardBlocks): each block of a chunk's logits is handled while
// it is in cache, the chunk's whole rows of logits are never written. Per
// row, Block keeps exp(z - m_b) of each block b (kernels.ExpSumStream: the
// kept values are read back only in the backward, after the whole chunk)
// and its sum s_b, m_b the block's largest logit; Chunk combines them into
// the row's log-sum-exp L = M + log sum_b s_b exp(m_b - M), M the largest
// m_b, adds the row's loss L - z[t] to Sum, and sets each block's factor
// scale*exp(m_b - M)/S; Grad writes the kept values times the factor, less
// scale at the target: scale times the gradient of the row's loss. Rows
// whose target is the ignore index add nothing and get a zero gradient.
//
// A BlockCE is made once for at most maxRows rows and reused; Start sets
// each pass's targets.
type BlockCE struct {
	targets []int32 // the pass's targets, one per row
	ignore  int32
	scale   float32
	V, nb   int       // vocabulary, its blocks of HeadVocabBlock
	n       int       // rows of the pass
	zt      []float32 // [maxRows] z[t] of each row
	bmax    []float32 // [nb, n] m_b
	bsum    []float64 // [nb, n] s_b
	fac     []float32 // [nb, n] Grad's factors
	cmax    []float32 // [maxRows] Chunk's M of each row
	csum    []float64 // [maxRows] Chunk's sums, then scale over them
	sum     float64
	rows    int
}

// HeadBlocked reports whether a BlockHead over a vocabulary of V tokens
// gets its logits block by block from the model, a chunk's whole rows never
// written (16 blocks of HeadVocabBlock and more); below, the model writes a
// chunk's logits and hands the BlockHead its blocks there, and a HeadFunc
// does as well.
func HeadBlocked(V int) bool { return headGroups(V) > 1 }

// NewBlockCE returns a BlockCE over a vocabulary of V tokens for passes of
// at most maxRows rows; rows whose target is ignore are left out.
func NewBlockCE(V, maxRows int, ignore int32) *BlockCE {
	nb := (V + HeadVocabBlock - 1) / HeadVocabBlock
	return &BlockCE{ignore: ignore, V: V, nb: nb, zt: make([]float32, maxRows),
		bmax: make([]float32, nb*maxRows), bsum: make([]float64, nb*maxRows), fac: make([]float32, nb*maxRows),
		cmax: make([]float32, maxRows), csum: make([]float64, maxRows)}
}

// Start begins a pass over the rows of targets (at most maxRows), its
// gradient scaled by scale (1: the gradient of the sum of the rows'
// losses), and sets the loss back to zero.
func (h *BlockCE) Start(targets []int32, scale float32) {
	if len(targets) > len(h.zt) {
		panic(fmt.Sprintf("lm: BlockCE over %d rows, made for %d", len(targets), len(h.zt)))
	}
	h.targets, h.n, h.scale, h.sum, h.rows = targets, len(targets), scale, 0, 0
}

// Loss returns the sum of the losses of the pass's rows so far (the chunks
// done) and their number, ignored rows left out.
func (h *BlockCE) Loss() (sum float64, rows int) { return h.sum, h.rows }

// Block keeps exp(z - m_b) of each row of block b and its sum.
func (h *BlockCE) Block(b HeadBlock) {
	for r := range b.Rows {
		i := b.First + r
		t := h.targets[i]
		if t == h.ignore {
			continue
		}
		z, keep := b.Z[r*b.LdZ:r*b.LdZ+b.Width], b.Keep[r*b.LdKeep:r*b.LdKeep+b.Width]
		if t := int(t) - b.V0; t >= 0 && t < b.Width {
			h.zt[i] = z[t]
		}
		mx := maxSlice(z)
		h.bmax[b.Index*h.n+i] = mx
		h.bsum[b.Index*h.n+i] = kernels.ExpSumStream(keep, z, 1, mx)
	}
	kernels.StreamFence() // Grad may run on another goroutine
}

// Chunk adds the losses of rows first..first+rows and sets Grad's factors.
// It goes over the [nb, n] tables block by block, each block's rows at once
// (the factors exp(m_b - M) through the vector exp, within 1 ulp), so a
// chunk of 512 rows over GPT-2's 99 blocks costs a few vector passes, not
// 50,000 float64 exponentials one by one.
func (h *BlockCE) Chunk(first, rows int) error {
	for i := first; i < first+rows; i++ {
		if t := h.targets[i]; t != h.ignore && (t < 0 || int(t) >= h.V) {
			return fmt.Errorf("row %d: target %d outside the vocabulary of %d", i, t, h.V)
		}
	}
	n := h.n
	M, S := h.cmax[:rows], h.csum[:rows]
	copy(M, h.bmax[first:first+rows])
	for b := 1; b < h.nb; b++ {
		for r, m := range h.bmax[b*n+first : b*n+first+rows] {
			M[r] = max(M[r], m)
		}
	}
	clear(S)
	for b := range h.nb {
		bmax, bsum := h.bmax[b*n+first:b*n+first+rows], h.bsum[b*n+first:b*n+first+rows]
		w := h.fac[b*n+first : b*n+first+rows] // exp(m_b - M), scaled below
		for r, m := range bmax {
			w[r] = m - M[r]
		}
		expSub(w, 0)
		for r, e := range w {
			S[r] += bsum[r] * float64(e)
		}
	}
	for r := range rows {
		i := first + r
		if h.targets[i] == h.ignore {
			continue
		}
		h.sum += math.Log(S[r]) + float64(M[r]) - float64(h.zt[i])
		h.rows++
	}
	for r := range S {
		S[r] = float64(h.scale) / S[r]
	}
	for b := range h.nb {
		for r, f := range h.fac[b*n+first : b*n+first+rows] {
			h.fac[b*n+first+r] = float32(float64(f) * S[r]) // scale exp(m_b - M) / S
		}
	}
	return nil
}

// Grad writes scale times the gradient of each row's loss over block b.
func (h *BlockCE) Grad(b HeadBlock) {
	for r := range b.Rows {
		i := b.First + r
		z := b.Z[r*b.LdZ : r*b.LdZ+b.Width]
		t := h.targets[i]
		if t == h.ignore {
			clear(z)
			continue
		}
		scaleCopy(z, b.Keep[r*b.LdKeep:r*b.LdKeep+b.Width], h.fac[b.Index*h.n+i])
		if t := int(t) - b.V0; t >= 0 && t < b.Width {
			z[t] -= h.scale
		}
	}
}
