package loss

import (
	"math"

	"github.com/klring/klring/kernels"
)

// The teacher's top-k selection. The row is cut into G >= 2k strided groups
// (id mod G); the k-th largest of their maxima is reached by at least k
// entries (each of k groups holds one), and for logits in no particular
// order by about 1.4k, so it is a threshold that keeps the top k and few
// others. GroupMaxMin finds the maxima in the pass that checks the row's
// range, TopBound their k-th largest, IndicesAbove the entries above the
// threshold in one branch-free pass, and TopBound again the k largest of
// those, exactly, by their OrderKeys (ties to the lower id).

// topKey orders the entries of a row of finite floats by value, then by
// lower id: the float's bits made to sort as unsigned integers above the
// id's complement.
func topKey(v float32, id int) uint64 {
	u := math.Float32bits(v)
	if u&0x80000000 != 0 {
		u = ^u
	} else {
		u |= 0x80000000
	}
	return uint64(u)<<32 | uint64(^uint32(id))
}

// topGroups is the number of groups of the threshold for the top k of V: 2k
// rounded up to a multiple of 32 (the kernels' unit), or 0 (no threshold)
// when the groups would hold fewer than 4 entries each.
func topGroups(V, k int) int {
	G := (2*k + 31) &^ 31
	if 4*G > V {
		return 0
	}
	return G
}

// groupThreshold returns a float that at least k entries of the row whose
// group maxima are gm are above: just below the k-th largest maximum (or a
// value under it, see TopBound).
func groupThreshold(tk *topk, gm []float32, k int) float32 {
	keys := tk.keys[:len(gm)]
	for i, v := range gm {
		keys[i] = kernels.OrderKey(v)
	}
	b, _ := kernels.TopBound(keys, k)
	return math.Nextafter32(kernels.FromOrderKey(b), float32(math.Inf(-1)))
}

// selectTop writes the ids of the k largest entries of t (finite) into
// tk.ids[:k], ties going to the lower id (as a stable sort by decreasing t
// would).
func selectTop(tk *topk, t []float32, k int) {
	thr := float32(math.Inf(-1))
	if G := topGroups(len(t), k); G > 0 {
		gm := tk.gmax[:G]
		kernels.GroupMaxMin(gm, t)
		thr = groupThreshold(tk, gm, k)
	}
	selectAbove(tk, t, k, thr)
}

// selectAbove is selectTop given thr, a float that at least k entries of t
// are above: the ids above thr, in increasing order, then those of them
// above the bound b of their keys, then those equal to b, lowest first,
// until there are k.
func selectAbove(tk *topk, t []float32, k int, thr float32) {
	hits := tk.hits[:len(t)]
	n := kernels.IndicesAbove(hits, t, thr)
	hits = hits[:n]
	ids := tk.ids[:k+1] // one more: the branch-free loop writes one past the k-th
	if n == k {
		copy(ids, hits)
		return
	}
	keys := tk.keys[:n]
	for i, id := range hits {
		keys[i] = kernels.OrderKey(t[id])
	}
	b, _ := kernels.TopBound(keys, k)
	m := 0
	for i, key := range keys {
		ids[m] = hits[i]
		m += int(uint64(int64(b)-int64(key)) >> 63) // key > b
	}
	for i, key := range keys {
		if m == k {
			break
		}
		if key == b {
			ids[m] = hits[i]
			m++
		}
	}
}
