package lm

import "time"

// Fused layers of the training step. Each matrix product of a layer's rows
// hands its finished rows to an epilogue (kernels.Pool.SgemmThen) that runs
// on the goroutine that computed them while they are still in cache: the
// bias, GELU, the residual add and the next LayerNorm in the forward pass;
// GELU's and LayerNorm's backward in the backward pass. Every epilogue works
// row by row, so results do not depend on how the rows are split.

// gemmThen computes c = op(a) @ op(b) (beta 0) and runs fn over its
// finished rows with the operands already stored in r.args.
func (r *runner) gemmThen(tA, tB bool, m, n, k int, a []float32, lda int, b []float32, ldb int, c []float32, ldc int, fn rangeFunc) {
	r.args.fn, r.args.pool = fn, r.pool
	r.pool.SgemmThen(tA, tB, m, n, k, 1, a, lda, b, ldb, 0, c, ldc, r.body)
	r.args = loopArgs{}
}

// linearBias computes out = inp @ weight^T + bias.
//
//	out    [N, OC]  written
//	inp    [N, C]
//	weight [OC, C]
//	bias   [OC]
func linearBias(r *runner, out, inp, weight, bias []float32, N, C, OC int) {
	need("linear out", out, N*OC)
	need("linear bias", bias, OC)
	r.args.s[0], r.args.s[1] = out, bias
	r.args.n[0] = OC
	r.gemmThen(false, true, N, OC, C, inp, C, weight, C, out, OC, epiBias)
}

func epiBias(a *loopArgs, lo, hi int) {
	out, bias, OC := a.s[0], a.s[1][:a.n[0]], a.n[0]
	for i := lo; i < hi; i++ {
		addRow(out[i*OC:(i+1)*OC], bias)
	}
}

// linearBiasGelu computes pre = inp @ weight^T + bias, out = gelu(pre) and
// keeps gp = gelu'(pre) for the backward (the one use of pre), all from one
// tanh per element, in the product's epilogue.
//
//	out    [N, OC]  written
//	gp     [N, OC]  written (cache for backward)
func linearBiasGelu(r *runner, out, gp, inp, weight, bias []float32, N, C, OC int) {
	need("linear gelu out", out, N*OC)
	need("linear gelu gp", gp, N*OC)
	need("linear bias", bias, OC)
	r.args.s[0], r.args.s[1], r.args.s[2] = gp, bias, out
	r.args.n[0] = OC
	r.gemmThen(false, true, N, OC, C, inp, C, weight, C, gp, OC, epiBiasGelu)
}

func epiBiasGelu(a *loopArgs, lo, hi int) {
	gp, bias, out, OC := a.s[0], a.s[1][:a.n[0]], a.s[2], a.n[0]
	for i := lo; i < hi; i++ {
		p := gp[i*OC : (i+1)*OC]
		geluFwdGradRow(out[i*OC:(i+1)*OC], p, p, bias)
	}
}

// linearResidualLN computes res = x + (inp @ weight^T + bias) and the
// LayerNorm of res: ln, mean, rstd.
//
//	res  [N, C]  written (the residual stream after the layer)
//	ln   [N, C]  written; mean, rstd [N] written
//	inp  [N, K], weight [C, K], bias [C], x [N, C]
//	lnw, lnb [C]
func linearResidualLN(r *runner, res, ln, mean, rstd, inp, weight, bias, x, lnw, lnb []float32, N, K, C int) {
	need("linear res", res, N*C)
	need("linear ln", ln, N*C)
	need("linear x", x, N*C)
	need("linear bias", bias, C)
	r.args.s = [8][]float32{res, bias, x, ln, mean, rstd, lnw, lnb}
	r.args.n[0] = C
	r.gemmThen(false, true, N, C, K, inp, K, weight, K, res, C, epiResidualLN)
}

func epiResidualLN(a *loopArgs, lo, hi int) {
	res, bias, x, ln, mean, rstd, w, b := a.s[0], a.s[1], a.s[2], a.s[3], a.s[4], a.s[5], a.s[6], a.s[7]
	C := a.n[0]
	bias, w, b = bias[:C], w[:C], b[:C]
	for i := lo; i < hi; i++ {
		row := res[i*C : (i+1)*C]
		sum := resBiasSumRow(row, x[i*C:(i+1)*C], bias)
		mean[i], rstd[i] = lnRow(ln[i*C:(i+1)*C], row, w, b, sum)
	}
}

