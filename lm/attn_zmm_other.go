//go:build !amd64 || purego

package lm

func attnTile6x32(k int, a *float32, lda, ak int, b *float32, ldb int, b2 int, c *float32, ldc int, alpha *float32, as int, beta float32) {
	panic("lm: no AVX-512")
}
