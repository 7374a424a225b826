package loss

import (
	"math"

	"github.com/klring/klring/kernels"
)

// Fast paths for distillation targets: a teacher's logits (dense, or cut to
// its top k inside the pass) and sparse top-k rows (a teacher's precomputed
// top k), in every direction and with every tail.
//
// Dense teacher logits t, with e_t = exp(a_t*t - b_t) (a_t = 1/T_t, b_t =
// a_t*max t) and l_t = log(sum e_t), so log p = a_t*t - b_t - l_t exactly
// (never log 0), and the student's e = exp(a*z - b), l = log(sum e):
//
//	forward  ExpDot2 over t gives sum e_t, sum e_t*t, sum e_t*z: then
//	         D = (a_t sum e_t t - a sum e_t z)/sum e_t - (b_t - b) - l_t + l,
//	         and the gradient q - p is one Axpby of e and e_t.
//	reverse  ExpDot2 over z gives sum e, sum e*z, sum e*t, so
//	         D = (a sum e z - a_t sum e t)/sum e - (b - b_t) - l + l_t,
//	         and the gradient q (log q - log p - D) is one MulDiff.
//	JSD      both ExpDot2, then LogMixDot: log m, sum p log m, sum q log m
//	         and e*(arg - log m) in one pass, and an Axpby.
//
// Top-k targets (topk) keep k (id, p, log p) entries in float64 and one
// value for every other id (the uniform tail, 0 when renormalized) or one
// bucket (the rest tail). The row's vectorised passes treat every id as an
// unlisted one; the k listed entries of the gradient are then overwritten,
// computed in float64. The teacher's top k are found by a heap of k and
// NextAbove, which passes over the ids below the heap's smallest 16 at a
// time; their probabilities come from exp in float64, the mass of the rest
// from the float64 sum of the float32 exp row minus the listed entries (so
// a small rest keeps its relative accuracy).

// topk is the top-k target of one row.
type topk struct {
	k    int
	ids  []int32   // [k]
	p    []float64 // [k] target probability of each listed id, tail and smoothing applied
	lp   []float64 // [k] its log (-Inf for 0)
	zk   []float32 // [k] the student's logit of each listed id
	u    float64   // probability of every id not listed (uniform tail; 0 when renormalized)
	lu   float64   // log u
	rest bool      // TailRest: the ids not listed form one bucket
	pr   float64   // the bucket's probability
	kept float64   // target mass of the listed ids before tail and smoothing

	heap []float32 // [k] the teacher logits of the selection heap
}

