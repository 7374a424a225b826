package kernels

import "math"

// The assembly selection kernels (exp_amd64.s).

// groupMaxMinAVX2 sets gmax[c] = max over s < nstr of x[s*grp+c] for c < grp (grp
// > 0 a multiple of 32, nstr > 0) and returns the largest and smallest of
// those x.
//
//go:noescape
func groupMaxMinAVX2(gmax, x *float32, grp, nstr int) (mx, mn float32)

// indicesAboveAVX2 writes the i < n with x[i] > thr into dst and returns
// their count; n > 0 a multiple of 16; lut is packLUT. It stores 8 indices
// at a time at the count so far, so dst must hold n.
//
//go:noescape
func indicesAboveAVX2(dst *int32, x *float32, n int, thr float32, lut *[256][8]int32) int

// indicesAboveAVX512 is indicesAboveAVX2 by VPCOMPRESSD, 16 at a time.
//
//go:noescape
func indicesAboveAVX512(dst *int32, x *float32, n int, thr float32) int

// topBoundAVX2 is topBoundGo over the n keys at keys (n >= 0 a multiple
// of 16) and the cnt - n in tails[0:16], padded with MinInt32, and again in
// tails[16:32], padded with MaxInt32.
//
//go:noescape
func topBoundAVX2(keys *int32, n int, tails *[32]int32, cnt, k int) (t int32, c int)

// packLUT[m] lists the set bits of m, lowest first: the lanes of 8 that
// indicesAboveAVX2 packs to the front for the compare mask m.
var packLUT [256][8]int32

func init() {
	for m := range packLUT {
		n := 0
		for b := range 8 {
			if m>>b&1 != 0 {
				packLUT[m][n] = int32(b)
				n++
			}
		}
	}
}

func groupMaxMin(gmax, x []float32) (mx, mn float32) {
	G := len(gmax)
	nstr := len(x) / G
	if G%32 != 0 || !useAVX2Row() {
		return groupMaxMinGo(gmax, x)
	}
	mx, mn = groupMaxMinAVX2(&gmax[0], &x[0], G, nstr)
	for i, v := range x[nstr*G:] {
		gmax[i] = max(gmax[i], v)
		mx, mn = max(mx, v), min(mn, v)
	}
	return mx, mn
}

func indicesAbove(dst []int32, x []float32, thr float32) int {
	m := len(x) &^ 15
	if m == 0 || !useAVX2Row() {
		return indicesAboveGo(dst, x, thr)
	}
	var n int
	if useAVX512Row() {
		n = indicesAboveAVX512(&dst[0], &x[0], m, thr)
	} else {
		n = indicesAboveAVX2(&dst[0], &x[0], m, thr, &packLUT)
	}
	for i, v := range x[m:] {
		if v > thr {
			dst[n] = int32(m + i)
			n++
		}
	}
	return n
}

func topBound(keys []int32, k int) (int32, int) {
	if !useAVX2Row() {
		return topBoundGo(keys, k)
	}
	return topBoundVec(keys, k)
}

// topBoundVec is topBound on topBoundAVX2, the keys past the last whole 16
// handed over padded in tails.
func topBoundVec(keys []int32, k int) (int32, int) {
	m := len(keys) &^ 15
	var tails [32]int32
	for i := range 16 {
		tails[i], tails[16+i] = math.MinInt32, math.MaxInt32
	}
	copy(tails[:16], keys[m:])
	copy(tails[16:], keys[m:])
	var p *int32
	if m > 0 {
		p = &keys[0]
	}
	return topBoundAVX2(p, m, &tails, len(keys), k)
}
