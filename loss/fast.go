package loss

import (
	"math"

	"github.com/klring/klring/kernels"
)

// Fast paths: forward KL with hard, dense (probabilities or
// log-probabilities) or sparse targets, reverse KL and JSD with dense
// targets, on rows of finite logits. A row takes a few vectorised passes
// (kernels' row kernels); the first brings the row into L1/L2 and the others
// run there. Forward KL:
//
//	1. MaxMinSum(z): max for the shift, min and sum to see the row is finite
//	2. (dense) XLogXDot(p, z): sum p log p, sum p, sum p*z, min p
//	3. ExpSum: e_i = exp(a*z_i - b), b = a*max, in place when backward
//	4. the gradient from e: ScaleShift (hard, sparse) or Axpby (dense)
//
// With s = a*z (a = 1/T) and lse = b + log(sum e), log q_i = a*z_i - lse, so
//
//	sum_i p_i log q_i = a*sum_i p_i z_i - S*lse
//
// needs only the sums; every sum is in float64. Reverse KL and JSD add a
// vector log and dot products (see reverseFast, jsdFast). Everything that
// can reject a row is checked before ExpSum may overwrite the logits, so a
// row a fast path declines is still intact for rowGeneric, which then finds
// its error.

// rowFast computes row r on a fast path when one applies to the job and the
// row is ordinary (finite logits, valid target); ok is false otherwise and
// the caller runs rowGeneric. It never declines after it wrote the logits.
func (j *job) rowFast(sc *scratch, r int) (out rowOut, ok bool) {
	V := j.vocab
	z := j.logits[r*V : (r+1)*V : (r+1)*V]
	// The cross-entropy of the hard token at temperature 1, while z is
	// intact. With hard targets alone at T = 1 it is the loss itself.
	var ce ceRow
	ceIsDiv := j.kind == kindHard && j.a == 1 && j.o.LabelSmoothing == 0
	if j.hasHard && !ceIsDiv && !j.ceStart(sc, z, r, &ce) {
		return out, false
	}
	div, kept, ok := j.divFast(sc, r, z)
	if !ok {
		return out, false
	}
	if ceIsDiv {
		ce.val = div
	}
	if j.backward && j.gh != 0 {
		j.ceFinish(sc, z, &ce)
	}
	w := j.o.HardWeight
	return rowOut{loss: (1-w)*div + w*ce.val, div: div, ce: ce.val, kept: kept}, true
}

// ceRow is the cross-entropy of a row's hard token at temperature 1.
type ceRow struct {
	val   float64 // -log softmax(z)[id]
	id    int32
	zid   float64 // z[id]
	lse   float64 // log sum exp z
	sumE  float64 // sum of the exp row in scratch.e1, exp(z - max)
	shift float32 // max z
}

// ceStart computes the cross-entropy of row r's hard token and keeps
// exp(z - max) in sc.e1 for its gradient.
func (j *job) ceStart(sc *scratch, z []float32, r int, ce *ceRow) bool {
	id := j.t.Hard[r]
	if id < 0 || int(id) >= len(z) {
		return false
	}
	mx, mn, sum := kernels.MaxMinSum(z)
	if math.IsNaN(sum) || mx > math.MaxFloat32 || mn < -math.MaxFloat32 {
		return false
	}
	ce.id, ce.zid, ce.shift = id, float64(z[id]), mx
	ce.sumE = kernels.ExpSum(sc.e1[:len(z)], z, 1, mx)
	ce.lse = float64(mx) + math.Log(ce.sumE)
	ce.val = ce.lse - ce.zid
	return true
}

// ceFinish adds the cross-entropy's gradient, gh*(softmax(z) - onehot), to
// the divergence's gradient in z. The hard token's own entry is done in
// float64: q - 1 cancels when q is near 1.
func (j *job) ceFinish(sc *scratch, z []float32, ce *ceRow) {
	if ce.sumE == 0 { // hard targets alone at T = 1: no ceStart, and w = 0
		return
	}
	d := float64(z[ce.id])
	kernels.Axpby(float32(j.gh/ce.sumE), sc.e1[:len(z)], 1, z)
	z[ce.id] = float32(d + j.gh*math.Expm1(ce.zid-ce.lse))
}

