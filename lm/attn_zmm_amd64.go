//go:build amd64 && !purego

package lm

// attnTile6x32 is one 6x32 tile of c = alpha*a@b + beta*c: a read in place
// (6 rows lda apart, k steps ak apart), columns 0-15 of b at b + k*ldb and
// 16-31 at b + k*ldb + b2 bytes (attn_avx512_amd64.s); row i of the
// product scaled by alpha[i*as]. It gives the same bits as two attnTile6x16
// calls.
//
//go:noescape
func attnTile6x32(k int, a *float32, lda, ak int, b *float32, ldb int, b2 int, c *float32, ldc int, alpha *float32, as int, beta float32)