// encoderLN is encoderForward and the first LayerNorm, row by row in
// parallel.
func encoderLN(r *runner, enc, ln, mean, rstd []float32, tokens []int32, wte, wpe, lnw, lnb []float32, B, T, C int) {
	need("encoder out", enc, B*T*C)
	need("encoder ln", ln, B*T*C)
	r.args.s = [8][]float32{enc, ln, mean, rstd, wte, wpe, lnw, lnb}
	r.args.n[0], r.args.n[1] = T, C
	r.args.tok = tokens
	r.run(B*T, rowGrain, encoderLNRows)
}

func encoderLNRows(a *loopArgs, lo, hi int) {
	enc, ln, mean, rstd, wte, wpe, w, b := a.s[0], a.s[1], a.s[2], a.s[3], a.s[4], a.s[5], a.s[6], a.s[7]
	T, C := a.n[0], a.n[1]
	for i := lo; i < hi; i++ {
		o := enc[i*C : (i+1)*C]
		copy(o, wte[int(a.tok[i])*C:][:C])
		addRow(o, wpe[(i%T)*C:][:C])
		mean[i], rstd[i] = lnRow(ln[i*C:(i+1)*C], o, w, b, sumRow(o))
	}
}

// linearGeluBackward computes d = (dout @ weight) * gp, the gradient at the
// input of GELU from the gradient at the output of the layer after it
// (weight [OC, K]: d is [N, K]), with gp = gelu'(pre) kept by the forward.
//
//	d    [N, K]  written
//	gp   [N, K]
//	dout [N, OC]
func linearGeluBackward(r *runner, d, gp, dout, weight []float32, N, K, OC int) {
	need("gelu backward d", d, N*K)
	need("gelu backward gp", gp, N*K)
	r.args.s[0], r.args.s[1] = d, gp
	r.args.n[0] = K
	r.gemmThen(false, false, N, K, OC, dout, OC, weight, K, d, K, epiGeluBackward)
}

func epiGeluBackward(a *loopArgs, lo, hi int) {
	d, gp, K := a.s[0], a.s[1], a.n[0]
	mulRow(d[lo*K:hi*K], gp[lo*K:hi*K])
}

// linearLNBackward computes dln = dout @ weight, the gradient at the output
// of a LayerNorm, and adds the LayerNorm's backward into dres (set: dres is
// overwritten instead).
//
//	dres [N, C]   accumulated (or written when set)
//	dln  [N, C]   written (kept for the LayerNorm's parameter gradients)
//	dout [N, OC], weight [OC, C]
//	x    [N, C]   the LayerNorm's input; lnw [C]; mean, rstd [N]
func linearLNBackward(r *runner, dres, dln, dout, weight, x, lnw, mean, rstd []float32, N, C, OC int, set bool) {
	need("ln backward dres", dres, N*C)
	need("ln backward dln", dln, N*C)
	need("ln backward x", x, N*C)
	r.args.s = [8][]float32{dres, dln, x, lnw, mean, rstd}
	r.args.n[0] = C
	if set {
		r.args.n[1] = 1
	}
	r.gemmThen(false, false, N, C, OC, dout, OC, weight, C, dln, C, epiLNBackward)
}

func epiLNBackward(a *loopArgs, lo, hi int) {
	dres, dln, x, w, mean, rstd := a.s[0], a.s[1], a.s[2], a.s[3], a.s[4], a.s[5]
	C := a.n[0]
	if a.n[1] != 0 {
		clear(dres[lo*C : hi*C])
	}
	for i := lo; i < hi; i++ {
		lnBackwardRow(dres[i*C:(i+1)*C], dln[i*C:(i+1)*C], x[i*C:(i+1)*C], w, mean[i], rstd[i])
	}
}

// headGroups is the number of fixed groups of vocabulary blocks of the
// blocked head backward, or 1 when the vocabulary is too small for it (the
// products of the whole chunk then run split over the pool as usual).
func headGroups(V int) int {
	nb := (V + HeadVocabBlock - 1) / HeadVocabBlock
	if nb < 16 {
		return 1
	}
	return 16
}

// headBackwardBlocked runs the backward products of one head chunk by
// blocks of HeadVocabBlock vocabulary rows: for each block, d(lnf) partial
// += dlogits[:, blk] @ wte[blk] and dwte[blk] += dlogits[:, blk]^T @ lnf.
// The blocks are cut into headGroups fixed groups of consecutive blocks;
// each group sums its blocks in order into its own partial d(lnf) (part[g]),
// and the pool's goroutines claim groups one at a time. The sums do not
// depend on which goroutine ran a group.
//
//	part   [G, rows, C]  written
//	dlog   [rows, V]
//	wte    [V, C]; dwte [V, C] accumulated
//	lnf    [rows, C]
func headBackwardBlocked(r *runner, part, dlog, wte, dwte, lnf []float32, rows, C, V int) {
	G := headGroups(V)
	need("head part", part, G*rows*C)
	r.args.s = [8][]float32{part, dlog, wte, dwte, lnf}
	r.args.n = [6]int{rows, C, V, G}
	r.runEach(G, headGroupRange)
}

