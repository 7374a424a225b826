package shard

import "fmt"

// HasTruth says whether the dataset knows the true next-token distribution
// at every position (the synthetic source does; files do not).
func (d *Dataset) HasTruth() bool { return d.syn != nil }

// TruthK returns K, the entries of every row that Truth writes, or 0 without
// a truth.
func (d *Dataset) TruthK() int {
	if d.syn == nil {
		return 0
	}
	return d.syn.K
}

// Truth writes the true distribution of each target of window id, given the
// tokens of the window before it, as sparse rows: row t (0 <= t < Ctx())
// is the distribution of token t+1 given tokens 0..t, in
// ids[t*K:(t+1)*K] and probs[t*K:(t+1)*K], K = TruthK(). A row's entries
// are distinct ids; the ids of the support come first, ascending, then
// padding ids at probability 0. Each row sums to 1 within float32 rounding.
//
// Row 0 sees one token, so it is the mixture over the unseen class of the
// token before the window under the stationary distribution; rows t >= 1 are
// the source's transition rows. Both are exact: the corpus is stationary
// from its first token.
//
// It panics without a truth, if id is not a window or if ids or probs is
// shorter than Ctx()*K. It allocates nothing.
func (d *Dataset) Truth(id int, ids []int32, probs []float32) {
	sy := d.syn
	if sy == nil {
		panic("shard: Truth of a source without a truth (" + d.source + ")")
	}
	d.checkID(id)
	K, T, V := sy.K, d.ctx, sy.V
	if len(ids) < T*K || len(probs) < T*K {
		panic(fmt.Sprintf("shard: Truth rows of %d ids and %d probs, want %d (ctx %d x K %d)", len(ids), len(probs), T*K, T, K))
	}
	lo := id * T
	prev, cur := 0, d.tok(lo)
	copy(ids[:K], sy.ids1[cur*K:(cur+1)*K])
	copy(probs[:K], sy.p1[cur*K:(cur+1)*K])
	for t := 1; t < T; t++ {
		prev, cur = cur, d.tok(lo+t)
		s := int(sy.class[prev])*V + cur
		copy(ids[t*K:(t+1)*K], sy.ids2[s*K:(s+1)*K])
		copy(probs[t*K:(t+1)*K], sy.p2[s*K:(s+1)*K])
	}
}

// TruthOf writes the true distribution of the token after each position of
// an arbitrary token sequence (such as a model's own samples), as Truth does
// for a window: row t is the distribution of token t+1 given tokens 0..t,
// row 0 the stationary mixture given token 0 alone. It panics without a
// truth, on a token outside the vocabulary, or if ids or probs is shorter
// than len(tokens)*K.
func (d *Dataset) TruthOf(tokens []int32, ids []int32, probs []float32) {
	sy := d.syn
	if sy == nil {
		panic("shard: TruthOf a source without a truth (" + d.source + ")")
	}
	K, V := sy.K, sy.V
	if len(ids) < len(tokens)*K || len(probs) < len(tokens)*K {
		panic(fmt.Sprintf("shard: TruthOf %d tokens into %d ids and %d probs, want %d", len(tokens), len(ids), len(probs), len(tokens)*K))
	}
	for t, tok := range tokens {
		if tok < 0 || int(tok) >= V {
			panic(fmt.Sprintf("shard: TruthOf token %d at %d, vocabulary %d", tok, t, V))
		}
		var row int
		if t == 0 {
			copy(ids[:K], sy.ids1[int(tok)*K:(int(tok)+1)*K])
			copy(probs[:K], sy.p1[int(tok)*K:(int(tok)+1)*K])
			continue
		}
		row = int(sy.class[tokens[t-1]])*V + int(tok)
		copy(ids[t*K:(t+1)*K], sy.ids2[row*K:(row+1)*K])
		copy(probs[t*K:(t+1)*K], sy.p2[row*K:(row+1)*K])
	}
}

// EntropyFloor returns the mean, over the target positions of windows, of the
// entropy of the true distribution (Truth) in nats: the loss no model can
// beat in expectation on those windows, and the cross-entropy whose excess
// over it is the mean KL from the truth. It returns -1 without a truth or
// windows. It panics if an id is not a window.
func (d *Dataset) EntropyFloor(windows []int) float64 {
	sy := d.syn
	if sy == nil || len(windows) == 0 {
		return -1
	}
	T, V := d.ctx, sy.V
	var sum float64
	for _, id := range windows {
		d.checkID(id)
		lo := id * T
		prev, cur := 0, d.tok(lo)
		sum += sy.h1[cur]
		for t := 1; t < T; t++ {
			prev, cur = cur, d.tok(lo+t)
			sum += sy.h2[int(sy.class[prev])*V+cur]
		}
	}
	return sum / float64(len(windows)*T)
}

// Stats returns the exact stationary expectations of the synthetic source
// (entropy rate, best bigram and unigram losses); ok is false for files.
func (d *Dataset) Stats() (s Stats, ok bool) {
	if d.syn == nil {
		return Stats{}, false
	}
	return d.syn.stats, true
}
