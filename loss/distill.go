package loss

import (
	"math"

	"github.com/klring/klring/kernels"
)

// Fast paths for distillation targets: a teacher's logits (dense, or cut to
// its top k inside the pass) and sparse top-k rows (a teacher's precomputed
// top k), in every direction and with every tail.
//
// Dense teacher logits t, with arg_t = a_t*t - b_t (a_t = 1/T_t, b_t =
// a_t*max t), e_t = exp(arg_t) and l_t = log(sum e_t), so log p = arg_t - l_t
// exactly (never log 0); the student's arg = a*z - b, e = exp(arg), l =
// log(sum e). ExpDiffDot returns sums of e*(difference of arguments), which
// are small wherever e is not, so float32 products lose nothing that
// matters:
//
//	forward  ExpDiffDot over t (against z): D = sum e_t (arg_t - arg)/sum e_t
//	         - l_t + l, and the gradient q - p is one Axpby of e and e_t.
//	reverse  ExpDiffDot over z (against t): D = sum e (arg - arg_t)/sum e - l
//	         + l_t, and the gradient q (log q - log p - D) is one MulDiff,
//	         which takes the difference of the arguments in float64: log q -
//	         log p may be 5e4 where D cancels it.
//	JSD      ExpDiffDot over t (sum p log p), ExpSum over z, then LogMixDot:
//	         log m, sum p log m and e*(arg - log m) with its sum (which is
//	         sum e * (D_KL(Q||M) + l)) in one pass, and an Axpby.
//
// Top-k targets (topk) keep k (id, p, log p) entries in float64 and one
// value for every other id (the uniform tail, 0 when renormalized) or one
// bucket (the rest tail). The row's vectorised passes treat every id as an
// unlisted one; the k listed entries of the gradient are then overwritten,
// computed in float64. The teacher's top k are found as select.go says;
// their probabilities come from the float32 exp row, the mass of the rest
// from the float64 sum of that row less the listed entries (so a small rest
// keeps its relative accuracy).

// topk is the top-k target of one row.
type topk struct {
	k    int
	ids  []int32   // [k]
	p    []float64 // [k] target probability of each listed id, tail and smoothing applied
	lp   []float64 // [k] its log (-Inf for 0)
	zk   []float32 // [k] the student's logit of each listed id
	q    []float64 // [k] the student's probability of each listed id
	u    float64   // probability of every id not listed (uniform tail; 0 when renormalized)
	lu   float64   // log u
	rest bool      // TailRest: the ids not listed form one bucket
	pr   float64   // the bucket's probability
	kept float64   // target mass of the listed ids before tail and smoothing

	hits []int32   // [V] the selection's candidates (ids above its threshold)
	keys []int32   // [V] their OrderKeys (first the group maxima's)
	gmax []float32 // [V/4] group maxima of the teacher row
	cand []uint64  // [k] TopK: the listed entries as topKey, to sort
	m32  []float32 // [2k] JSD: the listed entries' two mixtures, then their logs
}

func (tk *topk) alloc(V int) {
	tk.ids = make([]int32, V+1)
	tk.p = make([]float64, V)
	tk.lp = make([]float64, V)
	tk.zk = make([]float32, V)
	tk.q = make([]float64, V)
	tk.hits = make([]int32, V)
	tk.keys = make([]int32, V)
	tk.gmax = make([]float32, V/4+1)
	tk.m32 = make([]float32, 2*V)
}

// finish applies the tail and label smoothing to the k entries whose raw
// probabilities (mass S) and logs are in tk.p and tk.lp; R is the mass of
// the ids not listed and V the vocabulary.
func (j *job) finishTop(tk *topk, S, R float64, V int) {
	k := tk.k
	p, lp := tk.p[:k], tk.lp[:k]
	tk.kept = S
	tk.u, tk.lu, tk.rest, tk.pr = 0, math.Inf(-1), false, 0
	if k < V {
		switch j.o.TeacherTail {
		case TailRenormalize:
			lS := math.Log(S)
			for i := range p {
				p[i] /= S
				lp[i] -= lS
			}
		case TailUniform:
			tk.u = R / float64(V-k)
		case TailRest:
			tk.rest, tk.pr = true, R
		}
	}
	if eps := j.o.LabelSmoothing; eps != 0 {
		u := eps / float64(V)
		l1, lu := math.Log1p(-eps), math.Log(u)
		for i := range p {
			p[i] = (1-eps)*p[i] + u
			lp[i] = logAddExp(l1+lp[i], lu)
		}
		tk.u = (1-eps)*tk.u + u
		tk.pr = (1-eps)*tk.pr + eps*float64(V-k)/float64(V)
	}
	if tk.u > 0 {
		tk.lu = math.Log(tk.u)
	}
}

