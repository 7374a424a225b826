package lm

import (
	"fmt"

	"github.com/klring/klring/kernels"
)

// HeadFunc is the loss at the output of the model. ForwardBackward and Forward
// call it once per chunk of rows, in order, with logits [rows, V] of the batch
// rows firstRow..firstRow+rows (row = b*T + t). A chunk holds
// min(B*T, max(256, 2^20/V)) rows (the last one fewer): about 4 MiB of
// logits for vocabularies up to 4096, and 256 rows above, so that the passes
// each chunk makes over the [V, C] embedding and its gradient (two products
// read it, one adds into its gradient) stay small beside the chunk's work,
// while the loss streams the chunk's rows one at a time through the cache. In
// ForwardBackward it must overwrite logits with dL/dlogits, where L is
// whatever the caller sums (usually the sum of per-token losses); in Forward
// what it leaves is ignored. The buffer belongs to the model and is reused by
// the next chunk.
type HeadFunc func(logits []float32, firstRow, rows int) error

// Model is a GPT-2 with its parameters, their gradient and the activation
// arena. A Model is not safe for concurrent use; the Pool it was made with may
// be shared with other models.
type Model struct {
	Config Config // the shape; read only after New
	// Params holds every parameter, laid out by Layout(); [NumParams()].
	// Write into it (copy), never replace it: the views point into it.
	Params []float32
	// Grads mirrors Params; [NumParams()] with capacity NumParams()+2, so a
	// trainer can take Grads[:NumParams()+2] to append its loss sum and token
	// count and all-reduce one contiguous slice. Backward adds into Grads.
	Grads []float32

	layout []Tensor
	pool   *kernels.Pool
	run    *runner
	pv, gv views // parameter and gradient views
	act    *arena
	// readyAt are the offsets ForwardBackwardReady reports as backward
	// finishes: readyAt[l] where block h.l starts (its ln_1), readyAt[L]
	// where ln_f starts; readyMid[l] where block h.l's ln_2 and its
	// attn.c_proj start (final before the rest of the block).
	readyAt  []int
	readyMid [][2]int
	hidden   int        // rows of act.lnf the last pass computed, for HeadLogits (teacher.go)
	blocks   *blockBufs // a BlockHead's buffers for large vocabularies, made on first use
	timer    *opTimer   // per-op wall times of the benchmark's breakdown, or nil
}

// New returns a model of shape cfg with zero parameters (call Init or load a
// checkpoint). The activation arena is allocated on the first pass.
func New(cfg Config, pool *kernels.Pool) (*Model, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("new model: %w", err)
	}
	if pool == nil {
		panic("lm: New with a nil pool")
	}
	n := cfg.NumParams()
	m := &Model{
		Config: cfg,
		Params: make([]float32, n),
		Grads:  make([]float32, n, n+2),
		layout: cfg.Layout(),
		pool:   pool,
		run:    newRunner(pool),
	}
	adviseHuge(m.Params)
	adviseHuge(m.Grads)
	if last := m.layout[len(m.layout)-1]; last.Offset+last.Size != n {
		panic("lm: layout table does not sum to NumParams")
	}
	m.pv = newViews(m.layout, cfg.NLayer, m.Params)
	m.gv = newViews(m.layout, cfg.NLayer, m.Grads[:n])
	for l := 0; l <= cfg.NLayer; l++ {
		name := fmt.Sprintf("h.%d.ln_1.weight", l)
		if l == cfg.NLayer {
			name = "ln_f.weight"
		}
		t, ok := m.Tensor(name)
		if !ok {
			panic("lm: layout table has no " + name)
		}
		m.readyAt = append(m.readyAt, t.Offset)
		if l < cfg.NLayer {
			ln2, ok2 := m.Tensor(fmt.Sprintf("h.%d.ln_2.weight", l))
			proj, ok3 := m.Tensor(fmt.Sprintf("h.%d.attn.c_proj.weight", l))
			if !ok2 || !ok3 {
				panic(fmt.Sprintf("lm: layout table has no ln_2 or attn.c_proj for block %d", l))
			}
			m.readyMid = append(m.readyMid, [2]int{ln2.Offset, proj.Offset})
		}
	}
	return m, nil
}

// Layout returns a copy of the model's layout table.
func (m *Model) Layout() []Tensor {
	ts := append([]Tensor(nil), m.layout...)
	for i := range ts {
		ts[i].Shape = append([]int(nil), ts[i].Shape...)
	}
	return ts
}

