package loss

import (
	"fmt"
	"math"
	"strings"
	"sync"

	"github.com/klring/klring/kernels"
)

// Target is the target distribution P of every row. Exactly one kind is set;
// setting none or two is a programmer error and panics.
type Target struct {
	// Hard holds one token id per row [rows]: P is one-hot (smoothed by
	// Options.LabelSmoothing). Options.IgnoreIndex skips a row.
	Hard []int32
	// Probs holds probabilities [rows x vocab], each row summing to 1 within
	// 1e-3. Zeros are allowed.
	Probs []float32
	// LogProbs holds log-probabilities [rows x vocab]; -Inf is probability 0.
	LogProbs []float32
	// SparseIDs and SparseProbs hold K (id, probability) pairs per row
	// [rows x K]: a top-k target. The ids of a row are distinct. If a row's
	// probabilities sum to 1 within 1e-3 the ids not listed get probability
	// 0. If they sum to less (the mass outside the top k was cut off), the
	// missing mass 1 - sum is spread evenly over the vocab - K ids not
	// listed: a uniform tail bucket, so P stays a distribution and reverse
	// KL and JSD stay finite. Listed probabilities are never rescaled.
	SparseIDs   []int32
	SparseProbs []float32
	K           int
}

type targetKind int

const (
	kindHard targetKind = iota
	kindProbs
	kindLogProbs
	kindSparse
)

// kind returns the one kind set, and panics on a shape mismatch.
func (t *Target) kind(rows, vocab int) targetKind {
	n := 0
	var k targetKind
	if t.Hard != nil {
		n, k = n+1, kindHard
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
	if n != 1 {
		panic(fmt.Sprintf("loss: target sets %d kinds, want exactly one of Hard, Probs, LogProbs, Sparse", n))
	}
	return k
}

// Result is the unreduced outcome of a call.
type Result struct {
	Sum  float64 // sum of the per-row losses (ignored rows add 0)
	Rows int     // rows not ignored
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
	mu      sync.Mutex
	free    []*scratch // guarded by mu
	errRow  int        // lowest failing row, guarded by mu
	errLast error      // its error, guarded by mu

	noFast bool // tests: run every row on the float64 reference path
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
	kind     targetKind
	o        Options
	backward bool
	loss     []float64 // [rows] written

	a  float64 // 1/T
	t2 float64 // T^2 when ScaleT2, else 1
	gc float64 // gradScale * a * t2: d loss/d logit = gc * d loss/d (z/T) / t2

	noFast bool // tests: every row on rowGeneric
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
	kind := t.kind(rows, vocab)
	if err := o.Validate(); err != nil {
		return Result{}, err
	}
	if o.LabelSmoothing != 0 && kind != kindHard {
		return Result{}, fmt.Errorf("%w: label smoothing %v needs hard targets", ErrOption, o.LabelSmoothing)
	}
	a := 1 / o.Temperature
	t2 := 1.0
	if o.ScaleT2 {
		t2 = o.Temperature * o.Temperature
	}
	gc, err := checkScale(gradScale, a, t2)
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
	c.job = job{logits: logits, rows: rows, vocab: vocab, t: t, kind: kind, o: o,
		backward: backward, loss: loss, a: a, t2: t2, gc: gc, noFast: c.noFast}
	c.errRow, c.errLast = rows, nil
	c.pool.For(rows, max(1, (1<<16)/vocab), c.body)
	c.job = job{} // keep no reference to the caller's buffers
	if c.errLast != nil {
		return Result{}, &RowError{Row: c.errRow, Err: c.errLast}
	}
	res := Result{Rows: rows}
	for _, l := range loss {
		res.Sum += l
	}
	if kind == kindHard {
		for _, id := range t.Hard {
			if id == o.IgnoreIndex {
				res.Rows--
			}
		}
	}
	return res, nil
}

// runRange computes rows [lo, hi) and stops at the first bad row.
func (c *Computer) runRange(lo, hi int) {
	j := &c.job
	sc := c.getScratch(j.vocab)
	defer c.putScratch(sc)
	for r := lo; r < hi; r++ {
		l, err := j.row(sc, r)
		if err != nil {
			c.mu.Lock()
			if r < c.errRow {
				c.errRow, c.errLast = r, err
			}
			c.mu.Unlock()
			return
		}
		j.loss[r] = l
	}
}

// scratch is one goroutine's working memory, [vocab] each.
type scratch struct {
	s   []float64 // scaled logits, then log q
	p   []float64 // the target row
	lp  []float64 // log of the target row (-Inf where 0)
	f   []float32 // fast paths' exp row when logits must stay unchanged
	p32 []float32 // fast paths: a target row as probabilities or log-probabilities
	g   []float32 // fast paths: a second row of scratch
	m   []float32 // JSD fast path: the mixture M, then log M

	mark []uint32 // sparse fast path: mark[id] == gen for the ids of the row
	gen  uint32
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
		sc.f = make([]float32, vocab)
		sc.p32 = make([]float32, vocab)
		sc.g = make([]float32, vocab)
		sc.m = make([]float32, vocab)
		sc.mark = make([]uint32, vocab)
		sc.gen = 0
	}
	return sc
}

