package loss

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"sync"

	"github.com/klring/klring/kernels"
)

// Target is the target distribution P of every row. Exactly one soft kind
// (Probs, LogProbs, Sparse or TeacherLogits) or Hard alone is set; Hard may
// also come beside a soft kind, as the next tokens of the cross-entropy of
// Options.HardWeight. Any other mix, or none, is a programmer error and
// panics.
type Target struct {
	// Hard holds one token id per row [rows]: alone, P is one-hot (smoothed
	// by Options.LabelSmoothing); beside a soft kind, the tokens of the
	// cross-entropy that Result.CE reports and Options.HardWeight mixes in.
	// Options.IgnoreIndex skips a row either way.
	Hard []int32
	// Probs holds probabilities [rows x vocab], each row summing to 1 within
	// 1e-3. Zeros are allowed.
	Probs []float32
	// LogProbs holds log-probabilities [rows x vocab]; -Inf is probability 0.
	LogProbs []float32
	// SparseIDs and SparseProbs hold K (id, probability) pairs per row
	// [rows x K]: a top-k target, such as a teacher's precomputed top k. The
	// ids of a row are distinct; the probabilities sum to S in (0, 1+1e-3].
	// The mass 1 - S of the ids not listed (none when S is within 1e-6 of
	// 1, or more) goes by Options.TeacherTail; with K = vocab the row must
	// sum to 1 within 1e-3 and is used as given.
	SparseIDs   []int32
	SparseProbs []float32
	K           int
	// TeacherLogits holds a teacher's logits for the same rows [rows x
	// vocab]: P = softmax(t / Options.TeacherTemperature), cut to its top k
	// by Options.TeacherTopK. log P is computed from the logits (t/T_t -
	// logsumexp), so a probability that underflows never becomes log 0.
	// -Inf masks a token (P = 0).
	TeacherLogits []float32
}

type targetKind int

const (
	kindHard targetKind = iota
	kindProbs
	kindLogProbs
	kindSparse
	kindTeacher
)

// kind returns the soft kind set (kindHard when Hard is alone) and whether
// Hard is set, and panics on a shape mismatch.
func (t *Target) kind(rows, vocab int) (k targetKind, hard bool) {
	n := 0
	k = kindHard
	if t.Hard != nil {
		hard = true
		if len(t.Hard) != rows {
			panic(fmt.Sprintf("loss: len(Target.Hard) = %d, want rows = %d", len(t.Hard), rows))
		}
	}
	if t.Probs != nil {
		n, k = n+1, kindProbs
		if len(t.Probs) != rows*vocab {
			panic(fmt.Sprintf("loss: len(Target.Probs) = %d, want rows*vocab = %d", len(t.Probs), rows*vocab))
		}
	}
	if t.LogProbs != nil {
		n, k = n+1, kindLogProbs
		if len(t.LogProbs) != rows*vocab {
			panic(fmt.Sprintf("loss: len(Target.LogProbs) = %d, want rows*vocab = %d", len(t.LogProbs), rows*vocab))
		}
	}
	if t.SparseIDs != nil || t.SparseProbs != nil {
		n, k = n+1, kindSparse
		if t.K < 1 || t.K > vocab || len(t.SparseIDs) != rows*t.K || len(t.SparseProbs) != rows*t.K {
			panic(fmt.Sprintf("loss: sparse target with K = %d, len(SparseIDs) = %d, len(SparseProbs) = %d, want 1 <= K <= vocab = %d and rows*K = %d each",
				t.K, len(t.SparseIDs), len(t.SparseProbs), vocab, rows*t.K))
		}
	}
	if t.TeacherLogits != nil {
		n, k = n+1, kindTeacher
		if len(t.TeacherLogits) != rows*vocab {
			panic(fmt.Sprintf("loss: len(Target.TeacherLogits) = %d, want rows*vocab = %d", len(t.TeacherLogits), rows*vocab))
		}
	}
	if n > 1 || n == 0 && !hard {
		panic(fmt.Sprintf("loss: target sets %d soft kinds and Hard %v, want one of Probs, LogProbs, Sparse, TeacherLogits (Hard may come beside it), or Hard alone", n, hard))
	}
	return k, hard
}

