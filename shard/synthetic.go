package shard

import (
	"math"
	"slices"
)

// synth is the synthetic source: an order-2 Markov chain over V tokens whose
// dependence on the token two back goes through its class, one of M. The
// state is (m, b) = (class of x[t-2], x[t-1]), index m*V+b; from it the next
// token is one of S successors succ[s*S+j] with probability prob[s*S+j].
type synth struct {
	V, M, S, K int
	G          int // modes of every row (Options.Modes)

	class []int32   // [V] class of each token
	succ  []int32   // [M*V*S] successors of each state
	prob  []float64 // [M*V*S] their probabilities (Dirichlet(1) draws)
	cum   []float64 // [M*V*S] running sums of prob, for sampling
	pi    []float64 // [M*V] stationary distribution of the state

	// Truth rows padded to K entries with probability 0 (see Dataset.Truth).
	ids2 []int32   // [M*V*K] row of state (m, b): P(. | class m two back, b)
	p2   []float32 // [M*V*K]
	ids1 []int32   // [V*K] row of token b: P(. | b) under stationarity
	p1   []float32 // [V*K]
	h2   []float64 // [M*V] entropy of each state's row, nats
	h1   []float64 // [V] entropy of each first-position row, nats

	stats Stats
}

// Stats are exact expectations of the synthetic source under its stationary
// distribution, in nats per token.
type Stats struct {
	// Floor is H(X_t | X_{t-2}, X_{t-1}), the entropy rate: the expected loss
	// of the true model once it sees two tokens.
	Floor float64
	// Bigram is H(X_t | X_{t-1}): the expected loss of the best model that
	// sees only the previous token.
	Bigram float64
	// Unigram is H(X_t): the expected loss of the best model that sees
	// nothing.
	Unigram float64
	// Support is K, the entries of every truth row (Dataset.TruthK).
	Support int
}

// newSynth draws a source from o (defaults applied) and its seed.
func newSynth(o Options) *synth {
	V, M, S := o.Vocab, o.Classes, o.Successors
	r := newRNG(o.Seed, domainSource, 0)
	sy := &synth{V: V, M: M, S: S, G: max(o.Modes, 1)}

	// Balanced classes: a random permutation of the tokens, cut into M.
	perm := make([]int32, V)
	for i := range perm {
		perm[i] = int32(i)
	}
	r.shuffle(perm)
	sy.class = make([]int32, V)
	for i, t := range perm {
		sy.class[t] = int32(i % M)
	}

	// Successors. The first successor of (m, b) is sigma_m(b), where sigma_m
	// is a random cycle through all V tokens (Sattolo's algorithm): every
	// token reaches every other within one class, so the chain is
	// irreducible and the corpus uses the whole vocabulary. The other S-1
	// are distinct random tokens.
	sy.succ = make([]int32, M*V*S)
	sy.prob = make([]float64, M*V*S)
	sy.cum = make([]float64, M*V*S)
	sigma := make([]int32, V)
	pool := make([]int32, V) // a permutation of the tokens
	pos := make([]int32, V)  // pos[t]: index of t in pool
	for i := range pool {
		pool[i], pos[i] = int32(i), int32(i)
	}
	swap := func(i, j int) {
		pool[i], pool[j] = pool[j], pool[i]
		pos[pool[i]], pos[pool[j]] = int32(i), int32(j)
	}
	for m := range M {
		for i := range sigma {
			sigma[i] = int32(i)
		}
		for i := V - 1; i > 0; i-- {
			j := r.intn(i)
			sigma[i], sigma[j] = sigma[j], sigma[i]
		}
		for b := range V {
			s := m*V + b
			if sy.G > 1 {
				sy.modeSuccessors(&r, s, sigma[b])
			} else {
				swap(0, int(pos[sigma[b]]))
				for j := 1; j < S; j++ {
					swap(j, j+r.intn(V-j))
				}
				copy(sy.succ[s*S:(s+1)*S], pool[:S])
			}
			sy.drawRow(&r, s)
		}
	}

	sy.stationary()
	sy.tables()
	return sy
}

// drawRow draws the probabilities of state s's successors: Dirichlet(1)
// over each mode's group of S/G, each group holding mass 1/G (one group of
// S when G = 1).
func (sy *synth) drawRow(r *rng, s int) {
	S, per := sy.S, sy.S/sy.G
	row := sy.prob[s*S : (s+1)*S]
	for g := 0; g < sy.G; g++ {
		grp := row[g*per : (g+1)*per]
		var sum float64
		for j := range grp {
			u := (float64(r.next()>>11) + 0.5) / (1 << 53) // (0, 1)
			grp[j] = -math.Log(u)                          // Exp(1): the group is Dirichlet(1)
			sum += grp[j]
		}
		for j := range grp {
			grp[j] /= sum * float64(sy.G)
		}
	}
	var c float64
	for j := range row {
		c += row[j]
		sy.cum[s*S+j] = c
	}
	sy.cum[(s+1)*S-1] = 1
}

// modeSuccessors chooses state s's successors with G modes: group g holds
// S/G distinct tokens of region g (tokens t with t mod G = g); first, the
// successor that keeps the chain irreducible, is in its region's group.
func (sy *synth) modeSuccessors(r *rng, s int, first int32) {
	S, G, V := sy.S, sy.G, sy.V
	per := S / G
	succ := sy.succ[s*S : (s+1)*S]
	for g := 0; g < G; g++ {
		grp := succ[g*per : (g+1)*per]
		n := (V - g + G - 1) / G // tokens in region g: g, g+G, g+2G, ...
		j := 0
		if int(first)%G == g {
			grp[0], j = first, 1
		}
		for j < per {
			t := int32(g + G*r.intn(n))
			if !slices.Contains(grp[:j], t) {
				grp[j] = t
				j++
			}
		}
	}
}

