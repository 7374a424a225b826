package lm

import (
	"math"

	"github.com/klring/klring/kernels"
)

// ceHead is a cross-entropy head for tests and benchmarks (lm must not import
// loss): mean over every row of -log softmax(logits)[target], gradient
// scaled by scale (1/rows for the mean). It accumulates the loss sum.
type ceHead struct {
	targets []int32 // [rows of the whole batch]
	V       int
	scale   float32
	sum     float64
}

func (h *ceHead) forward(logits []float32, first, rows int) error {
	for r := 0; r < rows; r++ {
		row := logits[r*h.V : (r+1)*h.V]
		mx := row[0]
		for _, v := range row {
			mx = max(mx, v)
		}
		var s float64
		for _, v := range row {
			s += math.Exp(float64(v - mx))
		}
		lse := float64(mx) + math.Log(s)
		h.sum += lse - float64(row[h.targets[first+r]])
	}
	return nil
}

func (h *ceHead) backward(logits []float32, first, rows int) error {
	for r := 0; r < rows; r++ {
		row := logits[r*h.V : (r+1)*h.V]
		mx := row[0]
		for _, v := range row {
			mx = max(mx, v)
		}
		var s float64
		for _, v := range row {
			s += math.Exp(float64(v - mx))
		}
		lse := float64(mx) + math.Log(s)
		tgt := h.targets[first+r]
		h.sum += lse - float64(row[tgt])
		for j, v := range row {
			p := math.Exp(float64(v) - lse)
			if int32(j) == tgt {
				p--
			}
			row[j] = float32(p) * h.scale
		}
	}
	return nil
}

// windows cuts toks into windows of ctx+1 tokens at stride ctx and returns
// inputs and targets [nWin, ctx] each.
func windows(toks []int32, ctx int) (inputs, targets []int32, n int) {
	for s := 0; s+ctx+1 <= len(toks); s += ctx {
		inputs = append(inputs, toks[s:s+ctx]...)
		targets = append(targets, toks[s+1:s+ctx+1]...)
		n++
	}
	return inputs, targets, n
}

// blockCE is the cross-entropy of ceHead as a BlockHead on vectorised rows
// (the benchmark's head): Block keeps exp(z - m), m the block's max in each
// row, and the sum of the exponentials (kernels.ExpSumStream: Keep is read
// back only in the backward, after the whole chunk); Chunk combines a row's blocks into
// its log-sum-exp M + log S (M the largest m) and its loss, and the factor of
// each block, scale*exp(m - M)/S; Grad writes the kept block times the
// factor, less scale at the target.
type blockCE struct {
	targets []int32 // [N], the rows of the whole batch
	V       int
	scale   float32
	loss    []float64 // [N]
	zt      []float32 // [N]: the logit of the target
	bmax    []float32 // [nb, N]
	bsum    []float64 // [nb, N]
	fac     []float32 // [nb, N]
}

func newBlockCE(targets []int32, V int, scale float32) *blockCE {
	N, nb := len(targets), (V+HeadVocabBlock-1)/HeadVocabBlock
	return &blockCE{targets: targets, V: V, scale: scale, loss: make([]float64, N), zt: make([]float32, N),
		bmax: make([]float32, nb*N), bsum: make([]float64, nb*N), fac: make([]float32, nb*N)}
}

func (h *blockCE) Block(b HeadBlock) {
	N := len(h.targets)
	for r := range b.Rows {
		z, keep, i := b.Z[r*b.LdZ:r*b.LdZ+b.Width], b.Keep[r*b.LdKeep:r*b.LdKeep+b.Width], b.First+r
		if t := int(h.targets[i]) - b.V0; t >= 0 && t < b.Width {
			h.zt[i] = z[t]
		}
		mx := maxSlice(z)
		h.bmax[b.Index*N+i] = mx
		h.bsum[b.Index*N+i] = kernels.ExpSumStream(keep, z, 1, mx)
	}
	kernels.StreamFence() // Grad may run on another goroutine
}

func (h *blockCE) Chunk(first, rows int) error {
	N, nb := len(h.targets), len(h.bmax)/len(h.targets)
	for i := first; i < first+rows; i++ {
		M := h.bmax[i]
		for b := 1; b < nb; b++ {
			M = max(M, h.bmax[b*N+i])
		}
		var S float64
		for b := range nb {
			w := math.Exp(float64(h.bmax[b*N+i] - M))
			S += h.bsum[b*N+i] * w
			h.fac[b*N+i] = float32(w) // scaled below
		}
		h.loss[i] = math.Log(S) + float64(M-h.zt[i])
		for b := range nb {
			h.fac[b*N+i] = float32(float64(h.scale) * float64(h.fac[b*N+i]) / S)
		}
	}
	return nil
}

func (h *blockCE) Grad(b HeadBlock) {
	N := len(h.targets)
	for r := range b.Rows {
		z, keep, i := b.Z[r*b.LdZ:r*b.LdZ+b.Width], b.Keep[r*b.LdKeep:r*b.LdKeep+b.Width], b.First+r
		scaleCopy(z, keep, h.fac[b.Index*N+i])
		if t := int(h.targets[i]) - b.V0; t >= 0 && t < b.Width {
			z[t] -= h.scale
		}
	}
}