// sparseTop reads row r of a sparse target into sc.tk, and the student's
// logits of its ids from z; ok is false for a row rowGeneric must judge.
func (j *job) sparseTop(sc *scratch, r int, z []float32) (*topk, bool) {
	V, K := j.vocab, j.t.K
	ids := j.t.SparseIDs[r*K : (r+1)*K : (r+1)*K]
	ps := j.t.SparseProbs[r*K : (r+1)*K : (r+1)*K]
	tk := &sc.tk
	tk.k = K
	sc.nextGen()
	S := 0.0
	for k, id := range ids {
		v := ps[k]
		if id < 0 || int(id) >= V || !(v >= 0 && v <= math.MaxFloat32) || sc.mark[id] == sc.gen {
			return nil, false
		}
		sc.mark[id] = sc.gen
		tk.ids[k] = id
		tk.zk[k] = z[id]
		pv := float64(v)
		tk.p[k], tk.lp[k] = pv, math.Log(pv)
		S += pv
	}
	R, err := sparseRest(S, K, V)
	if err != nil {
		return nil, false
	}
	j.finishTop(tk, S, R, V)
	return tk, true
}

// teacherShift checks that teacher row t is finite and that |a_t*t| <=
// maxFastLogit, and returns a_t and b_t = a_t*max t as float32.
func (j *job) teacherShift(t []float32) (at, bt float32, ok bool) {
	mx, mn, sum := kernels.MaxMinSum(t)
	if math.IsNaN(sum) {
		return 0, 0, false
	}
	return j.teacherRange(mx, mn)
}

// teacherRange is teacherShift for a row of largest element mx and smallest
// mn, NaN aside.
func (j *job) teacherRange(mx, mn float32) (at, bt float32, ok bool) {
	if mx > math.MaxFloat32 || mn < -math.MaxFloat32 {
		return 0, 0, false
	}
	at = float32(j.at)
	hi, lo := float64(at)*float64(mx), float64(at)*float64(mn)
	if math.Abs(hi) > maxFastLogit || math.Abs(lo) > maxFastLogit {
		return 0, 0, false
	}
	return at, float32(hi), true
}

// teacherFast is the fast path of teacher-logit targets.
func (j *job) teacherFast(sc *scratch, r int, z []float32) (div, kept float64, ok bool) {
	V := j.vocab
	t := j.t.TeacherLogits[r*V : (r+1)*V : (r+1)*V]
	if j.topK > 0 {
		tk, ok := j.teacherTop(sc, r, z, t)
		if !ok {
			return 0, 0, false
		}
		div, ok = j.topkFast(sc, r, z, tk, j.t.TeacherLogits)
		return div, tk.kept, ok
	}
	at, bt, ok := j.teacherShift(t)
	if !ok {
		return 0, 0, false
	}
	if j.o.LabelSmoothing != 0 {
		div, ok = j.teacherSmoothed(sc, r, z, t, at, bt)
		return div, 1, ok
	}
	a, b, _, ok := j.shift(z)
	if !ok {
		return 0, 0, false
	}
	if j.dir != Forward && math.Abs(j.gc)*gradBound > math.MaxFloat32 {
		return 0, 0, false
	}
	nextZ, nextT := j.nextRow(j.logits, r), j.nextRow(j.t.TeacherLogits, r)
	switch j.dir {
	case Forward:
		eT := sc.u1[:V]
		sumT, dT := kernels.ExpDiffDot(eT, t, z, at, bt, a, b, nextZ)
		e, sumE, _ := j.expRow(sc, z, a, b, nextT)
		D := dT/sumT - math.Log(sumT) + math.Log(sumE)
		if j.backward {
			kernels.Axpby(float32(-j.gc/sumT), eT, float32(j.gc/sumE), e)
		}
		return D * j.t2, 1, true
	case Reverse:
		sumT := kernels.ExpSumPrefetch(sc.u1[:V], t, at, bt, nextZ)
		e := sc.f[:V]
		sumE, dZ := kernels.ExpDiffDot(e, z, t, a, b, at, bt, nextT)
		l, lt := math.Log(sumE), math.Log(sumT)
		D := dZ/sumE - l + lt
		if j.backward {
			kernels.MulDiff(z, e, t, float32(j.gc/sumE), a, b, at, bt, lt-l-D)
		}
		return D * j.t2, 1, true
	}
	// JSD.
	eT := sc.u1[:V]
	sumT, dT := kernels.ExpDiffDot(eT, t, t, at, bt, 0, 0, nextZ)
	lt := math.Log(sumT)
	L, ok := j.jsdMix(sc, z, eT, 1/sumT, dT/sumT-lt, a, b, nextT)
	return L, 1, ok
}

