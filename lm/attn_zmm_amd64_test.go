//go:build amd64 && !purego

package lm

import (
	"math"
	"testing"
)

// TestAttnTilesSameBits: the tile kernels compute alpha[r] * (a @ b)[r] +
// beta*c (checked in float64), for a row-major a and for the same a stored
// transposed (read with lda 1 and its leading dimension as k step: the same
// bits), one alpha or one per row, and beta 0 (C not read: NaN there must
// not leak) or not; and on AVX-512 the 6x32 tile gives, bit for bit, what two
// AVX2 tiles give, for both ways attention lays out B (two panels of packed
// keys, b2 = one panel; one row of V, b2 = 16 values) and k not a multiple
// of 4.
func TestAttnTilesSameBits(t *testing.T) {
	if !haveAVX2 {
		t.Skip("no AVX2")
	}
	r := NewRNG(7)
	for _, k := range []int{1, 3, 32, 37, 130} {
		for _, layout := range []struct {
			name     string
			ldb, b2  int // in floats
			needRows int
		}{{"panels", 16, 16 * k, 2 * k}, {"rows", 96, 16, k}} {
			lda := k + 5
			a := randVec(r, 6*lda, 1)
			at := make([]float32, k*8) // a transposed, rows 8 apart
			for i := 0; i < 6; i++ {
				for p := 0; p < k; p++ {
					at[p*8+i] = a[i*lda+p]
				}
			}
			b := randVec(r, layout.needRows*layout.ldb+64, 1)
			for _, as := range []int{0, 1} {
				alpha := []float32{0.5, -1.25, 2, 0.75, -0.5, 3}
				for _, beta := range []float32{0, 0.75} {
					const ldc = 40
					c0 := randVec(r, 6*ldc, 1)
					if beta == 0 {
						for i := range c0 {
							c0[i] = float32(math.NaN())
						}
					}
					run := func(tile func(c []float32)) []float32 {
						c := append([]float32(nil), c0...)
						tile(c)
						return c
					}
					want := run(func(c []float32) {
						attnTile6x16(k, &a[0], lda, 1, &b[0], layout.ldb, &c[0], ldc, &alpha[0], as, beta)
						attnTile6x16(k, &a[0], lda, 1, &b[layout.b2], layout.ldb, &c[16], ldc, &alpha[0], as, beta)
					})
					for i := 0; i < 6; i++ {
						for j := 0; j < 32; j++ {
							bj := b[j:]
							if j >= 16 {
								bj = b[layout.b2+j-16:]
							}
							s := 0.0
							for p := 0; p < k; p++ {
								s += float64(a[i*lda+p]) * float64(bj[p*layout.ldb])
							}
							s *= float64(alpha[i*as])
							if beta != 0 {
								s += float64(beta) * float64(c0[i*ldc+j])
							}
							if got := want[i*ldc+j]; math.Abs(float64(got)-s) > 1e-5*(float64(k)+math.Abs(s)) {
								t.Fatalf("k %d, %s, as %d, beta %g: c[%d][%d] = %g, want %g", k, layout.name, as, beta, i, j, got, s)
							}
						}
					}
					gots := map[string][]float32{
						"AVX2": want, // for the check outside the tile only
						"AVX2, a transposed": run(func(c []float32) {
							attnTile6x16(k, &at[0], 1, 8, &b[0], layout.ldb, &c[0], ldc, &alpha[0], as, beta)
							attnTile6x16(k, &at[0], 1, 8, &b[layout.b2], layout.ldb, &c[16], ldc, &alpha[0], as, beta)
						}),
					}
					if haveAVX512 {
						gots["AVX-512"] = run(func(c []float32) {
							attnTile6x32(k, &a[0], lda, 1, &b[0], layout.ldb, 4*layout.b2, &c[0], ldc, &alpha[0], as, beta)
						})
						gots["AVX-512, a transposed"] = run(func(c []float32) {
							attnTile6x32(k, &at[0], 1, 8, &b[0], layout.ldb, 4*layout.b2, &c[0], ldc, &alpha[0], as, beta)
						})
					}
					for name, got := range gots {
						for i := range got {
							if col := i % ldc; col >= 32 && math.Float32bits(got[i]) != math.Float32bits(c0[i]) {
								t.Fatalf("k %d, %s, as %d, beta %g, %s: c[%d] written outside the tile", k, layout.name, as, beta, name, i)
							}
							if math.Float32bits(got[i]) != math.Float32bits(want[i]) {
								t.Fatalf("k %d, %s, as %d, beta %g, %s: c[%d] = %g, want %g (AVX2, a row-major)", k, layout.name, as, beta, name, i, got[i], want[i])
							}
						}
					}
				}
			}
		}
	}
}

