package kernels

import "math"

// archSelectImpls returns the assembly selection kernels the CPU runs, each
// with the Go tail of its dispatch.
func archSelectImpls() []selectImpl {
	if !useAVX2Row() {
		return nil
	}
	ia := func(asm func(dst []int32, x []float32, n int, thr float32) int) func([]int32, []float32, float32) int {
		return func(dst []int32, x []float32, thr float32) int {
			m := len(x) &^ 15
			n := 0
			if m > 0 {
				n = asm(dst, x, m, thr)
			}
			for i, v := range x[m:] {
				if v > thr {
					dst[n] = int32(m + i)
					n++
				}
			}
			return n
		}
	}
	tb := func(keys []int32, k int) (int32, int) {
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
	out := []selectImpl{{"avx2", groupMaxMin, ia(func(dst []int32, x []float32, n int, thr float32) int {
		return indicesAboveAVX2(&dst[0], &x[0], n, thr, &packLUT)
	}), tb}}
	if useAVX512Row() {
		out = append(out, selectImpl{"avx512", groupMaxMin, ia(func(dst []int32, x []float32, n int, thr float32) int {
			return indicesAboveAVX512(&dst[0], &x[0], n, thr)
		}), tb})
	}
	return out
}