func headGroupRange(a *loopArgs, lo, hi int) {
	part, dlog, wte, dwte, lnf := a.s[0], a.s[1], a.s[2], a.s[3], a.s[4]
	rows, C, V, G := a.n[0], a.n[1], a.n[2], a.n[3]
	nb := (V + HeadVocabBlock - 1) / HeadVocabBlock
	for {
		g, ok := a.claim(G)
		if !ok {
			return
		}
		pg := part[g*rows*C : (g+1)*rows*C]
		beta := float32(0)
		for blk := g * nb / G; blk < (g+1)*nb/G; blk++ {
			v0 := blk * HeadVocabBlock
			vb := min(HeadVocabBlock, V-v0)
			a.pool.Sgemm(false, false, rows, C, vb, 1, dlog[v0:], V, wte[v0*C:], C, beta, pg, C)
			a.pool.Sgemm(true, false, vb, C, rows, 1, dlog[v0:], V, lnf, C, 1, dwte[v0*C:], C)
			beta = 1
		}
	}
}

// headLdZ is the row stride of a BlockHead's Z buffer for large
// vocabularies: a block's width and one cache line, so that the rows of a
// block do not fall on the same few cache sets.
const headLdZ = HeadVocabBlock + 16

// headArgs are the operands of one head chunk with a BlockHead.
//
//	keep  blocked, blockBufs.keep; else the chunk's logits [rows, V],
//	      each block's Z and Keep
//	z     blocked, blockBufs.z
//	lnf   [rows, C]; dwte [V, C] (blocked)
//	part  [G, rows, C]: blocked, d(lnf) partial sums (headBackwardBlocked)
//	bufs  blocked: wte and the chunk's lnf packed for the products
type headArgs struct {
	bh                  BlockHead
	bufs                *blockBufs
	keep, z, lnf        []float32
	dwte, part          []float32
	first, rows, C, V   int
	blocked             bool
	nb, units, unitRows int
}

// block returns the HeadBlock of unit u (cut) on slot's Z.
func (h *headArgs) block(u, slot int) HeadBlock {
	blk, r0 := u%h.nb, u/h.nb*h.unitRows
	v0 := blk * HeadVocabBlock
	b := HeadBlock{Index: blk, First: h.first + r0, Rows: min(h.unitRows, h.rows-r0), V0: v0, Width: min(HeadVocabBlock, h.V-v0)}
	if !h.blocked {
		b.Z, b.LdZ = h.keep[r0*h.V+v0:], h.V
		b.Keep, b.LdKeep = b.Z, b.LdZ
		return b
	}
	b.Z, b.LdZ = h.z[slot*h.rows*headLdZ:], headLdZ
	b.Keep, b.LdKeep = h.keep[v0*h.rows:], (b.Width+15)/16*16
	return b
}

// cut cuts the chunk into units for Block and Grad: blocked, one unit per
// block of vocabulary; otherwise the rows are also cut into parts when the
// blocks are too few to share among the pool's goroutines. Units are (part,
// block) pairs, part-major.
func (h *headArgs) cut(threads int) {
	h.nb = (h.V + HeadVocabBlock - 1) / HeadVocabBlock
	parts := 1
	if !h.blocked && threads > 1 && h.nb < 4*threads {
		parts = min((4*threads+h.nb-1)/h.nb, max(1, h.rows/64))
	}
	h.unitRows = (h.rows + parts - 1) / parts
	h.units = h.nb * ((h.rows + h.unitRows - 1) / h.unitRows)
}

// headForwardBlocks hands each block of one head chunk to bh.Block, the
// pool's goroutines claiming units one at a time; blocked, it computes each
// block's logits, lnf @ wte[blk]^T, into the block's Z right before
// (otherwise the chunk's logits are already there).
func headForwardBlocks(r *runner, h *headArgs) {
	h.cut(r.pool.Threads())
	r.args.hd = h
	r.runEach(min(h.units, r.pool.Threads()), headForwardRange)
}

func headForwardRange(a *loopArgs, slot, _ int) {
	h := a.hd
	for {
		u, ok := a.claim(h.units)
		if !ok {
			return
		}
		b := h.block(u, slot)
		if h.blocked {
			a.pool.SgemmPackedB(false, b.Rows, b.Width, h.C, 1, h.lnf, h.C, &h.bufs.wteT, 0, b.V0, 0, b.Z, b.LdZ)
		}
		h.bh.Block(b)
	}
}