// Result is the unreduced outcome of a call, summed over the rows not
// ignored.
type Result struct {
	// Sum is the sum of the per-row losses, (1-w)*Div + w*CE for
	// Options.HardWeight w (ignored rows add 0).
	Sum  float64
	Rows int // rows not ignored
	// Div is the sum of the per-row divergences (times T^2 with ScaleT2).
	Div float64
	// CE is the sum of the per-row cross-entropies of Target.Hard at
	// temperature 1, -log softmax(z)[hard]; 0 when Target.Hard is nil.
	CE float64
	// Kept is the sum of the per-row target mass kept by a top-k target
	// (S, before any tail or smoothing: the teacher's or the sparse row's),
	// and 1 per row for every other target.
	Kept float64
}

// Reduce reduces r as PyTorch does: Sum and None return r.Sum, BatchMean
// r.Sum/r.Rows, Mean r.Sum/(r.Rows*vocab). With no rows it returns 0.
func Reduce(r Result, red Reduction, vocab int) float64 {
	switch red {
	case Sum, None:
		return r.Sum
	case BatchMean:
		if r.Rows == 0 {
			return 0
		}
		return r.Sum / float64(r.Rows)
	case Mean:
		if r.Rows == 0 || vocab == 0 {
			return 0
		}
		return r.Sum / (float64(r.Rows) * float64(vocab))
	}
	panic(fmt.Sprintf("loss: unknown reduction %d", int(red)))
}

// GradScale returns the gradScale that makes ForwardBackward write the
// gradient of Reduce(result, red, vocab) for a result of rows rows not
// ignored (1 for Sum and None). It returns 0 when rows is 0.
func GradScale(red Reduction, rows, vocab int) float32 {
	switch red {
	case Sum, None:
		return 1
	case BatchMean:
		if rows == 0 {
			return 0
		}
		return float32(1 / float64(rows))
	case Mean:
		if rows == 0 || vocab == 0 {
			return 0
		}
		return float32(1 / (float64(rows) * float64(vocab)))
	}
	panic(fmt.Sprintf("loss: unknown reduction %d", int(red)))
}

// Computer computes losses and gradients. It owns per-goroutine scratch,
// which it reuses: in the steady state a call allocates nothing (when it runs
// on one goroutine; a call split over the pool allocates only the pool's
// goroutine bookkeeping). One Computer must not be used by two goroutines at
// once; several Computers may share a Pool.
type Computer struct {
	pool *kernels.Pool
	body func(lo, hi int) // c.runRange, bound once so For gets no new closure

	job     job
	rowBuf  []float64 // per-row losses when the caller passes none
	partBuf []float64 // per-row divergence, cross-entropy and kept mass [3 x rows]
	mu      sync.Mutex
	free    []*scratch // guarded by mu
	errRow  int        // lowest failing row, guarded by mu
	errLast error      // its error, guarded by mu

	noFast   bool // tests: run every row on the float64 reference path
	fastOnly bool // tests: a row the fast paths decline is an error
}

// NewComputer returns a Computer drawing its goroutines from pool. A nil pool
// means one goroutine (the caller's).
func NewComputer(pool *kernels.Pool) *Computer {
	if pool == nil {
		pool = kernels.NewPool(1)
	}
	c := &Computer{pool: pool}
	c.body = c.runRange
	return c
}

// Forward computes the per-row losses of logits [rows x vocab] against t.
// It writes rowLoss [rows] when rowLoss is not nil and never writes logits.
// Bad data returns a *RowError (wrapped) naming the first bad row.
func (c *Computer) Forward(logits []float32, rows, vocab int, t Target, o Options, rowLoss []float64) (Result, error) {
	res, err := c.run(logits, rows, vocab, t, o, false, 0, rowLoss)
	if err != nil {
		return Result{}, &opError{op: "forward", err: err}
	}
	return res, nil
}

// ForwardBackward is Forward, and it writes gradScale * d(sum of row
// losses)/d(logits) over logits (rows of ignored targets and masked logits
// get 0). Pass GradScale(red, ...) for the gradient of a reduction, or
// 1/(global token count) for a data-parallel mean. On error the contents of
// logits are unspecified (rows before and beside the bad one may already
// hold gradients).
func (c *Computer) ForwardBackward(logits []float32, rows, vocab int, t Target, o Options, gradScale float32, rowLoss []float64) (Result, error) {
	res, err := c.run(logits, rows, vocab, t, o, true, gradScale, rowLoss)
	if err != nil {
		return Result{}, &opError{op: "forward backward", err: err}
	}
	return res, nil
}

