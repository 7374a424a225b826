//go:build amd64 && !purego

package lm

import (
	"hash/fnv"
	"testing"
	"unsafe"

	"github.com/klring/klring/kernels"
)

// attnAVX2Bits is the FNV-64a hash of TestAttentionAVX2Bits's outputs as
// the tile path of dedd6e6 computed them on AVX2; the layouts since (K, Q
// and dout copied to contiguous rows, a block's tail rows padded with
// zeros in place of a separate pad) feed the tiles the same values in the
// same order.
const attnAVX2Bits = 0x6fd95b37df3c6d8e

// TestAttentionAVX2Bits pins the bits of attention's forward and backward
// on the AVX2 tile path, for lengths with and without a partial last tile.
func TestAttentionAVX2Bits(t *testing.T) {
	if !haveAVX2 || haveAVX512 {
		t.Skip("the AVX2 tile path runs only on AVX2 without AVX-512")
	}
	h := fnv.New64a()
	put := func(s []float32) { h.Write(unsafe.Slice((*byte)(unsafe.Pointer(&s[0])), len(s)*4)) }
	for _, c := range []struct{ B, T, C, NH int }{{2, 128, 128, 4}, {2, 256, 256, 8}, {1, 100, 64, 2}, {1, 7, 32, 2}, {1, 13, 32, 1}} {
		r := newRunner(kernels.NewPool(1))
		rng := NewRNG(3)
		qkv := randVec(rng, c.B*c.T*3*c.C, 1)
		out, lse := make([]float32, c.B*c.T*c.C), make([]float32, c.B*c.NH*c.T)
		scratch := make([]float32, r.pool.Threads()*attnScratch(c.T))
		attentionForward(r, out, lse, scratch, qkv, c.B, c.T, c.C, c.NH)
		put(out)
		put(lse)
		dqkv := make([]float32, len(qkv))
		dout := randVec(rng, len(out), 1)
		attentionBackward(r, dqkv, scratch, dout, qkv, lse, c.B, c.T, c.C, c.NH)
		put(dqkv)
	}
	if got := h.Sum64(); got != attnAVX2Bits {
		t.Errorf("attention's bits: hash %#x; want %#x", got, uint64(attnAVX2Bits))
	}
}
