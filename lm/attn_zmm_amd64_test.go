//go:build amd64 && !purego

package lm

import (
	"math"
	"testing"
)

// TestAttnTile6x32SameBits: the AVX-512 tile gives, bit for bit, what two
// AVX2 tiles give, for both ways attention lays out B (two panels of packed
// keys, b2 = one panel; one row of V, b2 = 16 values), k not a multiple of
// 4, alpha != 1, and beta 0 (C not read: NaN there must not leak) or not.
func TestAttnTile6x32SameBits(t *testing.T) {
	if !haveAVX512 {
		t.Skip("no AVX-512F")
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
			b := randVec(r, layout.needRows*layout.ldb+64, 1)
			for _, beta := range []float32{0, 0.75} {
				ldc := 40
				want := randVec(r, 6*ldc, 1)
				if beta == 0 {
					for i := range want {
						want[i] = float32(math.NaN())
					}
				}
				got := append([]float32(nil), want...)
				attnTile6x16(k, &a[0], lda, &b[0], layout.ldb, &want[0], ldc, 0.5, beta)
				attnTile6x16(k, &a[0], lda, &b[layout.b2], layout.ldb, &want[16], ldc, 0.5, beta)
				attnTile6x32(k, &a[0], lda, &b[0], layout.ldb, 4*layout.b2, &got[0], ldc, 0.5, beta)
				for i := range got {
					if col := i % ldc; col >= 32 {
						continue
					}
					if math.Float32bits(got[i]) != math.Float32bits(want[i]) {
						t.Fatalf("k %d, %s, beta %g: c[%d] = %g, want %g (two AVX2 tiles)", k, layout.name, beta, i, got[i], want[i])
					}
				}
			}
		}
	}
}
