package lm

import (
	"math"

	"github.com/klring/klring/kernels"
)

// Attention on the AVX2 tile kernel (attnTile6x16), or on AVX-512 its 6x32
// form (attnTile6x32, the same bits), per (batch, head) pair:
// K^T is packed once into panels of 16 keys, then each block of 6 query rows
// forms its scores against exactly the keys its causal mask lets through
// (rounded up to a panel of 16), takes the softmax and multiplies by V read in
// place, without a GEMM call per block. It needs AVX2, a head size that is a
// multiple of 16 (at most 64) and attnFastNeed floats of scratch; otherwise
// attention runs on Pool.Sgemm (layers.go).

// attnFastOK reports whether the tile path runs for head size HS, T tokens and
// per floats of scratch per slot.
func attnFastOK(HS, T, per int) bool {
	return haveAVX2 && HS%16 == 0 && HS <= 64 && max(attnFastNeed(HS, T), attnBwdNeed(HS, T)) <= per
}

// attnFastNeed is the scratch of the tile path: K^T panels, 6 rows of scores,
// 6 padded rows of queries and outputs, and each row's max and sum.
func attnFastNeed(HS, T int) int {
	T16 := (T + 15) &^ 15
	return T16*HS + 6*T16 + 12*HS + 2*T
}

// packKT packs the first T rows of k (ld apart, HS values each) into panels
// of 16 keys: kt[p*16*HS + d*16 + j] = k[(16p+j)*ld + d], zero past T.
func packKT(kt, k []float32, T, HS, ld int) {
	var rows [16][]float32
	for p := 0; p*16 < T; p++ {
		n := min(16, T-p*16)
		if n == 16 && haveAVX2 && HS%8 == 0 {
			pan := kt[p*16*HS : (p+1)*16*HS]
			attnTranspose8(&pan[0], 16, &k[p*16*ld], ld, HS/8)
			attnTranspose8(&pan[8], 16, &k[(p*16+8)*ld], ld, HS/8)
			continue
		}
		for j := 0; j < n; j++ {
			rows[j] = k[(p*16+j)*ld : (p*16+j)*ld+HS]
		}
		pan := kt[p*16*HS : (p+1)*16*HS]
		for d := 0; d < HS; d++ {
			dst := (*[16]float32)(pan[d*16:])
			for j := 0; j < n; j++ {
				dst[j] = rows[j][d]
			}
			for j := n; j < 16; j++ {
				dst[j] = 0
			}
		}
	}
}

// panelTiles sets columns [0, 16*npan) of 6 rows of c (ldc apart) to
// alpha * a @ panels: a's 6 rows (lda apart, HS values each) against npan
// panels of 16 packed keys (packKT), two panels per AVX-512 tile where the
// CPU has it (the same bits as one AVX2 tile per panel).
func panelTiles(HS int, a []float32, lda int, kt, c []float32, ldc, npan int, alpha float32) {
	p := 0
	if haveAVX512 {
		for ; p+1 < npan; p += 2 {
			attnTile6x32(HS, &a[0], lda, &kt[p*16*HS], 16, 16*HS*4, &c[p*16], ldc, alpha, 0)
		}
	}
	for ; p < npan; p++ {
		attnTile6x16(HS, &a[0], lda, &kt[p*16*HS], 16, &c[p*16], ldc, alpha, 0)
	}
}

// valueTiles sets the first HS columns of 6 rows of c (ldc apart) to a @ v:
// a's 6 rows (lda apart, k values each) against the first k rows of v (ldv
// apart) read in place, 32 columns per AVX-512 tile where the CPU has it.
func valueTiles(k int, a []float32, lda int, v []float32, ldv int, c []float32, ldc, HS int) {
	hp := 0
	if haveAVX512 {
		for ; hp+32 <= HS; hp += 32 {
			attnTile6x32(k, &a[0], lda, &v[hp], ldv, 64, &c[hp], ldc, 1, 0)
		}
	}
	for ; hp < HS; hp += 16 {
		attnTile6x16(k, &a[0], lda, &v[hp], ldv, &c[hp], ldc, 1, 0)
	}
}