// Tensor returns the layout row named name (a Hugging Face key).
func (m *Model) Tensor(name string) (Tensor, bool) {
	for _, t := range m.layout {
		if t.Name == name {
			return t, true
		}
	}
	return Tensor{}, false
}

// Init sets the parameters as GPT-2 does, from seed alone: weights and
// embeddings normal(0, 0.02), the two residual projections of each block
// (attn.c_proj, mlp.c_proj) normal(0, 0.02/sqrt(2 n_layer)), LayerNorm weights
// 1, every bias 0. Tensors are drawn in layout order from one RNG; the padded
// rows of wte are set to zero and draw nothing, so a padded model starts as
// the unpadded one.
func (m *Model) Init(seed uint64) {
	m.checkBuffers()
	r := NewRNG(seed)
	for _, t := range m.layout {
		v := t.View(m.Params)
		clear(v[t.FileSize():]) // padded rows: zero, and no draws, so Init is the unpadded model's
		v = v[:t.FileSize()]
		if t.Std > 0 {
			for i := range v {
				v[i] = float32(r.NormFloat64() * t.Std)
			}
		} else {
			for i := range v {
				v[i] = t.Fill
			}
		}
	}
}

// ZeroGrad clears Grads, including the two trailing slots.
func (m *Model) ZeroGrad() { clearPar(m.run, m.Grads[:cap(m.Grads)]) }

func (m *Model) checkBuffers() {
	n := m.Config.NumParams()
	if len(m.Params) != n || len(m.Grads) < n || cap(m.Grads) < n+2 ||
		&m.Params[0] != &m.pv.wte[0] || &m.Grads[0] != &m.gv.wte[0] {
		panic("lm: Params or Grads was replaced; copy into them instead")
	}
}

// blockActs are the activations one block keeps for backward.
type blockActs struct {
	ln1, ln1Mean, ln1Rstd []float32 // [N, C], [N], [N]
	qkv                   []float32 // [N, 3C]
	atty                  []float32 // [N, C]
	lse                   []float32 // [B, NH, T]
	res2                  []float32 // [N, C]: block input + attention
	ln2, ln2Mean, ln2Rstd []float32 // [N, C], [N], [N]
	fch, fchGelu          []float32 // [N, 4C]: gelu'(c_fc output), gelu(c_fc output)
	res3                  []float32 // [N, C]: block output
}

// arena is every buffer a pass needs, cut from one allocation sized for up to
// maxN = B*T rows and sequences of up to maxT.
type arena struct {
	maxN, maxT int
	headRows   int // rows of the logits chunk
	buf        []float32

	encoded               []float32 // [N, C]
	blocks                []blockActs
	lnf, lnfMean, lnfRstd []float32 // [N, C], [N], [N]
	logits                []float32 // [headRows, V]
	headPart              []float32 // [headGroups(V), headRows, C]: d(lnf) partial sums of the blocked head
	attn                  []float32 // [slots, 2*attnBlock*maxT]
	// Gradient scratch, one block's worth, reused by every block.
	dres []float32 // [N, C]: d(residual stream)
	dC   []float32 // [N, C]
	dqkv []float32 // [N, 3C]
	dfch []float32 // [N, 4C]
}

func newArena(cfg Config, maxN, maxT, slots int) *arena {
	C, V, L, NH := cfg.NEmbd, cfg.Vocab, cfg.NLayer, cfg.NHead
	a := &arena{maxN: maxN, maxT: maxT}
	a.headRows = min(maxN, max(headMinRows, (1<<20)/V))
	N := maxN
	var sizes []int
	total := 0
	take := func(n int) int { sizes = append(sizes, n); total += n; return n }
	// First pass counts, second pass cuts; both walk the same list.
	cut := func(pass int) {
		off := 0
		i := 0
		next := func(n int) []float32 {
			if pass == 0 {
				take(n)
				return nil
			}
			if sizes[i] != n {
				panic("lm: arena passes disagree")
			}
			i++
			s := a.buf[off : off+n : off+n]
			off += n
			return s
		}
		a.encoded = next(N * C)
		a.blocks = make([]blockActs, L)
		for l := range a.blocks {
			b := &a.blocks[l]
			b.ln1, b.ln1Mean, b.ln1Rstd = next(N*C), next(N), next(N)
			b.qkv, b.atty, b.lse, b.res2 = next(N*3*C), next(N*C), next(N*NH), next(N*C)
			b.ln2, b.ln2Mean, b.ln2Rstd = next(N*C), next(N), next(N)
			b.fch, b.fchGelu, b.res3 = next(N*4*C), next(N*4*C), next(N*C)
		}
		a.lnf, a.lnfMean, a.lnfRstd = next(N*C), next(N), next(N)
		a.logits = next(a.headRows * V)
		a.headPart = next(headGroups(V) * a.headRows * C)
		a.attn = next(slots * attnScratch(maxT))
		a.dres, a.dC, a.dqkv = next(N*C), next(N*C), next(N*3*C)
		a.dfch = next(N * 4 * C)
	}
	cut(0)
	a.buf = make([]float32, total)
	adviseHuge(a.buf)
	cut(1)
	return a
}