// TestSoftmaxRowsSameBits checks that attention's softmax rows in one
// call (AVX2 and AVX-512) give the bits of the separate row kernels: every
// row length n up to the end of rows of 16 to 272, scores of a few scales,
// ties and rows of one repeated value.
func TestSoftmaxRowsSameBits(t *testing.T) {
	type fused struct {
		name string
		fwd  func(x *float32, n, end int) (mx, sum float32)
		bwd  func(p, d *float32, n, end int, lse, scale float32)
	}
	var fs []fused
	if haveAVX2 {
		fs = append(fs, fused{"AVX2", softmaxRowFwdAVX2, softmaxRowBwdAVX2})
	}
	if haveAVX512 {
		fs = append(fs, fused{"AVX-512", softmaxRowFwdAVX512, softmaxRowBwdAVX512})
	}
	if len(fs) == 0 {
		t.Skip("no AVX2")
	}
	r := NewRNG(5)
	same := func(a, b []float32) int {
		for i := range a {
			if math.Float32bits(a[i]) != math.Float32bits(b[i]) {
				return i
			}
		}
		return -1
	}
	for _, f := range fs {
		for end := 16; end <= 272; end += 16 {
			for _, amp := range []float32{0.1, 3, 40} {
				for n := 1; n <= end; n++ {
					x, dp := randVec(r, end, float64(amp)), randVec(r, end, 1)
					if n%5 == 0 {
						for i := range x {
							x[i] = float32(int(x[i])) // ties
						}
					}
					if n%11 == 0 {
						for i := range x {
							x[i] = amp
						}
					}
					a, b := append([]float32(nil), x...), append([]float32(nil), x...)
					mx1, s1 := f.fwd(&a[0], n, end)
					mx2, s2 := softmaxRowFwdCalls(b, n)
					if math.Float32bits(mx1) != math.Float32bits(mx2) || math.Float32bits(s1) != math.Float32bits(s2) {
						t.Fatalf("%s fwd end %d n %d amp %g: max %g sum %g; separate kernels %g %g", f.name, end, n, amp, mx1, s1, mx2, s2)
					}
					if i := same(a, b); i >= 0 {
						t.Fatalf("%s fwd end %d n %d amp %g: row[%d] = %g; separate kernels %g", f.name, end, n, amp, i, a[i], b[i])
					}
					lse := mx2 + float32(math.Log(float64(s2)))
					a, b = append([]float32(nil), x...), append([]float32(nil), x...)
					da, db := append([]float32(nil), dp...), append([]float32(nil), dp...)
					f.bwd(&a[0], &da[0], n, end, lse, 0.17)
					softmaxRowBwdCalls(b, db, n, lse, 0.17)
					if i := same(a, b); i >= 0 {
						t.Fatalf("%s bwd end %d n %d amp %g: p[%d] = %g; separate kernels %g", f.name, end, n, amp, i, a[i], b[i])
					}
					if i := same(da, db); i >= 0 {
						t.Fatalf("%s bwd end %d n %d amp %g: d[%d] = %g; separate kernels %g", f.name, end, n, amp, i, da[i], db[i])
					}
				}
			}
		}
	}
}
