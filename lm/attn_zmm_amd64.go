//go:build amd64 && !purego

package lm

import "golang.org/x/sys/cpu"

// haveAttnZMM selects attention's AVX-512 tile (attnTile6x32) where the CPU
// has AVX-512F. It is set once from the CPU's features and never changes.
var haveAttnZMM = haveAVX2 && cpu.X86.HasAVX512F

// attnTile6x32 is one 6x32 tile of c = alpha*a@b + beta*c: a read in place
// (6 rows lda apart, k steps adjacent), columns 0-15 of b at b + k*ldb and
// 16-31 at b + k*ldb + b2 bytes (attn_avx512_amd64.s). It gives the same
// bits as two attnTile6x16 calls.
//
//go:noescape
func attnTile6x32(k int, a *float32, lda int, b *float32, ldb int, b2 int, c *float32, ldc int, alpha, beta float32)