// headGradBlocks has bh turn every block of one head chunk (not blocked)
// into dL/dlogits in place, in the units of headForwardBlocks.
func headGradBlocks(r *runner, h *headArgs) {
	r.args.hd = h
	r.runEach(min(h.units, r.pool.Threads()), headGradRange)
}

func headGradRange(a *loopArgs, slot, _ int) {
	h := a.hd
	for {
		u, ok := a.claim(h.units)
		if !ok {
			return
		}
		h.bh.Grad(h.block(u, slot))
	}
}

// headBackwardBlocks is headBackwardBlocked with a BlockHead: each block is
// turned into dL/dlogits in the goroutine's Z (BlockHead.Grad) right before
// the two products read it there. The groups are taken from the last and
// each sums its blocks from the last (a fixed order still).
func headBackwardBlocks(r *runner, h *headArgs) {
	G := headGroups(h.V)
	need("head part", h.part, G*h.rows*h.C)
	r.args.hd = h
	r.runEach(min(G, r.pool.Threads()), headBlocksRange)
}

func headBlocksRange(a *loopArgs, slot, _ int) {
	h := a.hd
	rows, C, G := h.rows, h.C, headGroups(h.V)
	for {
		g, ok := a.claim(G)
		if !ok {
			return
		}
		// The last groups first, and their blocks from the last: the
		// blocks Block kept last may still be in cache.
		g = G - 1 - g
		pg := h.part[g*rows*C : (g+1)*rows*C]
		beta := float32(0)
		for blk := (g+1)*h.nb/G - 1; blk >= g*h.nb/G; blk-- {
			b := h.block(blk, slot)
			h.bh.Grad(b)
			a.pool.SgemmPackedB(false, rows, C, b.Width, 1, b.Z, b.LdZ, &h.bufs.wte, b.V0, 0, beta, pg, C)
			a.pool.SgemmPackedB(true, b.Width, C, rows, 1, b.Z, b.LdZ, &h.bufs.lnf, 0, 0, 1, h.dwte[b.V0*C:], C)
			beta = 1
		}
	}
}

// headPartsLN sums the G partial d(lnf) of headBackwardBlocked in order
// into dln and sets dres to the final LayerNorm's backward of it, row by row.
func headPartsLN(r *runner, dres, dln, part, x, lnw, mean, rstd []float32, G, rows, C int) {
	need("head dres", dres, rows*C)
	need("head dln", dln, rows*C)
	r.args.s = [8][]float32{dres, dln, x, lnw, mean, rstd, part}
	r.args.n = [6]int{C, G, rows}
	r.run(rows, rowGrain, headPartsLNRows)
}

func headPartsLNRows(a *loopArgs, lo, hi int) {
	dres, dln, x, w, mean, rstd, part := a.s[0], a.s[1], a.s[2], a.s[3], a.s[4], a.s[5], a.s[6]
	C, G, rows := a.n[0], a.n[1], a.n[2]
	for i := lo; i < hi; i++ {
		d := dln[i*C : (i+1)*C]
		copy(d, part[i*C:(i+1)*C])
		for g := 1; g < G; g++ {
			addRow(d, part[(g*rows+i)*C:(g*rows+i+1)*C])
		}
		di := dres[i*C : (i+1)*C]
		clear(di)
		lnBackwardRow(di, d, x[i*C:(i+1)*C], w, mean[i], rstd[i])
	}
}

// Column sums over the rows of a batch (the bias and LayerNorm parameter
// gradients) are cut into row blocks whose number depends on N alone: each
// block sums its rows in order into its own partial sums, on whichever
// thread claims it (reading rows the GEMM before it left in that core's
// cache, where cutting by columns made every thread walk every row), then
// the partials are added in block order. So the sums do not depend on the
// number of threads.
func colSumBlocks(N int) int { return min(16, max(1, N/128)) }

// partials returns the runner's scratch for n partial sums.
func (r *runner) partials(n int) []float32 {
	if cap(r.part) < n {
		r.part = make([]float32, n)
	}
	return r.part[:n]
}

// blockRows is the row range of block b of nb over N rows.
func blockRows(b, nb, N int) (lo, hi int) { return b * N / nb, (b + 1) * N / nb }