// jsdMix is JSD against the target p = ps*pe (pe a float32 row: a dense
// teacher's exp row, or a built top-k row with ps = 1) whose sum p log p is
// plogp. With arg = a*z - b, l = log(sum e) and m = beta*p + (1-beta)*q,
//
//	D_KL(P||M) = plogp - sum p log m
//	D_KL(Q||M) = sum e*(arg - log m)/sum e - l
//	dL/ds      = (1-beta) q (arg - l - log m - D_KL(Q||M))
//
// where LogMixDot gives sum pe log m and e*(arg - log m) (over z when
// backward) with its sum, and one Axpby the gradient. Tiny m (below the
// smallest normal float) only meets tiny p and q, whose terms vanish.
func (j *job) jsdMix(sc *scratch, z, pe []float32, ps, plogp float64, a, b float32, next []float32) (float64, bool) {
	V := j.vocab
	e := sc.f[:V]
	sumE := kernels.ExpSumPrefetch(e, z, a, b, next)
	l := math.Log(sumE)
	beta := j.o.Beta
	dst := z
	if !j.backward {
		dst = sc.g[:V]
	}
	pl, ds := kernels.LogMixDot(dst, z, pe, e, float32(beta*ps), float32((1-beta)/sumE), a, b)
	kp := plogp - ps*pl
	kq := ds/sumE - l
	L := beta*kp + (1-beta)*kq
	if j.backward {
		c := j.gc * (1 - beta) / sumE
		kernels.Axpby(float32(-c*(l+kq)), e, float32(c), z)
	}
	return L * j.t2, true
}

// teacherSmoothed is a dense teacher target with label smoothing: P' =
// (1-eps)*P + eps/V is built as a float32 row and goes through the paths of
// dense probabilities.
func (j *job) teacherSmoothed(sc *scratch, r int, z, t []float32, at, bt float32) (float64, bool) {
	V := j.vocab
	eps := j.o.LabelSmoothing
	u := eps / float64(V)
	if u < 0x1p-126 {
		return 0, false
	}
	p := sc.u1[:V]
	sumT := kernels.ExpSum(p, t, at, bt)
	kernels.ScaleShift(p, float32((1-eps)/sumT), float32(u))
	next := j.t.TeacherLogits
	switch j.dir {
	case Forward:
		return j.probsFast(sc, r, z, p, next)
	case Reverse:
		lp := sc.u2[:V]
		kernels.Log(lp, p)
		return j.reverseDense(sc, r, z, lp, next)
	}
	return j.jsdDense(sc, r, z, p, next)
}

