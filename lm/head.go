package lm

import (
	"fmt"

	"github.com/klring/klring/kernels"
)

// HeadVocabBlock is the width of the blocks of vocabulary columns a
// BlockHead is handed (the last block of a vocabulary holds the rest).
const HeadVocabBlock = 512

// A BlockHead is the loss at the output of the model, as a HeadFunc is, but
// it takes each chunk of logits by blocks of HeadVocabBlock vocabulary
// columns, so that it handles every block while it is in cache instead of
// streaming the chunk's [rows, V] logits through memory once per pass
// (ForwardBackwardBlocks). Chunks are those of HeadFunc, in order, except
// over a large vocabulary (16 blocks or more), where they hold up to 512
// rows. For each chunk the model
//
//  1. computes the logits block by block into a buffer in cache (Z of a
//     HeadBlock) and calls Block on each right after, once for every row and
//     block: Block reads the logits and writes into the block's Keep what it
//     needs later (exp(z - the block's max), for a softmax), keeping any
//     other state of its own;
//  2. calls Chunk once every block of the chunk went through Block (the loss
//     of the chunk's rows is known then; an error stops the pass, as a
//     HeadFunc's does);
//  3. calls Grad on each block (cut as for Block) just before the backward
//     products read it: Grad writes dL/dlogits of the block into Z (the
//     gradient of whatever the caller sums, as a HeadFunc writes it) from
//     what Block kept.
//
// Calls for different blocks of a chunk may run at the same time on the
// pool's goroutines, in any order; Chunk runs alone. Over a large
// vocabulary, Z is a buffer of the goroutine's and Keep memory of the
// model's, [rows, roundUp(V, 16)] for the chunk (each block's Keep
// contiguous, its rows 64 bytes apart in multiples). Where the vocabulary
// has fewer blocks, Z and Keep are both the block of the chunk's [rows, V]
// logits, and the model cuts the chunk's rows into parts as well, so a block
// may hold part of a chunk's rows.
type BlockHead interface {
	Block(b HeadBlock)
	Chunk(firstRow, rows int) error
	Grad(b HeadBlock)
}

// HeadBlock is one block of a head chunk handed to a BlockHead: rows
// First..First+Rows of the batch, tokens V0..V0+Width, V0 = Index *
// HeadVocabBlock. Row r of the block starts at Z[r*LdZ] and at
// Keep[r*LdKeep]; Keep and Z are either disjoint or the same (LdKeep = LdZ).
// Both belong to the model and are reused by other blocks and chunks; Keep
// holds what Block wrote into it until Grad of the same block returns.
type HeadBlock struct {
	Index, First, Rows, V0, Width int
	Z, Keep                       []float32
	LdZ, LdKeep                   int
}

// blockHeadRows is the most rows of a chunk of a BlockHead over a large
// vocabulary (headGroups > 1): each pass over wte and its gradient serves
// 512 rows.
const blockHeadRows = 512

// blockBufs are a BlockHead's buffers for large vocabularies, made on first
// use and kept by the model.
//
//	keep  [rows, roundUp(V, 16)]: block blk's Keep is [rows, roundUp(vb, 16)]
//	      at blk*rows*HeadVocabBlock
//	z     [slots, rows, headLdZ]: each goroutine's Z
//	part  [G, rows, C]: d(lnf) partial sums (headBackwardBlocks)
//	wteT, wte: wte packed for the logits and for d(lnf), once per pass;
//	lnf:  a chunk's lnf packed for d(wte), once per chunk
type blockBufs struct {
	rows           int
	keep, z, part  []float32
	wteT, wte, lnf kernels.PackedB
}