// opError names the operation of an error: "loss: forward: row 3: ...".
// It unwraps to the *RowError or the ErrOption error it carries.
type opError struct {
	op  string
	err error
}

func (e *opError) Error() string {
	return "loss: " + e.op + ": " + strings.TrimPrefix(e.err.Error(), "loss: ")
}

func (e *opError) Unwrap() error { return e.err }

// job is the state of one call, shared by the goroutines of its rows.
type job struct {
	logits   []float32 // [rows x vocab], read; written with gradients when backward
	rows     int
	vocab    int
	t        Target
	kind     targetKind // the soft kind, or kindHard for Hard alone
	hasHard  bool       // Target.Hard is set: each row also reports its cross-entropy
	o        Options
	dir      Direction // the direction rows compute (JSD at beta 0 or 1 is forward or reverse)
	topK     int       // ids of a top-k target with a tail (0 < topK < vocab), else 0
	backward bool
	loss     []float64 // [rows] written
	div      []float64 // [rows] written: divergence (times t2)
	ce       []float64 // [rows] written: cross-entropy of the hard token
	kept     []float64 // [rows] written: target mass kept by top-k

	a  float64 // 1/T
	at float64 // 1/T_t, the teacher's
	t2 float64 // T^2 when ScaleT2, else 1
	gc float64 // (1-w) * gradScale * a * t2: d loss/d logit = gc * dD/d(z/T) / t2
	gh float64 // w * gradScale: the cross-entropy's share of the gradient

	noFast   bool // tests: every row on rowGeneric
	fastOnly bool // tests: a row the fast paths decline is an error
}

// rowOut is what a row contributes.
type rowOut struct {
	loss, div, ce, kept float64
}

func (c *Computer) run(logits []float32, rows, vocab int, t Target, o Options, backward bool, gradScale float32, rowLoss []float64) (Result, error) {
	if rows < 0 || vocab < 1 {
		panic(fmt.Sprintf("loss: rows = %d, vocab = %d, want rows >= 0 and vocab >= 1", rows, vocab))
	}
	if len(logits) != rows*vocab {
		panic(fmt.Sprintf("loss: len(logits) = %d, want rows*vocab = %d", len(logits), rows*vocab))
	}
	if rowLoss != nil && len(rowLoss) != rows {
		panic(fmt.Sprintf("loss: len(rowLoss) = %d, want rows = %d", len(rowLoss), rows))
	}
	kind, hasHard := t.kind(rows, vocab)
	if err := o.Validate(); err != nil {
		return Result{}, err
	}
	topK, err := checkFit(kind, hasHard, t.K, vocab, o)
	if err != nil {
		return Result{}, err
	}
	a := 1 / o.Temperature
	t2 := 1.0
	if o.ScaleT2 {
		t2 = o.Temperature * o.Temperature
	}
	gs, err := checkScale(gradScale, a, t2)
	if err != nil {
		return Result{}, err
	}
	if rows == 0 {
		return Result{}, nil
	}
	loss := rowLoss
	if loss == nil {
		if cap(c.rowBuf) < rows {
			c.rowBuf = make([]float64, rows)
		}
		loss = c.rowBuf[:rows]
	}
	if cap(c.partBuf) < 3*rows {
		c.partBuf = make([]float64, 3*rows)
	}
	parts := c.partBuf[:3*rows]
	w := o.HardWeight
	c.job = job{logits: logits, rows: rows, vocab: vocab, t: t, kind: kind, hasHard: hasHard, o: o,
		dir: o.effectiveDirection(), topK: topK, backward: backward,
		loss: loss, div: parts[:rows], ce: parts[rows : 2*rows], kept: parts[2*rows:],
		a: a, at: 1 / o.TeacherTemperature, t2: t2, gc: (1 - w) * gs, gh: w * float64(gradScale),
		noFast: c.noFast, fastOnly: c.fastOnly}
	c.errRow, c.errLast = rows, nil
	c.pool.For(rows, max(1, (1<<16)/vocab), c.body)
	c.job = job{} // keep no reference to the caller's buffers
	if c.errLast != nil {
		return Result{}, &RowError{Row: c.errRow, Err: c.errLast}
	}
	res := Result{Rows: rows}
	div, ce, kept := parts[:rows], parts[rows:2*rows], parts[2*rows:]
	for r, l := range loss {
		res.Sum += l
		res.Div += div[r]
		res.CE += ce[r]
		res.Kept += kept[r]
	}
	if hasHard {
		for _, id := range t.Hard {
			if id == o.IgnoreIndex {
				res.Rows--
			}
		}
	}
	return res, nil
}

