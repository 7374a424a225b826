//go:build amd64 && !purego

package lm

import (
	"hash/fnv"
	"math"
	"testing"
	"unsafe"
)

// avx2KernelBits is the FNV-64a hash of the AVX2 element-wise kernels'
// outputs in TestAVX2KernelBits, as the kernels of dedd6e6 (one exp chain
// per 8 floats, GELU in one pass) computed them. The faster forms since
// (constants as memory operands, two exps interleaved, GELU in three
// passes) do the same operations in the same order: a change of one bit
// anywhere changes the hash.
const avx2KernelBits = 0x5459282468fe83c2

// TestAVX2KernelBits pins the bits of the AVX2 GELU, exp and softmax row
// kernels (AVX-512 machines run the AVX2 forms here too).
func TestAVX2KernelBits(t *testing.T) {
	if !haveAVX2 {
		t.Skip("no AVX2")
	}
	h := fnv.New64a()
	put := func(s ...float32) { h.Write(unsafe.Slice((*byte)(unsafe.Pointer(&s[0])), len(s)*4)) }
	r := NewRNG(5)
	for _, n := range []int{1 << 16, 1000} {
		for _, scale := range []float64{0.5, 3, 30, 100} {
			x := randVec(r, n, scale)
			x[0], x[1], x[2], x[3], x[4], x[5] = 0, float32(math.Inf(-1)), -87.4, 88.1, -1e-30, 1e-30
			x[6], x[7] = float32(math.Inf(1)), float32(math.NaN())
			bias := randVec(r, n, 0.1)
			out, gp := make([]float32, n), make([]float32, n)
			geluFwdGradAVX2(&out[0], &gp[0], &x[0], &bias[0], n)
			put(out...)
			put(gp...)
			gp2 := append([]float32(nil), x...)
			geluFwdGradAVX2(&out[0], &gp2[0], &gp2[0], &bias[0], n) // gp = inp
			put(gp2...)
			geluFwdAVX2(&out[0], &x[0], n)
			put(out...)
			d := randVec(r, n, 1)
			geluBwdAVX2(&out[0], &x[0], &d[0], n)
			put(out...)
			geluBwdSetAVX2(&out[0], &x[0], &d[0], n)
			put(out...)
			e := append([]float32(nil), x[8:]...)
			put(expSubAVX2(&e[0], n-8, 1.5))
			put(e...)
			for _, end := range []int{8, 16, 24, 128, 136} {
				for _, rn := range []int{1, 5, 8, 9, 13, 16, 17, 64, 100, 128, 136} {
					if rn > end {
						continue
					}
					row := append([]float32(nil), x[8:8+end]...)
					mx, sum := softmaxRowFwdAVX2(&row[0], rn, end)
					put(row...)
					put(mx, sum)
					p := append([]float32(nil), x[8:8+end]...)
					dd := append([]float32(nil), d[:end]...)
					softmaxRowBwdAVX2(&p[0], &dd[0], rn, end, 2.5, 0.125)
					put(p...)
					put(dd...)
				}
			}
		}
	}
	if got := h.Sum64(); got != avx2KernelBits {
		t.Errorf("AVX2 kernels' bits: hash %#x; want %#x", got, uint64(avx2KernelBits))
	}
}