func (c *Computer) putScratch(sc *scratch) {
	c.mu.Lock()
	c.free = append(c.free, sc)
	c.mu.Unlock()
}

// row returns the loss of row r (times t2) and writes its gradient when the
// job is backward.
func (j *job) row(sc *scratch, r int) (float64, error) {
	V := j.vocab
	if j.kind == kindHard && j.t.Hard[r] == j.o.IgnoreIndex {
		if j.backward {
			clear(j.logits[r*V : (r+1)*V])
		}
		return 0, nil
	}
	if j.noFast {
		return j.rowGeneric(sc, r)
	}
	if l, ok := j.rowFast(sc, r); ok {
		return l, nil
	}
	return j.rowGeneric(sc, r)
}

// rowGeneric is the reference path, in float64 throughout: it handles every
// direction, target kind, masked logits and extreme values, and finds the
// exact error of a bad row. The fast paths fall back to it.
func (j *job) rowGeneric(sc *scratch, r int) (float64, error) {
	V := j.vocab
	z := j.logits[r*V : (r+1)*V : (r+1)*V]
	s := sc.s[:V:V]
	// One pass: validation, and the online maximum and sum of exp(s - m),
	// rescaled whenever the maximum grows.
	m, sumE := math.Inf(-1), 0.0
	for i, v := range z {
		if v != v || v > math.MaxFloat32 {
			return 0, fmt.Errorf("%w: logit %d = %v", ErrNonFiniteLogit, i, v)
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
		return 0, ErrAllMasked
	}
	ls := math.Log(sumE)
	for i, x := range s {
		s[i] = (x - m) - ls // log q; x - m first, exact for the large terms; -Inf stays -Inf
	}
	p, lp, err := j.targetRow(sc, r)
	if err != nil {
		return 0, err
	}
	var g []float32
	if j.backward {
		g = z
	}
	var L float64
	switch j.o.Direction {
	case Forward:
		S := 0.0
		for i, pi := range p {
			if pi == 0 {
				continue
			}
			if math.IsInf(s[i], -1) {
				return 0, fmt.Errorf("%w: target gives mass %v to masked logit %d", ErrInfiniteKL, pi, i)
			}
			S += pi
			L += pi * (lp[i] - s[i])
		}
		for i := range g {
			g[i] = float32(j.gc * (math.Exp(s[i])*S - p[i]))
		}
	case Reverse:
		for i, lq := range s {
			if math.IsInf(lq, -1) {
				continue
			}
			if math.IsInf(lp[i], -1) {
				return 0, fmt.Errorf("%w: target gives 0 to token %d, the model %v", ErrInfiniteKL, i, math.Exp(lq))
			}
			L += math.Exp(lq) * (lq - lp[i])
		}
		for i := range g {
			lq := s[i]
			if math.IsInf(lq, -1) {
				g[i] = 0
				continue
			}
			g[i] = float32(j.gc * math.Exp(lq) * (lq - lp[i] - L))
		}
	case JSD:
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
		for i := range g {
			lq := s[i]
			if math.IsInf(lq, -1) {
				g[i] = 0
				continue
			}
			g[i] = float32(j.gc * (1 - beta) * math.Exp(lq) * (lq - lp[i] - kq))
		}
	}
	for i, v := range g {
		if v > math.MaxFloat32 || v < -math.MaxFloat32 {
			return 0, fmt.Errorf("%w: gradient %d = %v", ErrGradOverflow, i, v)
		}
	}
	return L * j.t2, nil
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

// targetRow validates row r of the target and writes it as probabilities p
// and log-probabilities lp, [vocab] each.
func (j *job) targetRow(sc *scratch, r int) (p, lp []float64, err error) {
	V := j.vocab
	p, lp = sc.p[:V:V], sc.lp[:V:V]
	switch j.kind {
	case kindHard:
		id := j.t.Hard[r]
		if id < 0 || int(id) >= V {
			return nil, nil, fmt.Errorf("%w: target id %d, vocab %d", ErrTokenRange, id, V)
		}
		eps := j.o.LabelSmoothing
		off := eps / float64(V)
		on := 1 - eps + off
		lOff := math.Log(off) // -Inf without smoothing
		for i := range p {
			p[i], lp[i] = off, lOff
		}
		p[id], lp[id] = on, math.Log(on)
		return p, lp, nil
	case kindProbs:
		t := j.t.Probs[r*V : (r+1)*V : (r+1)*V]
		S := 0.0
		for i, v := range t {
			if !(v >= 0 && v <= math.MaxFloat32) {
				return nil, nil, fmt.Errorf("%w: probability %d = %v", ErrNegativeProb, i, v)
			}
			p[i], lp[i] = float64(v), math.Log(float64(v))
			S += float64(v)
		}
		return p, lp, checkSum(S)
	case kindLogProbs:
		t := j.t.LogProbs[r*V : (r+1)*V : (r+1)*V]
		S := 0.0
		for i, v := range t {
			if v != v || v > math.MaxFloat32 {
				return nil, nil, fmt.Errorf("%w: log-probability %d = %v", ErrNegativeProb, i, v)
			}
			lp[i], p[i] = float64(v), math.Exp(float64(v))
			S += p[i]
		}
		return p, lp, checkSum(S)
	case kindSparse:
		K := j.t.K
		ids := j.t.SparseIDs[r*K : (r+1)*K : (r+1)*K]
		ps := j.t.SparseProbs[r*K : (r+1)*K : (r+1)*K]
		for i := range p {
			p[i] = -1 // not listed
		}
		S := 0.0
		for k, id := range ids {
			v := ps[k]
			if id < 0 || int(id) >= V {
				return nil, nil, fmt.Errorf("%w: sparse id %d (entry %d), vocab %d", ErrTokenRange, id, k, V)
			}
			if !(v >= 0 && v <= math.MaxFloat32) {
				return nil, nil, fmt.Errorf("%w: sparse probability %d (id %d) = %v", ErrNegativeProb, k, id, v)
			}
			if p[id] >= 0 {
				return nil, nil, fmt.Errorf("%w: id %d (entry %d)", ErrDuplicateID, id, k)
			}
			p[id] = float64(v)
			S += float64(v)
		}
		tail, err := sparseTail(S, K, V)
		if err != nil {
			return nil, nil, err
		}
		for i, v := range p {
			if v < 0 {
				v = tail
				p[i] = v
			}
			lp[i] = math.Log(v)
		}
		return p, lp, nil
	}
	panic("loss: unknown target kind")
}

// checkSum checks that a target row sums to 1 within probTolerance.
func checkSum(S float64) error {
	if !(math.Abs(S-1) <= probTolerance) {
		return fmt.Errorf("%w: row sums to %v", ErrProbSum, S)
	}
	return nil
}

// sparseTail returns the probability of each id not listed in a sparse row
// whose K listed probabilities sum to S (see Target).
func sparseTail(S float64, K, V int) (float64, error) {
	if !(S > 0 && S <= 1+probTolerance) {
		return 0, fmt.Errorf("%w: %d sparse probabilities sum to %v, want a value in (0, 1+%g]", ErrProbSum, K, S, probTolerance)
	}
	if S >= 1-probTolerance {
		return 0, nil
	}
	if K == V {
		return 0, fmt.Errorf("%w: all %d ids listed and they sum to %v", ErrProbSum, K, S)
	}
	return (1 - S) / float64(V-K), nil
}