// divFast computes the divergence of row r (times t2) and its gradient
// (times gc) on the fast path of the job's target, and the target mass
// kept by top-k.
func (j *job) divFast(sc *scratch, r int, z []float32) (div, kept float64, ok bool) {
	V := j.vocab
	switch j.kind {
	case kindHard:
		if j.dir != Forward {
			return 0, 0, false
		}
		div, ok = j.hardFast(sc, r)
		return div, 1, ok
	case kindProbs, kindLogProbs:
		var p, next []float32
		if j.kind == kindProbs {
			p, next = j.t.Probs[r*V:(r+1)*V:(r+1)*V], j.t.Probs
		} else {
			next = j.t.LogProbs
		}
		switch j.dir {
		case Reverse:
			div, ok = j.reverseFast(sc, r)
		case JSD:
			div, ok = j.jsdFast(sc, r)
		default:
			if p == nil {
				// P = exp(log P) into scratch. NaN or +Inf log-probabilities
				// make the sum fail its check; -Inf gives 0.
				p = sc.p32[:V]
				kernels.ExpSum(p, j.t.LogProbs[r*V:(r+1)*V], 1, 0)
			}
			div, ok = j.probsFast(sc, r, z, p, next)
		}
		return div, 1, ok
	case kindSparse:
		tk, ok := j.sparseTop(sc, r, z)
		if !ok {
			return 0, 0, false
		}
		div, ok = j.topkFast(sc, r, z, tk, j.logits)
		return div, tk.kept, ok
	case kindTeacher:
		return j.teacherFast(sc, r, z)
	}
	return 0, 0, false
}

// maxFastLogit bounds |z/T| on the fast paths. Their sums (sum p*z, sum z)
// are taken of the logits themselves, not of z - max, so their rounding
// grows with |z|: within the bound it stays below 1e-9 of a loss; rows
// beyond it go to rowGeneric, which works with z - max throughout.
const maxFastLogit = 1e6

// shift checks that row z is finite and that |a*z| <= maxFastLogit, and
// returns the exponent's factor a and shift b (a*max z) as float32, and sum z.
func (j *job) shift(z []float32) (a, b float32, zsum float64, ok bool) {
	mx, mn, zsum := kernels.MaxMinSum(z)
	if math.IsNaN(zsum) || mx > math.MaxFloat32 || mn < -math.MaxFloat32 {
		return 0, 0, 0, false
	}
	a = float32(j.a)
	hi, lo := float64(a)*float64(mx), float64(a)*float64(mn)
	if math.Abs(hi) > maxFastLogit || math.Abs(lo) > maxFastLogit {
		return 0, 0, 0, false
	}
	return a, float32(hi), zsum, true
}

// expRow runs ExpSum over row z: in place when the job is backward, into
// scratch otherwise, prefetching next (the next row to be read). It returns
// the exp row and log(sum e) + b.
func (j *job) expRow(sc *scratch, z []float32, a, b float32, next []float32) (e []float32, sumE, lse float64) {
	e = z
	if !j.backward {
		e = sc.f[:len(z)]
	}
	sumE = kernels.ExpSumPrefetch(e, z, a, b, next)
	return e, sumE, float64(b) + math.Log(sumE)
}

// nextRow returns row r+1 of buf [rows x vocab], or nil after the last row:
// the fast paths prefetch it while they compute row r, so the memory traffic
// of one row overlaps the arithmetic of the other.
func (j *job) nextRow(buf []float32, r int) []float32 {
	if buf == nil || r+1 >= j.rows {
		return nil
	}
	V := j.vocab
	return buf[(r+1)*V : (r+2)*V]
}

