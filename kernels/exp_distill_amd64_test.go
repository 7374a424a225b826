package kernels

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
	out := []selectImpl{{"avx2", groupMaxMin, ia(func(dst []int32, x []float32, n int, thr float32) int {
		return indicesAboveAVX2(&dst[0], &x[0], n, thr, &packLUT)
	}), topBoundVec}}
	if useAVX512Row() {
		out = append(out, selectImpl{"avx512", groupMaxMin, ia(func(dst []int32, x []float32, n int, thr float32) int {
			return indicesAboveAVX512(&dst[0], &x[0], n, thr)
		}), topBoundVec})
	}
	return out
}