// blockHeadPass runs a BlockHead over a large vocabulary on the N rows of
// lnf, in chunks of blockHeadRows: for each, the logits block by block
// (Block), Chunk, then block by block Grad and the backward products, d(lnf)
// with the final LayerNorm's backward (setting d(residual)) and d(wte)
// accumulated.
func (m *Model) blockHeadPass(a *arena, bh BlockHead, N int) error {
	C, V := m.Config.NEmbd, m.Config.Vocab
	G, threads := headGroups(V), m.pool.Threads()
	bb := m.blocks
	if bb == nil || len(bb.z) < threads*bb.rows*headLdZ {
		R := blockHeadRows
		bb = &blockBufs{rows: R, keep: make([]float32, R*((V+15)/16*16)), z: make([]float32, threads*R*headLdZ), part: make([]float32, G*R*C)}
		m.blocks = bb
		adviseHuge(bb.keep) // streamed through memory twice per chunk
	}
	m.pool.PackB(&bb.wteT, true, C, V, m.pv.wte, C)
	m.pool.PackB(&bb.wte, false, V, C, m.pv.wte, C)
	xL := a.blocks[len(a.blocks)-1].res3
	for r0 := 0; r0 < N; r0 += bb.rows {
		rows := min(bb.rows, N-r0)
		lnf := a.lnf[r0*C:]
		m.pool.PackB(&bb.lnf, false, rows, C, lnf, C)
		h := &m.run.head // not on the heap per call
		*h = headArgs{bh: bh, keep: bb.keep, z: bb.z, part: bb.part, bufs: bb, lnf: lnf, dwte: m.gv.wte, first: r0, rows: rows, C: C, V: V, blocked: true}
		headForwardBlocks(m.run, h)
		m.tick(opHeadLogits)
		err := bh.Chunk(r0, rows)
		if err != nil {
			*h = headArgs{}
			return fmt.Errorf("head rows %d..%d: %w", r0, r0+rows, err)
		}
		m.tick(opHeadLoss)
		headBackwardBlocks(m.run, h)
		*h = headArgs{}
		m.tick(opHeadDwte)
		headPartsLN(m.run, a.dres[r0*C:], a.dC[r0*C:], bb.part, xL[r0*C:], m.pv.lnfw, a.lnfMean[r0:], a.lnfRstd[r0:], G, rows, C)
		m.tick(opHeadDlnf)
	}
	return nil
}

// headChunk runs the head over rows r0..r0+rows of the batch: the logits,
// the loss (head, or bh over a small vocabulary, block by block), then
// d(lnf) with the final LayerNorm's backward (setting d(residual)) and
// d(wte) accumulated.
func (m *Model) headChunk(a *arena, r0, rows int, head HeadFunc, bh BlockHead) error {
	C, V := m.Config.NEmbd, m.Config.Vocab
	p := m.run
	logits := a.logits[: rows*V : rows*V]
	lnf := a.lnf[r0*C:]
	G := headGroups(V)
	blocked := G > 1 && len(a.headPart) >= G*rows*C
	// One product over the pool; a BlockHead (a small vocabulary: Keep
	// and Z are the chunk's logits) then takes the chunk's units.
	m.pool.Sgemm(false, true, rows, V, C, 1, lnf, C, m.pv.wte, C, 0, logits, V)
	if bh != nil {
		h := &p.head
		*h = headArgs{bh: bh, keep: logits, first: r0, rows: rows, C: C, V: V}
		headForwardBlocks(p, h)
		m.tick(opHeadLogits)
		err := bh.Chunk(r0, rows)
		if err == nil {
			m.tick(opHeadLoss)
			headGradBlocks(p, h)
		}
		*h = headArgs{}
		if err != nil {
			return err
		}
	} else {
		m.tick(opHeadLogits)
		if err := head(logits, r0, rows); err != nil {
			return err
		}
		m.tick(opHeadLoss)
		if blocked {
			headBackwardBlocked(p, a.headPart, logits, m.pv.wte, m.gv.wte, lnf, rows, C, V)
		}
	}
	dres, dlnf := a.dres[r0*C:], a.dC[r0*C:]
	xL := a.blocks[len(a.blocks)-1].res3[r0*C:]
	if blocked {
		m.tick(opHeadDwte)
		headPartsLN(p, dres, dlnf, a.headPart, xL, m.pv.lnfw, a.lnfMean[r0:], a.lnfRstd[r0:], G, rows, C)
		m.tick(opHeadDlnf)
		return nil
	}
	linearLNBackward(p, dres, dlnf, logits, m.pv.wte, xL, m.pv.lnfw, a.lnfMean[r0:], a.lnfRstd[r0:], rows, C, V, true)
	m.tick(opHeadDlnf)
	m.pool.Sgemm(true, false, V, C, rows, 1, logits, V, lnf, C, 1, m.gv.wte, C)
	m.tick(opHeadDwte)
	return nil
}