func (j *job) hardFast(sc *scratch, r int) (float64, bool) {
	V := j.vocab
	z := j.logits[r*V : (r+1)*V : (r+1)*V]
	id := j.t.Hard[r]
	if id < 0 || int(id) >= V {
		return 0, false
	}
	a, b, zsum, ok := j.shift(z)
	if !ok {
		return 0, false
	}
	af, zt := float64(a), float64(z[id])
	eps := j.o.LabelSmoothing
	off := eps / float64(V)
	on := 1 - eps + off
	_, sumE, lse := j.expRow(sc, z, a, b, j.nextRow(j.logits, r))
	var L float64 // the sums are taken relative to b: no cancellation against lse
	if eps == 0 {
		L = math.Log(sumE) - (af*zt - float64(b)) // a*z_t is exact in float64
	} else {
		h := on * math.Log(on)
		if V > 1 {
			h += float64(V-1) * off * math.Log(off)
		}
		ls, fb := math.Log(sumE), float64(b)
		L = h - ((1-eps)*(af*zt-fb-ls) + off*(af*zsum-float64(V)*fb-float64(V)*ls))
	}
	if j.backward {
		c := j.gc
		kernels.ScaleShift(z, float32(c/sumE), float32(-c*off))
		// The target's own entry in float64: q_t - p_t cancels when q_t is near 1.
		z[id] = float32(c * (math.Exp(af*zt-lse) - on))
	}
	return L * j.t2, true
}

// probsFast is the fast path for a dense target row p [vocab]; it
// prefetches row r+1 of next (the target's buffer, may be nil).
func (j *job) probsFast(sc *scratch, r int, z, p, next []float32) (float64, bool) {
	a, b, _, ok := j.shift(z)
	if !ok {
		return 0, false
	}
	plogp, S, pz, pmin := kernels.XLogXDotPrefetch(p, z, j.nextRow(j.logits, r))
	if !(pmin >= 0) || !(math.Abs(S-1) <= probTolerance) {
		return 0, false
	}
	_, sumE, _ := j.expRow(sc, z, a, b, j.nextRow(next, r))
	L := plogp - (float64(a)*pz - S*float64(b)) + S*math.Log(sumE)
	if j.backward {
		c := j.gc
		kernels.Axpby(float32(-c), p, float32(c*S/sumE), z)
	}
	return L * j.t2, true
}

// reverseFast is reverse KL against a dense target whose probabilities are
// all normal floats (a zero is an infinite divergence or a masked token:
// rowGeneric decides).
func (j *job) reverseFast(sc *scratch, r int) (float64, bool) {
	V := j.vocab
	z := j.logits[r*V : (r+1)*V : (r+1)*V]
	var lp, next []float32
	if j.kind == kindProbs {
		p := j.t.Probs[r*V : (r+1)*V : (r+1)*V]
		pmx, pmn, S := kernels.MaxMinSum(p)
		if !(pmn >= 0x1p-126) || !(pmx <= math.MaxFloat32) || !(math.Abs(S-1) <= probTolerance) {
			return 0, false
		}
		lp = sc.p32[:V]
		kernels.Log(lp, p)
		next = j.t.Probs
	} else {
		lp = j.t.LogProbs[r*V : (r+1)*V : (r+1)*V]
		lmx, lmn, _ := kernels.MaxMinSum(lp)
		if !(lmn >= -maxFastLogit) || !(lmx <= 1) { // NaN fails too
			return 0, false
		}
		if S := kernels.ExpSum(sc.g[:V], lp, 1, 0); !(math.Abs(S-1) <= probTolerance) {
			return 0, false
		}
		next = j.t.LogProbs
	}
	return j.reverseDense(sc, r, z, lp, next)
}

// gradBound is a bound of |log q - log p - D| on the fast paths of reverse
// KL and JSD, whose logits and log-probabilities are within maxFastLogit
// (and their log-sum-exps within log V of them): a factor gc with
// |gc|*gradBound <= MaxFloat32 cannot overflow a gradient.
const gradBound = 8*maxFastLogit + 256