func (tk *topk) alloc(V int) {
	tk.ids = make([]int32, V)
	tk.p = make([]float64, V)
	tk.lp = make([]float64, V)
	tk.zk = make([]float32, V)
	tk.heap = make([]float32, V)
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
	if math.IsNaN(sum) || mx > math.MaxFloat32 || mn < -math.MaxFloat32 {
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
	at, bt, ok := j.teacherShift(t)
	if !ok {
		return 0, 0, false
	}
	if j.topK > 0 {
		tk := j.teacherTop(sc, r, z, t, at, bt)
		div, ok = j.topkFast(sc, r, z, tk, j.t.TeacherLogits)
		return div, tk.kept, ok
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
	af, bf, atf, btf := float64(a), float64(b), float64(at), float64(bt)
	nextZ, nextT := j.nextRow(j.logits, r), j.nextRow(j.t.TeacherLogits, r)
	switch j.dir {
	case Forward:
		eT := sc.u1[:V]
		sumT, tt, tz := kernels.ExpDot2(eT, t, t, z, at, bt, nextZ)
		e, sumE, _ := j.expRow(sc, z, a, b, nextT)
		D := (atf*tt-af*tz)/sumT - (btf - bf) - math.Log(sumT) + math.Log(sumE)
		if j.backward {
			kernels.Axpby(float32(-j.gc/sumT), eT, float32(j.gc/sumE), e)
		}
		return D * j.t2, 1, true
	case Reverse:
		sumT := kernels.ExpSumPrefetch(sc.u1[:V], t, at, bt, nextZ)
		e := sc.f[:V]
		sumE, ez, et := kernels.ExpDot2(e, z, z, t, a, b, nextT)
		l, lt := math.Log(sumE), math.Log(sumT)
		D := (af*ez-atf*et)/sumE - (bf - btf) - l + lt
		if j.backward {
			kernels.MulDiff(z, e, t, float32(j.gc/sumE), a, b, at, bt, float32(lt-l-D))
		}
		return D * j.t2, 1, true
	}
	// JSD.
	eT := sc.u1[:V]
	sumT, tt, _ := kernels.ExpDot2(eT, t, t, t, at, bt, nextZ)
	e := sc.f[:V]
	sumE, ez, _ := kernels.ExpDot2(e, z, z, z, a, b, nextT)
	l, lt := math.Log(sumE), math.Log(sumT)
	beta := j.o.Beta
	dst := z
	if !j.backward {
		dst = sc.g[:V]
	}
	pl, el := kernels.LogMixDot(dst, z, eT, e, float32(beta/sumT), float32((1-beta)/sumE), a, b)
	kp := (atf*tt-btf*sumT)/sumT - lt - pl/sumT // sum p log p - sum p log m
	kq := (af*ez-bf*sumE)/sumE - l - el/sumE    // sum q log q - sum q log m
	L := beta*kp + (1-beta)*kq
	if j.backward {
		c := j.gc * (1 - beta) / sumE
		kernels.Axpby(float32(-c*(l+kq)), e, float32(c), z)
	}
	return L * j.t2, 1, true
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

// teacherTop selects the top k of teacher row t into sc.tk.
func (j *job) teacherTop(sc *scratch, r int, z, t []float32, at, bt float32) *topk {
	V, k := j.vocab, j.topK
	tk := &sc.tk
	tk.k = k
	eT := sc.u2[:V]
	sumT := kernels.ExpSumPrefetch(eT, t, at, bt, j.nextRow(j.logits, r))
	selectTop(tk, t, k)
	atf, btf := float64(at), float64(bt)
	var sumK32, sumK float64
	for i, id := range tk.ids[:k] {
		sumK32 += float64(eT[id])
		x := atf*float64(t[id]) - btf
		tk.lp[i] = x
		tk.p[i] = math.Exp(x)
		sumK += tk.p[i]
		tk.zk[i] = z[id]
	}
	rest := max(sumT-sumK32, 0) // the float32 exps of the others, summed exactly
	tot := sumK + rest
	lt := math.Log(tot)
	for i := range tk.p[:k] {
		tk.p[i] /= tot
		tk.lp[i] -= lt
	}
	j.finishTop(tk, sumK/tot, rest/tot, V)
	return tk
}

// selectTop writes the ids of the k largest entries of t into tk.ids[:k],
// ties going to the lower id (as a stable sort by decreasing t would): a
// heap of the k best so far, whose root is the worst of them, and
// NextAbove to find the next entry that beats the root.
func selectTop(tk *topk, t []float32, k int) {
	ids, hv := tk.ids[:k], tk.heap[:k]
	for i := range ids {
		ids[i], hv[i] = int32(i), t[i]
	}
	// worse(a, b): heap entry a ranks below b.
	worse := func(a, b int) bool {
		return hv[a] < hv[b] || hv[a] == hv[b] && ids[a] > ids[b]
	}
	down := func(i int) {
		for {
			c := 2*i + 1
			if c >= k {
				return
			}
			if c+1 < k && worse(c+1, c) {
				c++
			}
			if !worse(c, i) {
				return
			}
			ids[i], ids[c] = ids[c], ids[i]
			hv[i], hv[c] = hv[c], hv[i]
			i = c
		}
	}
	for i := k/2 - 1; i >= 0; i-- {
		down(i)
	}
	// A later id beats the root only with a larger value.
	for i := k; ; i++ {
		i = kernels.NextAbove(t, i, hv[0])
		if i >= len(t) {
			return
		}
		ids[0], hv[0] = int32(i), t[i]
		down(0)
	}
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
		_, sumE, lse := j.expRow(sc, z, a, b, nextRow)
		L := plogp - (af*pz - Stot*bf) + Stot*math.Log(sumE)
		if j.backward {
			c := j.gc
			kernels.ScaleShift(z, float32(c*Stot/sumE), float32(-c*tk.u))
			for i, id := range ids {
				z[id] = float32(c * (math.Exp(af*float64(zk[i])-lse)*Stot - p[i]))
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
		sumE, ez, _ := kernels.ExpDot2(e, z, z, z, a, b, nextRow)
		l := math.Log(sumE)
		lse := bf + l
		// sum q log q over every id, less the listed ids' sum q log p and
		// the others' Q_rest * log u.
		L := (af*ez-bf*sumE)/sumE - l
		ek := 0.0
		for i, id := range ids {
			ek += float64(e[id])
			L -= math.Exp(af*float64(zk[i])-lse) * lp[i]
		}
		if k < V {
			L -= tk.lu * j.restMass(e, ids, sumE, ek) / sumE
		}
		if j.backward {
			if k < V {
				kernels.MulDiff(z, e, z, float32(j.gc/sumE), a, b, 0, 0, float32(-(l + tk.lu + L)))
			}
			for i, id := range ids {
				lq := af*float64(zk[i]) - lse
				z[id] = float32(j.gc * math.Exp(lq) * (lq - lp[i] - L))
			}
		}
		return L * j.t2, true
	}
	// JSD: the target as a dense float32 row, then as a dense teacher.
	if math.Abs(j.gc)*gradBound > math.MaxFloat32 {
		return 0, false
	}
	pd := sc.u1[:V]
	clear(pd)
	if tk.u > 0 {
		kernels.ScaleShift(pd, 1, float32(tk.u))
	}
	plogp := 0.0
	for i, id := range ids {
		pd[id] = float32(p[i])
		if p[i] > 0 {
			plogp += p[i] * lp[i]
		}
	}
	if tk.u > 0 {
		plogp += nt * tk.u * tk.lu
	}
	e := sc.f[:V]
	sumE, ez, _ := kernels.ExpDot2(e, z, z, z, a, b, nextRow)
	l := math.Log(sumE)
	beta := j.o.Beta
	dst := z
	if !j.backward {
		dst = sc.g[:V]
	}
	pl, el := kernels.LogMixDot(dst, z, pd, e, float32(beta), float32((1-beta)/sumE), a, b)
	kp := plogp - pl
	kq := (af*ez-bf*sumE)/sumE - l - el/sumE
	L := beta*kp + (1-beta)*kq
	if j.backward {
		c := j.gc * (1 - beta) / sumE
		kernels.Axpby(float32(-c*(l+kq)), e, float32(c), z)
	}
	return L * j.t2, true
}

// restMass returns the sum of the exp row e over the ids not listed, given
// its total sumE and the listed ids' sum ek. The difference is exact up to
// float64 rounding of sumE; when the rest is under 1e-6 of the total it is
// summed again directly (zeroing the listed entries of e, which the caller
// no longer needs).
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
	for i, id := range ids {
		ek += float64(e[id])
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
			z[id] = float32(c * (math.Exp(af*float64(zk[i])-lse)*S - p[i]))
		}
	}
	return L * j.t2, true
}