// teacherTop selects the top k of teacher row t into sc.tk; ok is false, as
// for teacherShift, for a row rowGeneric must judge. The pass that finds the
// row's largest and smallest logit also gives the selection's threshold
// (groupThreshold), and a NaN, which it does not see, shows in the exps' sum.
func (j *job) teacherTop(sc *scratch, r int, z, t []float32) (tk *topk, ok bool) {
	V, k := j.vocab, j.topK
	tk = &sc.tk
	tk.k = k
	var at, bt float32
	thr := float32(math.Inf(-1))
	if G := topGroups(V, k); G > 0 {
		gm := tk.gmax[:G]
		mx, mn := kernels.GroupMaxMin(gm, t)
		at, bt, ok = j.teacherRange(mx, mn)
		thr = groupThreshold(tk, gm, k)
	} else {
		at, bt, ok = j.teacherShift(t)
	}
	if !ok {
		return nil, false
	}
	eT := sc.u2[:V]
	sumT := kernels.ExpSumPrefetch(eT, t, at, bt, j.nextRow(j.logits, r))
	if !(sumT <= math.MaxFloat64) {
		return nil, false
	}
	selectAbove(tk, t, k, thr)
	// p from the float32 exp row (within 2.4e-7), log p from the logits
	// (exact), and the rest as the sum of the others' float32 exps (see
	// restMass: accurate however small).
	atf, btf := float64(at), float64(bt)
	lt := math.Log(sumT)
	var sumK float64
	for i, id := range tk.ids[:k] {
		sumK += float64(eT[id])
		tk.p[i] = float64(eT[id]) / sumT
		tk.lp[i] = atf*float64(t[id]) - btf - lt
		tk.zk[i] = z[id]
	}
	rest := j.restMass(eT, tk.ids[:k], sumT, sumK)
	j.finishTop(tk, sumK/sumT, rest/sumT, V)
	return tk, true
}

// topkFast is the student's side of a top-k target tk (listed logits in
// tk.zk) for row r of z, in every direction; next is the buffer whose row
// r+1 to prefetch.
func (j *job) topkFast(sc *scratch, r int, z []float32, tk *topk, next []float32) (float64, bool) {
	V, k := j.vocab, tk.k
	a, b, zsum, ok := j.shift(z)
	if !ok {
		return 0, false
	}
	af, bf := float64(a), float64(b)
	ids, p, lp, zk := tk.ids[:k], tk.p[:k], tk.lp[:k], tk.zk[:k]
	nt := float64(V - k)
	nextRow := j.nextRow(next, r)
	switch j.dir {
	case Forward:
		if tk.rest {
			return j.restFast(sc, z, tk, a, b, nextRow)
		}
		Stot, plogp, pz, zkSum := nt*tk.u, 0.0, 0.0, 0.0
		for i, pv := range p {
			zv := float64(zk[i])
			zkSum += zv
			Stot += pv
			if pv > 0 {
				plogp += pv * lp[i]
				pz += pv * zv
			}
		}
		if tk.u > 0 {
			plogp += nt * tk.u * tk.lu
			pz += tk.u * (zsum - zkSum)
		}
		e, sumE, _ := j.expRow(sc, z, a, b, nextRow)
		L := plogp - (af*pz - Stot*bf) + Stot*math.Log(sumE)
		if j.backward {
			q := tk.q[:k]
			for i, id := range ids {
				q[i] = float64(e[id]) / sumE
			}
			c := j.gc
			kernels.ScaleShift(z, float32(c*Stot/sumE), float32(-c*tk.u))
			for i, id := range ids {
				z[id] = float32(c * (q[i]*Stot - p[i]))
			}
		}
		return L * j.t2, true
	case Reverse:
		if k < V && !(tk.u > 0 && tk.lu >= -maxFastLogit) || math.Abs(j.gc)*gradBound > math.MaxFloat32 {
			return 0, false
		}
		for _, l := range lp {
			if !(l >= -maxFastLogit) {
				return 0, false
			}
		}
		e := sc.f[:V]
		sumE, ez := kernels.ExpDiffDot(e, z, z, a, b, 0, 0, nextRow)
		l := math.Log(sumE)
		lse := bf + l
		// sum q log q over every id, less the listed ids' sum q log p and
		// the others' Q_rest * log u.
		L := ez/sumE - l
		ek, q := 0.0, tk.q[:k]
		for i, id := range ids {
			ek += float64(e[id])
			q[i] = float64(e[id]) / sumE
			L -= q[i] * lp[i]
		}
		if k < V {
			L -= tk.lu * j.restMass(e, ids, sumE, ek) / sumE
		}
		if j.backward {
			if k < V {
				kernels.MulDiff(z, e, z, float32(j.gc/sumE), a, b, 0, 0, -(l + tk.lu + L))
			}
			for i, id := range ids {
				lq := af*float64(zk[i]) - lse
				z[id] = float32(j.gc * q[i] * (lq - lp[i] - L))
			}
		}
		return L * j.t2, true
	}
	// JSD. The ids not listed share one probability u: LogMixConst treats
	// every id as one of them, then the k listed entries are corrected in
	// float64.
	if math.Abs(j.gc)*gradBound > math.MaxFloat32 {
		return 0, false
	}
	plogp := 0.0 // sum p log p
	for i, pv := range p {
		if pv > 0 {
			plogp += pv * lp[i]
		}
	}
	if tk.u > 0 {
		plogp += nt * tk.u * tk.lu
	}
	e := sc.f[:V]
	sumE := kernels.ExpSumPrefetch(e, z, a, b, nextRow)
	l := math.Log(sumE)
	beta := j.o.Beta
	dst := z
	if !j.backward {
		dst = sc.g[:V]
	}
	pc, cq := float32(beta*tk.u), float32((1-beta)/sumE)
	sl, ds := kernels.LogMixConst(dst, z, e, pc, cq, a, b)
	// The listed entries' mixture as the kernel had it (with u) and as it
	// is, and their logs in one vector call.
	m := tk.m32[:2*k]
	for i, id := range ids {
		m[i] = pc + cq*e[id]
		m[k+i] = float32(beta*p[i]) + cq*e[id]
	}
	kernels.Log(m, m)
	plm := tk.u * sl // sum p log m, the listed entries still counted as u
	for i, id := range ids {
		lmU, lm := float64(m[i]), float64(m[k+i])
		plm += p[i]*lm - tk.u*lmU
		v := float64(e[id]) * (af*float64(zk[i]) - bf - lm)
		ds += v - float64(dst[id])
		dst[id] = float32(v)
	}
	kp := plogp - plm
	kq := ds/sumE - l
	L := beta*kp + (1-beta)*kq
	if j.backward {
		c := j.gc * (1 - beta) / sumE
		kernels.Axpby(float32(-c*(l+kq)), e, float32(c), z)
	}
	return L * j.t2, true
}