// checkFit checks that the options fit the target and returns the number of
// ids of a top-k target with a tail (0 for a target without one).
func checkFit(kind targetKind, hasHard bool, K, vocab int, o Options) (int, error) {
	if o.HardWeight > 0 && (!hasHard || kind == kindHard) {
		return 0, fmt.Errorf("%w: hard weight %v needs Target.Hard beside a soft target", ErrOption, o.HardWeight)
	}
	if o.LabelSmoothing != 0 && (kind == kindProbs || kind == kindLogProbs) {
		return 0, fmt.Errorf("%w: label smoothing %v needs hard, teacher-logit or sparse targets", ErrOption, o.LabelSmoothing)
	}
	topK := 0
	switch kind {
	case kindSparse:
		if o.TeacherTopK != 0 && o.TeacherTopK != K {
			return 0, fmt.Errorf("%w: teacher top k %d, but the sparse target lists K = %d ids per row", ErrOption, o.TeacherTopK, K)
		}
		if K < vocab {
			topK = K
		}
	case kindTeacher:
		if o.TeacherTopK < vocab {
			topK = o.TeacherTopK
		}
	}
	if topK == 0 {
		return 0, nil
	}
	dir := o.effectiveDirection()
	if o.TeacherTail == TailRest && dir != Forward {
		return 0, fmt.Errorf("%w: teacher tail rest is defined for forward KL only, not %v (beta %v)", ErrOption, o.Direction, o.Beta)
	}
	if o.TeacherTail == TailRenormalize && dir == Reverse && o.LabelSmoothing == 0 {
		zeros := fmt.Sprintf("the other %d ids", vocab-topK)
		if vocab == unknownVocab {
			zeros = "every id outside its top k"
		}
		return 0, fmt.Errorf("%w: reverse KL against a renormalized top-%d target is infinite (it gives 0 to %s): use the uniform tail or label smoothing",
			ErrOption, topK, zeros)
	}
	return topK, nil
}

// runRange computes rows [lo, hi) and stops at the first bad row.
func (c *Computer) runRange(lo, hi int) {
	j := &c.job
	sc := c.getScratch(j.vocab)
	defer c.putScratch(sc)
	for r := lo; r < hi; r++ {
		out, err := j.row(sc, r)
		if err != nil {
			c.mu.Lock()
			if r < c.errRow {
				c.errRow, c.errLast = r, err
			}
			c.mu.Unlock()
			return
		}
		j.loss[r], j.div[r], j.ce[r], j.kept[r] = out.loss, out.div, out.ce, out.kept
	}
}

// scratch is one goroutine's working memory, [vocab] each.
type scratch struct {
	s   []float64 // scaled logits, then log q
	p   []float64 // the target row
	lp  []float64 // log of the target row (-Inf where 0)
	dg  []float64 // reference path: the divergence's gradient
	f   []float32 // fast paths' exp row when logits must stay unchanged
	p32 []float32 // fast paths: a target row as probabilities or log-probabilities
	g   []float32 // fast paths: a second row of scratch
	m   []float32 // JSD fast path: the mixture M, then log M
	u1  []float32 // teacher fast paths: the teacher's exp row, or a built target row
	u2  []float32 // teacher fast paths: a second one
	e1  []float32 // the exp row of the cross-entropy at temperature 1

	mark []uint32 // sparse fast path: mark[id] == gen for the ids of the row
	gen  uint32
	idx  []int32 // reference path: ids in order of teacher logit
	tk   topk    // the top-k target of the row
}

func (c *Computer) getScratch(vocab int) *scratch {
	c.mu.Lock()
	var sc *scratch
	if n := len(c.free); n > 0 {
		sc = c.free[n-1]
		c.free = c.free[:n-1]
	}
	c.mu.Unlock()
	if sc == nil {
		sc = new(scratch)
	}
	if cap(sc.s) < vocab {
		sc.s = make([]float64, vocab)
		sc.p = make([]float64, vocab)
		sc.lp = make([]float64, vocab)
		sc.dg = make([]float64, vocab)
		sc.f = make([]float32, vocab)
		sc.p32 = make([]float32, vocab)
		sc.g = make([]float32, vocab)
		sc.m = make([]float32, vocab)
		sc.u1 = make([]float32, vocab)
		sc.u2 = make([]float32, vocab)
		sc.e1 = make([]float32, vocab)
		sc.mark = make([]uint32, vocab)
		sc.gen = 0
		sc.idx = make([]int32, vocab)
		sc.tk.alloc(vocab)
	}
	return sc
}