// attentionForwardPair is attentionForward for one (b, h) pair on the tile
// kernel; sc is the slot's scratch.
func attentionForwardPair(out, lse, sc, qkv []float32, b, h, bh, T, C, HS int, scale float32) {
	C3 := 3 * C
	base := b * T * C3
	q, k, v := qkv[base+h*HS:], qkv[base+C+h*HS:], qkv[base+2*C+h*HS:]
	T16 := (T + 15) &^ 15
	kt := sc[:T16*HS]
	S := sc[T16*HS : T16*HS+6*T16]
	qpad := sc[T16*HS+6*T16 : T16*HS+6*T16+6*HS]
	opad := sc[T16*HS+6*T16+6*HS : T16*HS+6*T16+12*HS]
	sums := sc[T16*HS+6*T16+12*HS : T16*HS+6*T16+12*HS+T]
	mxs := sc[T16*HS+6*T16+12*HS+T : T16*HS+6*T16+12*HS+2*T]
	packKT(kt, k, T, HS, C3)
	var inv [6]float32
	for i0 := 0; i0 < T; i0 += 6 {
		rows := min(6, T-i0)
		kmax := i0 + rows
		npan := (kmax + 15) / 16
		a, lda := q[i0*C3:], C3
		if rows < 6 {
			clear(qpad)
			for r := 0; r < rows; r++ {
				copy(qpad[r*HS:(r+1)*HS], q[(i0+r)*C3:][:HS])
			}
			a, lda = qpad, HS
		}
		panelTiles(HS, a, lda, kt, S, T16, npan, scale)
		for r := 0; r < rows; r++ {
			t := i0 + r
			row := S[r*T16 : r*T16+npan*16]
			mx := maxSlice(row[:t+1])
			// The masked scores up to a multiple of 8 go through the
			// vector exp as -Inf (which gives at most 2^-126, nothing
			// against the row's maximum term, exp(0) = 1), then are
			// cleared.
			n8 := (t + 8) &^ 7
			for j := t + 1; j < n8; j++ {
				row[j] = float32(math.Inf(-1))
			}
			sum := expSub(row[:n8], mx)
			clear(row[t+1:])
			inv[r] = 1 / sum
			sums[t] = sum
			mxs[t] = mx
		}
		o, ldo := out[(b*T+i0)*C+h*HS:], C
		if rows < 6 {
			o, ldo = opad, HS
		}
		valueTiles(kmax, S, T16, v, C3, o, ldo, HS)
		for r := 0; r < rows; r++ {
			kernels.ScaleShift(o[r*ldo:r*ldo+HS], inv[r], 0)
		}
		if rows < 6 {
			for r := 0; r < rows; r++ {
				copy(out[(b*T+i0+r)*C+h*HS:][:HS], opad[r*HS:(r+1)*HS])
			}
		}
	}
	// lse = max + log(sum), the logs of the whole pair in one call.
	l := lse[bh*T : (bh+1)*T]
	kernels.Log(l, sums)
	for t, mx := range mxs {
		l[t] += mx
	}
}

// attnBwdNeed is the scratch of the tile path's backward: K^T and V^T
// panels, probabilities and their gradient for a block of rows, padded rows
// of queries and output gradients.
func attnBwdNeed(HS, T int) int {
	T16 := (T + 15) &^ 15
	return 2*T16*HS + 2*attnBlock*T16 + 12*HS
}

// attentionBackwardPair is attentionBackward for one (b, h) pair: per block
// of attnBlock query rows, the probabilities and dP = dout @ V^T on the tile
// kernel, 6 rows at a time against the keys of their mask; then dV, dQ and dK
// on Pool.Sgemm (inline: the caller is one of the pool's goroutines).
func attentionBackwardPair(p *kernels.Pool, dqkv, sc, qkv, dout, lse []float32, b, h, bh, T, C, HS int, scale float32) {
	C3 := 3 * C
	base := b * T * C3
	q, dq := qkv[base+h*HS:], dqkv[base+h*HS:]
	k, dk := qkv[base+C+h*HS:], dqkv[base+C+h*HS:]
	v, dv := qkv[base+2*C+h*HS:], dqkv[base+2*C+h*HS:]
	T16 := (T + 15) &^ 15
	off := 0
	next := func(n int) []float32 { s := sc[off : off+n : off+n]; off += n; return s }
	kt, vt := next(T16*HS), next(T16*HS)
	P, dP := next(attnBlock*T16), next(attnBlock*T16)
	qpad, dopad := next(6*HS), next(6*HS)
	packKT(kt, k, T, HS, C3)
	packKT(vt, v, T, HS, C3)
	l := lse[bh*T : (bh+1)*T]
	for r0 := 0; r0 < T; r0 += attnBlock {
		r1 := min(r0+attnBlock, T)
		rb := r1 - r0
		do := dout[(b*T+r0)*C+h*HS:]
		for i0 := r0; i0 < r1; i0 += 6 {
			rows := min(6, r1-i0)
			kmax := i0 + rows
			npan := (kmax + 15) / 16
			end := max(npan*16, r1)
			aq, ldq := q[i0*C3:], C3
			ado, lddo := dout[(b*T+i0)*C+h*HS:], C
			if rows < 6 {
				clear(qpad)
				clear(dopad)
				for r := 0; r < rows; r++ {
					copy(qpad[r*HS:(r+1)*HS], q[(i0+r)*C3:][:HS])
					copy(dopad[r*HS:(r+1)*HS], dout[(b*T+i0+r)*C+h*HS:][:HS])
				}
				aq, ldq, ado, lddo = qpad, HS, dopad, HS
			}
			pr, dpr := P[(i0-r0)*T16:], dP[(i0-r0)*T16:]
			panelTiles(HS, aq, ldq, kt, pr, T16, npan, scale)
			panelTiles(HS, ado, lddo, vt, dpr, T16, npan, 1)
			for r := 0; r < rows; r++ {
				t := i0 + r
				prow, dprow := pr[r*T16:r*T16+end], dpr[r*T16:r*T16+end]
				n8 := min((t+8)&^7, end)
				for j := t + 1; j < n8; j++ {
					prow[j] = float32(math.Inf(-1))
				}
				expSub(prow[:n8], l[t])
				clear(prow[t+1:])
				softmaxGrad(dprow[:t+1], prow, dotSlice(prow[:t+1], dprow), scale)
				clear(dprow[t+1:])
			}
		}
		// dV += P^T @ dout; dQ += dS @ K; dK += dS^T @ Q.
		p.Sgemm(true, false, r1, HS, rb, 1, P, T16, do, C, 1, dv, C3)
		p.Sgemm(false, false, rb, HS, r1, 1, dP, T16, k, C3, 1, dq[r0*C3:], C3)
		p.Sgemm(true, false, r1, HS, rb, 1, dP, T16, q[r0*C3:], C3, 1, dk, C3)
	}
}
