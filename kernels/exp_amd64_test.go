package kernels

// archRowImpls returns the assembly variants the CPU runs, each with the Go
// tail the dispatcher adds.
func archRowImpls() []rowImpl {
	var out []rowImpl
	withTail := func(f func(dst, x, pf *float32, n int, a, b float32) float64) func(dst, x []float32, a, b float32) float64 {
		return func(dst, x []float32, a, b float32) float64 {
			n := len(x) &^ 15
			s := 0.0
			if n > 0 {
				s = f(&dst[0], &x[0], &x[0], n, a, b)
			}
			return s + expSumGo(dst[n:], x[n:], a, b)
		}
	}
	if useAVX2Row() {
		out = append(out, rowImpl{"avx2", maxMinSum, withTail(expSumAVX2), XLogXDot, scaleShift, axpby})
	}
	if useAVX512Row() {
		out = append(out, rowImpl{"avx512", maxMinSum, withTail(expSumAVX512), XLogXDot, scaleShift, axpby})
	}
	return out
}