func (c *Computer) putScratch(sc *scratch) {
	c.mu.Lock()
	c.free = append(c.free, sc)
	c.mu.Unlock()
}

// row computes row r: its loss, parts and, when the job is backward, its
// gradient.
func (j *job) row(sc *scratch, r int) (rowOut, error) {
	V := j.vocab
	if j.hasHard && j.t.Hard[r] == j.o.IgnoreIndex {
		if j.backward {
			clear(j.logits[r*V : (r+1)*V])
		}
		return rowOut{}, nil
	}
	if !j.noFast {
		if out, ok := j.rowFast(sc, r); ok {
			return out, nil
		}
		if j.fastOnly {
			return rowOut{}, errFastDeclined
		}
	}
	return j.rowGeneric(sc, r)
}

// errFastDeclined is the error of a row the fast paths decline when the
// Computer's fastOnly (a test switch) is set.
var errFastDeclined = errors.New("loss: the fast paths declined the row")

// rowGeneric is the reference path, in float64 throughout: it handles every
// direction, target kind, masked logits and extreme values, and finds the
// exact error of a bad row. The fast paths fall back to it.
func (j *job) rowGeneric(sc *scratch, r int) (rowOut, error) {
	V := j.vocab
	z := j.logits[r*V : (r+1)*V : (r+1)*V]
	s := sc.s[:V:V]
	// One pass: validation, and the online maximum and sum of exp(s - m),
	// rescaled whenever the maximum grows.
	m, sumE := math.Inf(-1), 0.0
	for i, v := range z {
		if v != v || v > math.MaxFloat32 {
			return rowOut{}, fmt.Errorf("%w: logit %d = %v", ErrNonFiniteLogit, i, v)
		}
		x := float64(v) * j.a
		s[i] = x
		switch {
		case x > m:
			sumE = sumE*math.Exp(m-x) + 1 // exp(-Inf) = 0 at the first finite x
			m = x
		case x > math.Inf(-1):
			sumE += math.Exp(x - m)
		}
	}
	if math.IsInf(m, -1) {
		return rowOut{}, ErrAllMasked
	}
	ls := math.Log(sumE)
	for i, x := range s {
		s[i] = (x - m) - ls // log q; x - m first, exact for the large terms; -Inf stays -Inf
	}
	// The cross-entropy of the hard token at temperature 1, from z itself.
	var out rowOut
	hardID, lse1 := int32(-1), 0.0
	if j.hasHard {
		hardID = j.t.Hard[r]
		if hardID < 0 || int(hardID) >= V {
			return rowOut{}, fmt.Errorf("%w: target id %d, vocab %d", ErrTokenRange, hardID, V)
		}
		if math.IsInf(float64(z[hardID]), -1) {
			return rowOut{}, fmt.Errorf("%w: hard target %d is a masked logit", ErrInfiniteKL, hardID)
		}
		lse1 = logSumExp32(z)
		out.ce = lse1 - float64(z[hardID])
	}
	tr, err := j.targetRow(sc, r)
	if err != nil {
		return rowOut{}, err
	}
	p, lp := tr.p, tr.lp
	dg := sc.dg[:V:V] // dD/ds
	var L float64
	switch {
	case tr.rest:
		L, err = restGeneric(s, tr, dg, sc)
		if err != nil {
			return rowOut{}, err
		}
	case j.dir == Forward:
		S := 0.0
		for i, pi := range p {
			if pi == 0 {
				continue
			}
			if math.IsInf(s[i], -1) {
				return rowOut{}, fmt.Errorf("%w: target gives mass %v to masked logit %d", ErrInfiniteKL, pi, i)
			}
			S += pi
			L += pi * (lp[i] - s[i])
		}
		for i := range dg {
			dg[i] = math.Exp(s[i])*S - p[i]
		}
	case j.dir == Reverse:
		for i, lq := range s {
			if math.IsInf(lq, -1) {
				continue
			}
			if math.IsInf(lp[i], -1) {
				return rowOut{}, fmt.Errorf("%w: target gives 0 to token %d, the model %v", ErrInfiniteKL, i, math.Exp(lq))
			}
			L += math.Exp(lq) * (lq - lp[i])
		}
		for i, lq := range s {
			if math.IsInf(lq, -1) {
				dg[i] = 0
				continue
			}
			dg[i] = math.Exp(lq) * (lq - lp[i] - L)
		}
	default: // JSD with 0 < beta < 1
		beta := j.o.Beta
		lb, l1b := math.Log(beta), math.Log1p(-beta)
		var kp, kq float64 // D_KL(P||M), D_KL(Q||M)
		for i, lq := range s {
			lm := logAddExp(lb+lp[i], l1b+lq)
			if p[i] > 0 {
				kp += p[i] * (lp[i] - lm)
			}
			if !math.IsInf(lq, -1) {
				kq += math.Exp(lq) * (lq - lm)
			}
			lp[i] = lm // keep log m for the gradient
		}
		L = beta*kp + (1-beta)*kq
		for i, lq := range s {
			if math.IsInf(lq, -1) {
				dg[i] = 0
				continue
			}
			dg[i] = (1 - beta) * math.Exp(lq) * (lq - lp[i] - kq)
		}
	}
	out.div = L * j.t2
	out.kept = tr.kept
	w := j.o.HardWeight
	out.loss = (1-w)*out.div + w*out.ce
	if j.backward {
		g := z
		for i := range g {
			v := j.gc * dg[i]
			if j.gh != 0 && !math.IsInf(float64(z[i]), -1) {
				q1 := math.Exp(float64(z[i]) - lse1)
				if int32(i) == hardID {
					q1 = math.Expm1(float64(z[i]) - lse1)
				}
				v += j.gh * q1
			}
			g[i] = float32(v)
		}
		for i, v := range g {
			if v > math.MaxFloat32 || v < -math.MaxFloat32 {
				return rowOut{}, fmt.Errorf("%w: gradient %d = %v", ErrGradOverflow, i, v)
			}
		}
	}
	return out, nil
}