// restMass returns the sum of the exp row e over the ids not listed, given
// its total sumE and the listed ids' sum ek. The difference is exact up to
// float64 rounding of sumE (1e-16 of it); when the rest is under 1e-6 of the
// total it is summed again directly, zeroing the listed entries of e (the
// caller no longer needs them), so that a rest of 1e-15 keeps its digits.
func (j *job) restMass(e []float32, ids []int32, sumE, ek float64) float64 {
	rest := sumE - ek
	if rest > 1e-6*sumE {
		return rest
	}
	for _, id := range ids {
		e[id] = 0
	}
	_, _, rest = kernels.MaxMinSum(e)
	return rest
}

// restFast is forward KL over the listed ids plus one bucket for the rest
// (TailRest): with Q_rest = 1 - sum of the listed q and S = sum p + P_rest,
//
//	D     = sum_K p (log p - log q) + P_rest (log P_rest - log Q_rest)
//	dL/ds = q S - p on the listed ids, q (S - P_rest/Q_rest) elsewhere.
//
// The exp row goes to scratch, so that a row whose rest underflows can still
// go to rowGeneric, which sums it as a log-sum-exp.
func (j *job) restFast(sc *scratch, z []float32, tk *topk, a, b float32, next []float32) (float64, bool) {
	V, k := j.vocab, tk.k
	ids, p, lp, zk := tk.ids[:k], tk.p[:k], tk.lp[:k], tk.zk[:k]
	af := float64(a)
	e := sc.f[:V]
	sumE := kernels.ExpSumPrefetch(e, z, a, b, next)
	l := math.Log(sumE)
	lse := float64(b) + l
	var L, S, ek float64
	q := tk.q[:k]
	for i, id := range ids {
		ek += float64(e[id])
		q[i] = float64(e[id]) / sumE
		S += p[i]
		if p[i] > 0 {
			L += p[i] * (lp[i] - (af*float64(zk[i]) - lse))
		}
	}
	coef := 0.0 // P_rest / Q_rest
	if pr := tk.pr; pr > 0 {
		rest := j.restMass(e, ids, sumE, ek)
		if !(rest > 0) {
			return 0, false
		}
		lqr := math.Log(rest) - l
		L += pr * (math.Log(pr) - lqr)
		S += pr
		coef = pr / math.Exp(lqr)
	}
	if j.backward {
		c := j.gc
		kernels.Axpby(float32(c*(S-coef)/sumE), e, 0, z)
		for i, id := range ids {
			z[id] = float32(c * (q[i]*S - p[i]))
		}
	}
	return L * j.t2, true
}