// headMinRows is the least number of rows of a head chunk (HeadFunc).
const headMinRows = 256

// ensure sizes the arena for B sequences of T tokens; it allocates only when
// the arena is too small, so a training loop allocates once.
func (m *Model) ensure(B, T int) *arena {
	if a := m.act; a != nil && B*T <= a.maxN && T <= a.maxT {
		return a
	}
	maxN, maxT := B*T, T
	if a := m.act; a != nil {
		maxN, maxT = max(maxN, a.maxN), max(maxT, a.maxT)
		m.act = nil // let the old arena go before the new one is made
	}
	m.act = newArena(m.Config, maxN, maxT, m.pool.Threads())
	return m.act
}

// ArenaBytes is the size of the activation arena now allocated.
func (m *Model) ArenaBytes() int {
	if m.act == nil {
		return 0
	}
	return 4 * len(m.act.buf)
}

func (m *Model) checkInput(tokens []int32, B, T int) error {
	if B < 1 || T < 1 || T > m.Config.Ctx {
		panic(fmt.Sprintf("lm: B=%d T=%d, want B >= 1 and 1 <= T <= ctx %d", B, T, m.Config.Ctx))
	}
	if len(tokens) != B*T {
		panic(fmt.Sprintf("lm: %d tokens, want B*T = %d", len(tokens), B*T))
	}
	m.checkParams()
	V := int32(m.Config.Vocab)
	for i, t := range tokens {
		if t < 0 || t >= V {
			return fmt.Errorf("token %d at position %d not in [0, %d): %w", t, i, V, ErrTokenRange)
		}
	}
	return nil
}

// forward runs the blocks and the final LayerNorm, leaving lnf in the arena.
// Each LayerNorm runs in the epilogue of the product before it (the first in
// the encoder's pass), the biases and GELU in their product's.
func (m *Model) forward(a *arena, tokens []int32, B, T int) {
	cfg := m.Config
	C, NH, N := cfg.NEmbd, cfg.NHead, B*T
	p := m.run
	b0, w0 := &a.blocks[0], &m.pv.blocks[0]
	encoderLN(p, a.encoded, b0.ln1, b0.ln1Mean, b0.ln1Rstd, tokens, m.pv.wte, m.pv.wpe, w0.ln1w, w0.ln1b, B, T, C)
	m.tick(opEmbedLN)
	x := a.encoded
	for l := range a.blocks {
		w, s := &m.pv.blocks[l], &a.blocks[l]
		linearBias(p, s.qkv, s.ln1, w.qkvw, w.qkvb, N, C, 3*C)
		m.tick(opQKV)
		attentionForward(p, s.atty, s.lse, a.attn, s.qkv, B, T, C, NH)
		m.tick(opAttn)
		linearResidualLN(p, s.res2, s.ln2, s.ln2Mean, s.ln2Rstd, s.atty, w.attprojw, w.attprojb, x, w.ln2w, w.ln2b, N, C, C)
		m.tick(opAttProjLN)
		linearBiasGelu(p, s.fchGelu, s.fch, s.ln2, w.fcw, w.fcb, N, C, 4*C)
		m.tick(opFCGelu)
		ln, mean, rstd, lnw, lnb := a.lnf, a.lnfMean, a.lnfRstd, m.pv.lnfw, m.pv.lnfb
		if l+1 < len(a.blocks) {
			nb, nw := &a.blocks[l+1], &m.pv.blocks[l+1]
			ln, mean, rstd, lnw, lnb = nb.ln1, nb.ln1Mean, nb.ln1Rstd, nw.ln1w, nw.ln1b
		}
		linearResidualLN(p, s.res3, ln, mean, rstd, s.fchGelu, w.fcprojw, w.fcprojb, s.res2, lnw, lnb, N, 4*C, C)
		m.tick(opFCProjLN)
		x = s.res3
	}
	m.hidden = N // the last block's epilogue wrote a.lnf
}