// reverseDense is reverse KL against the log-probabilities lp [vocab], each
// >= -maxFastLogit. With arg = a*z - b and l = log(sum e),
//
//	D_KL(Q||P) = sum e*(arg - log p)/(sum e) - l     (ExpDiffDot)
//	dL/ds      = q (arg - log p - l - D_KL)           (MulDiff, in float64:
//	                                                  log p may be far below)
func (j *job) reverseDense(sc *scratch, r int, z, lp, next []float32) (float64, bool) {
	V := j.vocab
	a, b, _, ok := j.shift(z)
	if !ok || math.Abs(j.gc)*gradBound > math.MaxFloat32 {
		return 0, false
	}
	e := sc.g[:V]
	sumE, dq := kernels.ExpDiffDot(e, z, lp, a, b, 1, 0, j.nextRow(next, r))
	l := math.Log(sumE)
	L := dq/sumE - l
	if j.backward {
		kernels.MulDiff(z, e, lp, float32(j.gc/sumE), a, b, 1, 0, -(l + L))
	}
	return L * j.t2, true
}

// jsdFast is JSD against a dense target of probabilities or
// log-probabilities.
func (j *job) jsdFast(sc *scratch, r int) (float64, bool) {
	V := j.vocab
	z := j.logits[r*V : (r+1)*V : (r+1)*V]
	var p, next []float32
	if j.kind == kindProbs {
		p, next = j.t.Probs[r*V:(r+1)*V:(r+1)*V], j.t.Probs
	} else {
		lp := j.t.LogProbs[r*V : (r+1)*V : (r+1)*V]
		if lmx, _, _ := kernels.MaxMinSum(lp); !(lmx <= 1) { // NaN fails too
			return 0, false
		}
		p, next = sc.p32[:V], j.t.LogProbs
		kernels.ExpSum(p, lp, 1, 0)
	}
	return j.jsdDense(sc, r, z, p, next)
}

// jsdDense is JSD against the probabilities p [vocab]. With arg = a*z - b
// (log q = arg - l), m = beta*p + (1-beta)*q and KQ = D_KL(Q||M):
//
//	D_KL(P||M) = sum p log p - sum p log m
//	KQ         = (sum e*arg - sum e*log m)/(sum e) - l
//	dL/ds      = (1-beta) q (arg - l - log m - KQ)
//
// Tiny m (below the smallest normal float) only meets tiny p and q, whose
// terms vanish.
func (j *job) jsdDense(sc *scratch, r int, z, p, next []float32) (float64, bool) {
	V := j.vocab
	a, b, _, ok := j.shift(z)
	if !ok || math.Abs(j.gc)*gradBound > math.MaxFloat32 {
		return 0, false
	}
	plogp, S, _, pmin := kernels.XLogXDot(p, z)
	if !(pmin >= 0) || !(math.Abs(S-1) <= probTolerance) {
		return 0, false
	}
	arg := sc.f[:V]
	copy(arg, z)
	kernels.ScaleShift(arg, a, -b)
	e := z
	if !j.backward {
		e = sc.g[:V]
	}
	sumE := kernels.ExpSumPrefetch(e, z, a, b, j.nextRow(next, r))
	l := math.Log(sumE)
	beta := j.o.Beta
	lm := sc.m[:V]
	copy(lm, p)
	kernels.Axpby(float32((1-beta)/sumE), e, float32(beta), lm) // m
	kernels.Log(lm, lm)
	kp := plogp - kernels.Dot(p, lm)
	kq := (kernels.Dot(e, arg)-kernels.Dot(e, lm))/sumE - l
	L := beta*kp + (1-beta)*kq
	if j.backward {
		kernels.Axpby(-1, lm, 1, arg) // arg - log m
		kernels.MulShift(z, arg, float32(j.gc*(1-beta)/sumE), float32(-(l + kq)))
	}
	return L * j.t2, true
}