// restGeneric is forward KL over the listed ids plus one bucket for the rest
// (TailRest), with s = log q; it writes dD/ds into dg.
func restGeneric(s []float64, tr targetRowOut, dg []float64, sc *scratch) (float64, error) {
	p, lp, listed := tr.p, tr.lp, sc.mark
	// log Q_rest as a log-sum-exp over the ids not listed: exact however
	// small the rest is.
	lqr := math.Inf(-1)
	mx := math.Inf(-1)
	for i, lq := range s {
		if listed[i] != sc.gen {
			mx = max(mx, lq)
		}
	}
	if !math.IsInf(mx, -1) {
		acc := 0.0
		for i, lq := range s {
			if listed[i] != sc.gen {
				acc += math.Exp(lq - mx)
			}
		}
		lqr = mx + math.Log(acc)
	}
	var L, S float64
	for i, pi := range p {
		if listed[i] != sc.gen || pi == 0 {
			continue
		}
		if math.IsInf(s[i], -1) {
			return 0, fmt.Errorf("%w: target gives mass %v to masked logit %d", ErrInfiniteKL, pi, i)
		}
		S += pi
		L += pi * (lp[i] - s[i])
	}
	pr := tr.restP
	if pr > 0 {
		if math.IsInf(lqr, -1) {
			return 0, fmt.Errorf("%w: the rest of the target has mass %v, every logit outside the top k is masked", ErrInfiniteKL, pr)
		}
		L += pr * (math.Log(pr) - lqr)
		S += pr
	}
	for i, lq := range s {
		switch {
		case listed[i] == sc.gen:
			dg[i] = math.Exp(lq)*S - p[i]
		case pr == 0 || math.IsInf(lq, -1):
			dg[i] = math.Exp(lq) * S
		default:
			dg[i] = math.Exp(lq)*S - math.Exp(lq-lqr)*pr
		}
	}
	return L, nil
}

// logSumExp32 returns log sum exp(z) in float64 (-Inf entries count 0).
func logSumExp32(z []float32) float64 {
	m := math.Inf(-1)
	for _, v := range z {
		m = max(m, float64(v))
	}
	if math.IsInf(m, -1) {
		return m
	}
	s := 0.0
	for _, v := range z {
		s += math.Exp(float64(v) - m)
	}
	return m + math.Log(s)
}