// Forward runs the model over tokens [B, T] (1 <= T <= Ctx) and hands the
// logits to head chunk by chunk, for evaluation; Grads are not touched. A
// token outside [0, V) is an error (ErrTokenRange) and nothing is computed.
func (m *Model) Forward(tokens []int32, B, T int, head HeadFunc) error {
	if err := m.checkInput(tokens, B, T); err != nil {
		return fmt.Errorf("forward: %w", err)
	}
	a := m.ensure(B, T)
	m.forward(a, tokens, B, T)
	C, V, N := m.Config.NEmbd, m.Config.Vocab, B*T
	for r0 := 0; r0 < N; r0 += a.headRows {
		rows := min(a.headRows, N-r0)
		logits := a.logits[: rows*V : rows*V]
		m.pool.Sgemm(false, true, rows, V, C, 1, a.lnf[r0*C:], C, m.pv.wte, C, 0, logits, V)
		if err := head(logits, r0, rows); err != nil {
			return fmt.Errorf("forward: head rows %d..%d: %w", r0, r0+rows, err)
		}
	}
	return nil
}

// ForwardBackward runs the model over tokens [B, T], lets head turn each chunk
// of logits into dL/dlogits, and ADDS dL/dparams into Grads (call ZeroGrad
// first for a fresh gradient). A token outside [0, V) is an error and Grads are
// untouched; if head fails, the error is returned wrapped and Grads hold a
// partial sum (zero them before reuse).
func (m *Model) ForwardBackward(tokens []int32, B, T int, head HeadFunc) error {
	return m.ForwardBackwardReady(tokens, B, T, head, nil)
}

// ReadyFunc is told, during backward, that Grads[lo:NumParams] are final:
// the call adds nothing more to them. Backward finishes the layout's end
// first: ln_f (after the head), then blocks h.L-1 down to h.0 (in each, the
// MLP from its ln_2, then attn.c_proj, then the rest from ln_1), then the
// embeddings (wte last, since the head is tied to it), so lo only falls,
// to 0 in the last call.
type ReadyFunc func(lo int)

// ForwardBackwardReady is ForwardBackward calling ready (when not nil) as
// the gradients become final, from the end of the layout to its start (a
// ring all-reduce can start on them while backward computes the rest).
func (m *Model) ForwardBackwardReady(tokens []int32, B, T int, head HeadFunc, ready ReadyFunc) error {
	return m.forwardBackward(tokens, B, T, head, nil, ready)
}

// ForwardBackwardBlocks is ForwardBackwardReady with a BlockHead: the head
// handles each chunk's logits by blocks of vocabulary columns while they are
// in cache. ready may be nil.
func (m *Model) ForwardBackwardBlocks(tokens []int32, B, T int, head BlockHead, ready ReadyFunc) error {
	return m.forwardBackward(tokens, B, T, nil, head, ready)
}