// stationary finds the stationary distribution of the state by power
// iteration of the lazy chain (P+I)/2, which has the same fixed point and
// converges for every irreducible chain, until an iteration changes it by
// less than 1e-15 in L1 (or a budget of work runs out).
func (sy *synth) stationary() {
	V, M, S := sy.V, sy.M, sy.S
	n := M * V
	pi := make([]float64, n)
	next := make([]float64, n)
	for i := range pi {
		pi[i] = 1 / float64(n)
	}
	budget := max(1<<28/(n*S), 64)
	for range budget {
		clear(next)
		for s, w := range pi {
			if w == 0 {
				continue
			}
			m2 := int(sy.class[s%V]) * V // class of b is the next state's m
			for j := s * S; j < (s+1)*S; j++ {
				next[m2+int(sy.succ[j])] += w * sy.prob[j]
			}
		}
		var diff, sum float64
		for i := range pi {
			v := 0.5 * (pi[i] + next[i])
			diff += math.Abs(v - pi[i])
			pi[i] = v
			sum += v
		}
		for i := range pi {
			pi[i] /= sum
		}
		if diff < 1e-15 {
			break
		}
	}
	sy.pi = pi
}

// tables builds the padded truth rows and their entropies.
func (sy *synth) tables() {
	V, M, S := sy.V, sy.M, sy.S
	// Rows of the first target of a window: P(x | b) = sum_m pi(m,b) T[m,b](x) / pi(b).
	dense := make([]float64, V)
	rows1 := make([][]int32, V)
	vals1 := make([][]float64, V)
	piB := make([]float64, V)
	sy.h1 = make([]float64, V)
	K := S
	for b := range V {
		for m := range M {
			piB[b] += sy.pi[m*V+b]
		}
		var ids []int32
		for m := range M {
			s := m*V + b
			w := sy.pi[s]
			if w == 0 {
				continue
			}
			for j := s * S; j < (s+1)*S; j++ {
				x := sy.succ[j]
				if dense[x] == 0 {
					ids = append(ids, x)
				}
				dense[x] += w / piB[b] * sy.prob[j]
			}
		}
		slices.Sort(ids)
		vals := make([]float64, len(ids))
		for i, x := range ids {
			vals[i] = dense[x]
			dense[x] = 0
		}
		rows1[b], vals1[b] = ids, vals
		sy.h1[b] = entropy(vals)
		K = max(K, len(ids))
	}
	sy.K = K

	sy.ids1 = make([]int32, V*K)
	sy.p1 = make([]float32, V*K)
	for b := range V {
		fillRow(sy.ids1[b*K:(b+1)*K], sy.p1[b*K:(b+1)*K], rows1[b], vals1[b])
	}

	sy.ids2 = make([]int32, M*V*K)
	sy.p2 = make([]float32, M*V*K)
	sy.h2 = make([]float64, M*V)
	idx := make([]int, S)
	ids := make([]int32, S)
	vals := make([]float64, S)
	for s := range M * V {
		for j := range idx {
			idx[j] = j
		}
		succ, prob := sy.succ[s*S:(s+1)*S], sy.prob[s*S:(s+1)*S]
		slices.SortFunc(idx, func(a, b int) int { return int(succ[a]) - int(succ[b]) })
		for j, k := range idx {
			ids[j], vals[j] = succ[k], prob[k]
		}
		fillRow(sy.ids2[s*K:(s+1)*K], sy.p2[s*K:(s+1)*K], ids, vals)
		sy.h2[s] = entropy(vals)
	}

	// Exact stationary expectations.
	var st Stats
	tok := make([]float64, V)
	for s, w := range sy.pi {
		st.Floor += w * sy.h2[s]
		tok[s%V] += w
	}
	for b, w := range piB {
		st.Bigram += w * sy.h1[b]
	}
	st.Unigram = entropy(tok)
	st.Support = K
	sy.stats = st
}

// fillRow writes a sparse row of len(ids) entries and pads it with the
// smallest ids not in it, at probability 0.
func fillRow(dstIDs []int32, dstP []float32, ids []int32, vals []float64) {
	n := copy(dstIDs, ids)
	for i, v := range vals {
		dstP[i] = float32(v)
	}
	next := int32(0)
	for i := n; i < len(dstIDs); i++ {
		for slices.Contains(ids, next) {
			next++
		}
		dstIDs[i], dstP[i] = next, 0
		next++
	}
}

// entropy returns -sum p log p in nats of a distribution.
func entropy(p []float64) float64 {
	var h float64
	for _, v := range p {
		if v > 0 {
			h -= v * math.Log(v)
		}
	}
	return h
}

// generate writes n tokens of the chain, started in a state drawn from its
// stationary distribution, so that every position of the corpus is
// stationary. put stores token i.
func (sy *synth) generate(seed uint64, n int, put func(i, t int)) {
	r := newRNG(seed, domainSource, 1)
	u := r.float64()
	s := len(sy.pi) - 1
	var c float64
	for i, w := range sy.pi {
		c += w
		if u < c {
			s = i
			break
		}
	}
	S, V := sy.S, sy.V
	for i := range n {
		u := r.float64()
		cum := sy.cum[s*S : (s+1)*S]
		j := 0
		for j < S-1 && u >= cum[j] {
			j++
		}
		x := int(sy.succ[s*S+j])
		put(i, x)
		s = int(sy.class[s%V])*V + x
	}
}
