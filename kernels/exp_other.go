//go:build !amd64

package kernels

func maxMinSum(x []float32) (mx, mn float32, sum float64) { return maxMinSumGo(x) }

func expSum(dst, x []float32, a, b float32, next []float32) float64 {
	return expSumGo(dst, x, a, b)
}

func expSumStream(dst, x []float32, a, b float32) float64 { return expSumGo(dst, x, a, b) }

func streamFence() {}

func xLogXDot(x, y, next []float32) (xlogx, sum, dot float64, mn float32) {
	return xLogXDotGo(x, y)
}

func scaleShift(x []float32, alpha, beta float32) { scaleShiftGo(x, alpha, beta) }

func axpby(alpha float32, x []float32, beta float32, y []float32) { axpbyGo(alpha, x, beta, y) }

func logRow(dst, x []float32) { logRowGo(dst, x) }

func dot(x, y []float32) float64 { return dotGo(x, y) }

func mulShift(y, x []float32, alpha, beta float32) { mulShiftGo(y, x, alpha, beta) }

// useAVX2Row reports whether the row kernels run assembly: never here.
func useAVX2Row() bool { return false }

func expDiffDot(dst, x, y []float32, a, b, c, f float32, next []float32) (sum, dot float64) {
	return expDiffDotGo(dst, x, y, a, b, c, f)
}

func logMixDot(dst, z, p, e []float32, cp, cq, a, b float32) (pl, ds float64) {
	return logMixDotGo(dst, z, p, e, cp, cq, a, b)
}

func mulDiff(y, e, x []float32, alpha, a, b, c, d float32, s float64) {
	mulDiffGo(y, e, x, alpha, a, b, c, d, s)
}

func logMixConst(dst, z, e []float32, pc, cq, a, b float32) (sl, ds float64) {
	return logMixConstGo(dst, z, e, pc, cq, a, b)
}