// forwardBackward is ForwardBackwardReady with either head or bh.
func (m *Model) forwardBackward(tokens []int32, B, T int, head HeadFunc, bh BlockHead, ready ReadyFunc) error {
	m.checkTrainable()
	if err := m.checkInput(tokens, B, T); err != nil {
		return fmt.Errorf("forward-backward: %w", err)
	}
	cfg := m.Config
	C, NH, N := cfg.NEmbd, cfg.NHead, B*T
	p := m.run
	a := m.ensure(B, T)
	m.forward(a, tokens, B, T)

	// Tied head in row chunks: logits, the loss's gradient over them, then
	// d(lnf) for the chunk with the final LayerNorm's backward in its
	// epilogue (setting d(residual)), and d(wte) accumulated.
	dlnf := a.dC[: N*C : N*C]
	dres := a.dres[:N*C]
	xL := a.blocks[len(a.blocks)-1].res3
	if bh != nil && HeadBlocked(cfg.Vocab) {
		if err := m.blockHeadPass(a, bh, N); err != nil {
			return fmt.Errorf("forward-backward: %w", err)
		}
	} else {
		for r0 := 0; r0 < N; r0 += a.headRows {
			rows := min(a.headRows, N-r0)
			if err := m.headChunk(a, r0, rows, head, bh); err != nil {
				return fmt.Errorf("forward-backward: head rows %d..%d: %w", r0, r0+rows, err)
			}
		}
	}
	lnParamGrads(p, m.gv.lnfw, m.gv.lnfb, dlnf, xL, a.lnfMean, a.lnfRstd, N, C)
	m.tick(opBiasLNGrads)
	m.ready(ready, m.readyAt[len(a.blocks)]) // ln_f

	dC, dqkv, dfch := a.dC[:N*C], a.dqkv[:N*3*C], a.dfch[:N*4*C]
	for l := len(a.blocks) - 1; l >= 0; l-- {
		w, g, s := &m.pv.blocks[l], &m.gv.blocks[l], &a.blocks[l]
		x := a.encoded
		if l > 0 {
			x = a.blocks[l-1].res3
		}
		// MLP: res3 = res2 + c_proj(gelu(c_fc(ln_2(res2)))). dres holds
		// d(res3) until ln_2's backward adds into it.
		linearGeluBackward(p, dfch, s.fch, dres, w.fcprojw, N, 4*C, C)
		m.tick(opFCProjBwdGelu)
		m.pool.Sgemm(true, false, C, 4*C, N, 1, dres, C, s.fchGelu, 4*C, 1, g.fcprojw, 4*C)
		m.tick(opWeightGrads)
		biasGrad(p, g.fcprojb, dres, N, C)
		m.tick(opBiasLNGrads)
		linearLNBackward(p, dres, dC, dfch, w.fcw, s.res2, w.ln2w, s.ln2Mean, s.ln2Rstd, N, C, 4*C, false)
		m.tick(opFCBwdLN)
		m.pool.Sgemm(true, false, 4*C, C, N, 1, dfch, 4*C, s.ln2, C, 1, g.fcw, C)
		m.tick(opWeightGrads)
		biasGrad(p, g.fcb, dfch, N, 4*C)
		lnParamGrads(p, g.ln2w, g.ln2b, dC, s.res2, s.ln2Mean, s.ln2Rstd, N, C)
		m.tick(opBiasLNGrads)
		m.ready(ready, m.readyMid[l][0]) // the MLP, from its ln_2
		// Attention: res2 = x + c_proj(attn(c_attn(ln_1(x)))).
		m.pool.Sgemm(false, false, N, C, C, 1, dres, C, w.attprojw, C, 0, dC, C)
		m.tick(opAttProjBwd)
		m.pool.Sgemm(true, false, C, C, N, 1, dres, C, s.atty, C, 1, g.attprojw, C)
		m.tick(opWeightGrads)
		biasGrad(p, g.attprojb, dres, N, C)
		clearPar(p, dqkv)
		m.tick(opBiasLNGrads)
		m.ready(ready, m.readyMid[l][1]) // attn.c_proj
		attentionBackward(p, dqkv, a.attn, dC, s.qkv, s.lse, B, T, C, NH)
		m.tick(opAttnBwd)
		linearLNBackward(p, dres, dC, dqkv, w.qkvw, x, w.ln1w, s.ln1Mean, s.ln1Rstd, N, C, 3*C, false)
		m.tick(opQKVBwdLN)
		m.pool.Sgemm(true, false, 3*C, C, N, 1, dqkv, 3*C, s.ln1, C, 1, g.qkvw, C)
		m.tick(opWeightGrads)
		biasGrad(p, g.qkvb, dqkv, N, 3*C)
		lnParamGrads(p, g.ln1w, g.ln1b, dC, x, s.ln1Mean, s.ln1Rstd, N, C)
		m.tick(opBiasLNGrads)
		m.ready(ready, m.readyAt[l]) // block l, from its ln_1
	}
	encoderBackward(m.gv.wte, m.gv.wpe, dres, tokens, B, T, C)
	m.tick(opEmbedBwd)
	m.ready(ready, 0)
	return nil
}

// ready tells ready, if not nil, that the gradients from offset lo on are
// final.
func (m *Model) ready(ready ReadyFunc, lo int) {
	if ready != nil {
		ready(lo)
	}
}
