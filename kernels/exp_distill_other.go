//go:build !amd64

package kernels

func groupMaxMin(gmax, x []float32) (mx, mn float32) { return groupMaxMinGo(gmax, x) }

func indicesAbove(dst []int32, x []float32, thr float32) int { return indicesAboveGo(dst, x, thr) }

func topBound(keys []int32, k int) (int32, int) { return topBoundGo(keys, k) }
