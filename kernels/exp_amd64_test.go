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
	xlTail := func(f func(x, y, pf *float32, n int) (float64, float64, float64, float32)) func(x, y []float32) (float64, float64, float64, float32) {
		return func(x, y []float32) (float64, float64, float64, float32) {
			n := len(x) &^ 15
			if n == 0 {
				return xLogXDotGo(x, y)
			}
			l, s, d, mn := f(&x[0], &y[0], &x[0], n)
			if n < len(x) {
				l2, s2, d2, mn2 := xLogXDotGo(x[n:], y[n:])
				l, s, d, mn = l+l2, s+s2, d+d2, min(mn, mn2)
			}
			return l, s, d, mn
		}
	}
	if useAVX2Row() {
		out = append(out, rowImpl{"avx2", maxMinSum, withTail(expSumAVX2), xlTail(xLogXDotAVX2), scaleShift, axpby})
	}
	if useAVX512Row() {
		out = append(out, rowImpl{"avx512", maxMinSum, withTail(expSumAVX512), xlTail(xLogXDotAVX512), scaleShift, axpby})
	}
	return out
}

type namedLog struct {
	name string
	log  func(dst, x []float32)
}

// archLogs returns the assembly logarithms the CPU runs, with the Go tail.
func archLogs() []namedLog {
	withTail := func(f func(dst, x *float32, n int)) func(dst, x []float32) {
		return func(dst, x []float32) {
			n := len(x) &^ 15
			if n > 0 {
				f(&dst[0], &x[0], n)
			}
			logRowGo(dst[n:], x[n:])
		}
	}
	var out []namedLog
	if useAVX2Row() {
		out = append(out, namedLog{"avx2", withTail(logAVX2)})
	}
	if useAVX512Row() {
		out = append(out, namedLog{"avx512", withTail(logAVX512)})
	}
	return out
}