// logAddExp returns log(exp(x) + exp(y)) without overflow.
func logAddExp(x, y float64) float64 {
	if math.IsInf(x, -1) {
		return y
	}
	if math.IsInf(y, -1) {
		return x
	}
	if x < y {
		x, y = y, x
	}
	return x + math.Log1p(math.Exp(y-x))
}

// targetRowOut is row r of the target on the reference path.
type targetRowOut struct {
	p, lp []float64 // [vocab] probabilities and their logs (-Inf where 0)
	kept  float64   // target mass kept by top-k, or 1
	// rest is set for TailRest: p and lp hold the listed ids only (marked
	// in scratch.mark with scratch.gen) and restP is the bucket of the rest.
	rest  bool
	restP float64
}

// targetRow validates row r of the target and writes it as probabilities
// and log-probabilities, [vocab] each, tail and smoothing applied.
func (j *job) targetRow(sc *scratch, r int) (targetRowOut, error) {
	V := j.vocab
	p, lp := sc.p[:V:V], sc.lp[:V:V]
	out := targetRowOut{p: p, lp: lp, kept: 1}
	eps := j.o.LabelSmoothing
	switch j.kind {
	case kindHard:
		id := j.t.Hard[r]
		if id < 0 || int(id) >= V {
			return out, fmt.Errorf("%w: target id %d, vocab %d", ErrTokenRange, id, V)
		}
		off := eps / float64(V)
		on := 1 - eps + off
		lOff := math.Log(off) // -Inf without smoothing
		for i := range p {
			p[i], lp[i] = off, lOff
		}
		p[id], lp[id] = on, math.Log(on)
		return out, nil
	case kindProbs:
		t := j.t.Probs[r*V : (r+1)*V : (r+1)*V]
		S := 0.0
		for i, v := range t {
			if !(v >= 0 && v <= math.MaxFloat32) {
				return out, fmt.Errorf("%w: probability %d = %v", ErrNegativeProb, i, v)
			}
			p[i], lp[i] = float64(v), math.Log(float64(v))
			S += float64(v)
		}
		return out, checkSum(S)
	case kindLogProbs:
		t := j.t.LogProbs[r*V : (r+1)*V : (r+1)*V]
		S := 0.0
		for i, v := range t {
			if v != v || v > math.MaxFloat32 {
				return out, fmt.Errorf("%w: log-probability %d = %v", ErrNegativeProb, i, v)
			}
			lp[i], p[i] = float64(v), math.Exp(float64(v))
			S += p[i]
		}
		return out, checkSum(S)
	case kindSparse:
		K := j.t.K
		ids := j.t.SparseIDs[r*K : (r+1)*K : (r+1)*K]
		ps := j.t.SparseProbs[r*K : (r+1)*K : (r+1)*K]
		sc.nextGen()
		S := 0.0
		for k, id := range ids {
			v := ps[k]
			if id < 0 || int(id) >= V {
				return out, fmt.Errorf("%w: sparse id %d (entry %d), vocab %d", ErrTokenRange, id, k, V)
			}
			if !(v >= 0 && v <= math.MaxFloat32) {
				return out, fmt.Errorf("%w: sparse probability %d (id %d) = %v", ErrNegativeProb, k, id, v)
			}
			if sc.mark[id] == sc.gen {
				return out, fmt.Errorf("%w: id %d (entry %d)", ErrDuplicateID, id, k)
			}
			sc.mark[id] = sc.gen
			S += float64(v)
		}
		rest, err := sparseRest(S, K, V)
		if err != nil {
			return out, err
		}
		for i := range p {
			p[i], lp[i] = 0, math.Inf(-1)
		}
		for k, id := range ids {
			p[id] = float64(ps[k])
			lp[id] = math.Log(p[id])
		}
		out.kept = S
		if K < V {
			j.applyTail(&out, sc, S, rest, K)
		}
		j.smooth(&out, sc, K)
		return out, nil
	case kindTeacher:
		t := j.t.TeacherLogits[r*V : (r+1)*V : (r+1)*V]
		m := math.Inf(-1)
		for i, v := range t {
			if v != v || v > math.MaxFloat32 {
				return out, fmt.Errorf("%w: teacher logit %d = %v", ErrNonFiniteLogit, i, v)
			}
			m = max(m, float64(v)*j.at)
		}
		if math.IsInf(m, -1) {
			return out, fmt.Errorf("%w (teacher)", ErrAllMasked)
		}
		acc := 0.0
		for i, v := range t {
			lp[i] = float64(v)*j.at - m
			acc += math.Exp(lp[i])
		}
		lacc := math.Log(acc)
		for i := range lp {
			lp[i] -= lacc // log P = t/T_t - logsumexp(t/T_t), exact for the large terms
			p[i] = math.Exp(lp[i])
		}
		k := j.topK
		if k == 0 {
			j.smooth(&out, sc, V)
			return out, nil
		}
		// The top k: ids in order of decreasing logit, ties to the lower id.
		idx := sc.idx[:V]
		for i := range idx {
			idx[i] = int32(i)
		}
		slices.SortFunc(idx, func(x, y int32) int {
			if t[x] != t[y] {
				if t[x] > t[y] {
					return -1
				}
				return 1
			}
			return int(x - y)
		})
		sc.nextGen()
		S, R := 0.0, 0.0
		for n, id := range idx {
			if n < k {
				sc.mark[id] = sc.gen
				S += p[id]
			} else {
				R += p[id]
				p[id], lp[id] = 0, math.Inf(-1)
			}
		}
		out.kept = S
		j.applyTail(&out, sc, S, R, k)
		j.smooth(&out, sc, k)
		return out, nil
	}
	panic("loss: unknown target kind")
}