// lnParamGrads adds the LayerNorm parameter gradients: dweight += column
// sums of dout*norm, dbias += column sums of dout.
func lnParamGrads(r *runner, dweight, dbias, dout, inp, mean, rstd []float32, N, C int) {
	need("layernorm dweight", dweight, C)
	need("layernorm dbias", dbias, C)
	need("layernorm dout", dout, N*C)
	need("layernorm inp", inp, N*C)
	need("layernorm mean", mean, N)
	need("layernorm rstd", rstd, N)
	nb := colSumBlocks(N)
	part := r.partials(nb * 2 * C)
	r.args.s = [8][]float32{part, nil, dout, inp, mean, rstd}
	r.args.n[0], r.args.n[1], r.args.n[2] = N, C, nb
	r.run(nb, 1, lnParamBlocks)
	for b := range nb {
		addRow(dweight[:C], part[2*b*C:(2*b+1)*C])
		addRow(dbias[:C], part[(2*b+1)*C:(2*b+2)*C])
	}
}

func lnParamBlocks(a *loopArgs, lo, hi int) {
	part, dout, inp, mean, rstd := a.s[0], a.s[2], a.s[3], a.s[4], a.s[5]
	N, C, nb := a.n[0], a.n[1], a.n[2]
	for b := lo; b < hi; b++ {
		dw, db := part[2*b*C:(2*b+1)*C], part[(2*b+1)*C:(2*b+2)*C]
		clear(dw)
		clear(db)
		r0, r1 := blockRows(b, nb, N)
		for i := r0; i < r1; i++ {
			lnParamGradRow(dw, db, dout[i*C:(i+1)*C], inp[i*C:(i+1)*C], mean[i], rstd[i])
		}
	}
}

// biasGrad adds the column sums of dout [N, OC] into dbias [OC].
func biasGrad(r *runner, dbias, dout []float32, N, OC int) {
	need("matmul dbias", dbias, OC)
	need("matmul dout", dout, N*OC)
	nb := colSumBlocks(N)
	part := r.partials(nb * OC)
	r.args.s[0], r.args.s[1] = part, dout
	r.args.n[0], r.args.n[1], r.args.n[2] = N, OC, nb
	r.run(nb, 1, biasBlocks)
	for b := range nb {
		addRow(dbias[:OC], part[b*OC:(b+1)*OC])
	}
}

func biasBlocks(a *loopArgs, lo, hi int) {
	part, dout := a.s[0], a.s[1]
	N, OC, nb := a.n[0], a.n[1], a.n[2]
	for b := lo; b < hi; b++ {
		db := part[b*OC : (b+1)*OC]
		clear(db)
		r0, r1 := blockRows(b, nb, N)
		for i := r0; i < r1; i++ {
			addRow(db, dout[i*OC:(i+1)*OC])
		}
	}
}

// clearPar zeroes s with the pool's threads.
func clearPar(r *runner, s []float32) {
	r.args.s[0] = s
	r.run(len(s), 1<<16, clearRange)
}

func clearRange(a *loopArgs, lo, hi int) { clear(a.s[0][lo:hi]) }

// Per-op timers for the benchmark's breakdown of a step: when Model.timer is
// set, the model adds the wall time since the previous mark to the op it
// just finished.
const (
	opEmbedLN = iota
	opQKV
	opAttn
	opAttProjLN
	opFCGelu
	opFCProjLN
	opHeadLogits
	opHeadLoss
	opHeadDlnf
	opHeadDwte
	opFCProjBwdGelu
	opFCBwdLN
	opAttProjBwd
	opAttnBwd
	opQKVBwdLN
	opWeightGrads
	opBiasLNGrads
	opEmbedBwd
	opZeroGrad
	opOptimizer
	numOps
)

// opNames name the ops of the breakdown.
var opNames = [numOps]string{
	"embed+ln", "qkv", "attn", "attproj+res+ln", "fc+gelu", "fcproj+res+ln",
	"head.logits", "head.loss", "head.dlnf+ln", "head.dwte",
	"fcproj.dx+gelu'", "fc.dx+ln'", "attproj.dx", "attn.bwd", "qkv.dx+ln'",
	"dW", "dbias+dln", "embed.bwd", "zerograd", "clip+adamw",
}

// opTimer accumulates wall time per op.
type opTimer struct {
	last time.Time
	d    [numOps]time.Duration
}

// start marks the beginning of a step.
func (t *opTimer) start() { t.last = time.Now() }

// mark adds the time since the previous mark to op.
func (t *opTimer) mark(op int) {
	now := time.Now()
	t.d[op] += now.Sub(t.last)
	t.last = now
}

// tick marks op on the model's timer, if any.
func (m *Model) tick(op int) {
	if m.timer != nil {
		m.timer.mark(op)
	}
}