// nextGen starts a new set of marked ids.
func (sc *scratch) nextGen() {
	sc.gen++
	if sc.gen == 0 { // wrapped: forget every old mark
		clear(sc.mark)
		sc.gen = 1
	}
}

// applyTail turns the k listed ids (marked, mass S; the others 0 in out.p)
// into the target of Options.TeacherTail, with rest the mass of the others.
func (j *job) applyTail(out *targetRowOut, sc *scratch, S, rest float64, k int) {
	p, lp := out.p, out.lp
	switch j.o.TeacherTail {
	case TailRenormalize:
		lS := math.Log(S)
		for i := range p {
			if sc.mark[i] == sc.gen {
				p[i] /= S
				lp[i] -= lS
			}
		}
	case TailUniform:
		u := rest / float64(len(p)-k)
		lu := math.Log(u)
		for i := range p {
			if sc.mark[i] != sc.gen {
				p[i], lp[i] = u, lu
			}
		}
	case TailRest:
		out.rest, out.restP = true, rest
	}
}

// smooth applies label smoothing to the target of a sparse or teacher row
// with k listed ids (all V when there is no tail).
func (j *job) smooth(out *targetRowOut, sc *scratch, k int) {
	eps := j.o.LabelSmoothing
	if eps == 0 || j.kind == kindHard {
		return
	}
	V := float64(len(out.p))
	u := eps / V
	l1, lu := math.Log1p(-eps), math.Log(u)
	for i := range out.p {
		if out.rest && sc.mark[i] != sc.gen {
			continue
		}
		out.p[i] = (1-eps)*out.p[i] + u
		out.lp[i] = logAddExp(l1+out.lp[i], lu)
	}
	if out.rest {
		out.restP = (1-eps)*out.restP + eps*(V-float64(k))/V
	}
}

// checkSum checks that a target row sums to 1 within probTolerance.
func checkSum(S float64) error {
	if !(math.Abs(S-1) <= probTolerance) {
		return fmt.Errorf("%w: row sums to %v", ErrProbSum, S)
	}
	return nil
}

// sparseComplete is how close to 1 the K probabilities of a sparse row must
// sum for the row to count as complete (no mass left for the other ids):
// float32 rounding of probabilities that sum to 1.
const sparseComplete = 1e-6

// sparseRest returns the mass of the ids a sparse row of K ids summing to S
// does not list (see Target).
func sparseRest(S float64, K, V int) (float64, error) {
	if !(S > 0 && S <= 1+probTolerance) {
		return 0, fmt.Errorf("%w: %d sparse probabilities sum to %v, want a value in (0, 1+%g]", ErrProbSum, K, S, probTolerance)
	}
	if K == V {
		if S < 1-probTolerance {
			return 0, fmt.Errorf("%w: all %d ids listed and they sum to %v", ErrProbSum, K, S)
		}
		return 0, nil
	}
	if 1-S <= sparseComplete {
		return 0, nil
	}
	return 1 - S, nil
}
