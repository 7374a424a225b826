package lm

import (
	"math"

	"github.com/klring/klring/kernels"
)

// Attention on the AVX2 tile kernel (attnTile6x16), or on AVX-512 its 6x32
// form (attnTile6x32, the same bits), per (batch, head) pair, without a GEMM
// call. Forward: K^T is packed once into panels of 16 keys, then each block
// of 6 query rows forms its scores against exactly the keys its causal mask
// lets through (rounded up to a panel of 16), takes the softmax and
// multiplies by V read in place, each row scaled by 1/sum as the tile stores
// it. Backward: the same tiles recompute the probabilities and form dP, dQ,
// and (reading P and dS in place as transposed matrices) dV and dK, each
// against the keys or queries its mask lets through, to the nearest 6. It
// needs AVX2, a head size that is a multiple of 16 (at most attnMaxHS) and
// attnFastNeed and attnBwdNeed floats of scratch; otherwise attention runs
// on Pool.Sgemm (layers.go).

// attnFastOK reports whether the tile path runs for head size HS, T tokens and
// per floats of scratch per slot.
func attnFastOK(HS, T, per int) bool {
	return haveAVX2 && HS%16 == 0 && HS <= attnMaxHS && max(attnFastNeed(HS, T), attnBwdNeed(HS, T)) <= per
}

// attnMaxHS is the largest head size the tile path takes (attnScratch is
// sized for it).
const attnMaxHS = 64

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
			attnTile6x32(HS, &a[0], lda, 1, &kt[p*16*HS], 16, 16*HS*4, &c[p*16], ldc, &alpha, 0, 0)
		}
	}
	for ; p < npan; p++ {
		attnTile6x16(HS, &a[0], lda, 1, &kt[p*16*HS], 16, &c[p*16], ldc, &alpha, 0, 0)
	}
}

// rowTiles sets the first HS columns of 6 rows of c (ldc apart) to
// alpha[r*as] * (a @ b)[r] + beta*c: a's 6 rows lda apart with k steps ak
// apart (ak = 1: row-major; lda = 1 and ak its leading dimension: a
// transposed matrix), against the first k rows of b (ldb apart) read in
// place, 32 columns per AVX-512 tile where the CPU has it.
func rowTiles(k int, a []float32, lda, ak int, b []float32, ldb int, c []float32, ldc, HS int, alpha *float32, as int, beta float32) {
	hp := 0
	if haveAVX512 {
		for ; hp+32 <= HS; hp += 32 {
			attnTile6x32(k, &a[0], lda, ak, &b[hp], ldb, 64, &c[hp], ldc, alpha, as, beta)
		}
	}
	for ; hp < HS; hp += 16 {
		attnTile6x16(k, &a[0], lda, ak, &b[hp], ldb, &c[hp], ldc, alpha, as, beta)
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
			copyRows(qpad, q[i0*C3:], rows, HS, C3)
			a, lda = qpad, HS
		}
		panelTiles(HS, a, lda, kt, S, T16, npan, scale)
		for r := 0; r < rows; r++ {
			t := i0 + r
			mx, sum := softmaxRowFwd(S[r*T16:r*T16+npan*16], t+1)
			inv[r] = 1 / sum
			sums[t] = sum
			mxs[t] = mx
		}
		o, ldo := out[(b*T+i0)*C+h*HS:], C
		if rows < 6 {
			o, ldo = opad, HS
		}
		// out = P @ V / sum, each row scaled as the tiles store it.
		rowTiles(kmax, S, T16, 1, v, C3, o, ldo, HS, &inv[0], 1, 0)
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
// panels and K's rows, probabilities and their gradient for a block of
// rows (rows attnPW(T) apart), the block's rows of queries and output
// gradients, and a padded tile of results.
func attnBwdNeed(HS, T int) int {
	T16 := (T + 15) &^ 15
	return 3*T16*HS + 2*attnBlock*attnPW(T) + 2*attnBlock*HS + 6*HS
}

// copyRows copies n rows of HS floats, ld apart in src, to dst (HS apart).
func copyRows(dst, src []float32, n, HS, ld int) {
	for r := 0; r < n; r++ {
		copy(dst[r*HS:(r+1)*HS], src[r*ld:r*ld+HS])
	}
}

// attnPW is the row stride of the backward's probabilities and their
// gradient: T rounded up to 16, plus 16, so that a tile of 6 keys reading
// columns past T stays inside its row.
func attnPW(T int) int { return (T+15)&^15 + 16 }

// accTiles adds a @ b to the first HS columns of 6 rows of c (ldc apart):
// a's 6 rows lda apart with k steps ak apart (ak = 1: row-major; lda = 1 and
// ak its leading dimension: a transposed matrix), b's first k rows (ldb
// apart) read in place. Only the first rows rows of c are written: with
// fewer than 6 the tile goes through pad (6*HS floats) and is added from
// there, which rounds each sum as the tile would (c + a@b, once).
func accTiles(k int, a []float32, lda, ak int, b []float32, ldb int, c []float32, ldc, HS, rows int, pad []float32) {
	one := float32(1)
	if rows == 6 {
		rowTiles(k, a, lda, ak, b, ldb, c, ldc, HS, &one, 0, 1)
		return
	}
	rowTiles(k, a, lda, ak, b, ldb, pad, HS, HS, &one, 0, 0)
	for r := 0; r < rows; r++ {
		addRow(c[r*ldc:r*ldc+HS], pad[r*HS:(r+1)*HS])
	}
}

// attentionBackwardPair is attentionBackward for one (b, h) pair, all on the
// tile kernels. Per block of attnBlock query rows, 6 rows at a time: the
// probabilities P and dP = dout @ V^T against the keys of their mask, then
// dS = P * (dP - rowsum(P*dP)) * scale and dQ += dS @ K against the same
// keys. Then per tile of 6 keys, dV += P^T @ dout and dK += dS^T @ Q over
// the block's rows at or after the tile's first key (P and dS read in place
// as transposed matrices): every product skips what the causal mask zeroes,
// to the nearest 6 rows.
func attentionBackwardPair(dqkv, sc, qkv, dout, lse []float32, b, h, bh, T, C, HS int, scale float32) {
	C3 := 3 * C
	base := b * T * C3
	q, dq := qkv[base+h*HS:], dqkv[base+h*HS:]
	k, dk := qkv[base+C+h*HS:], dqkv[base+C+h*HS:]
	v, dv := qkv[base+2*C+h*HS:], dqkv[base+2*C+h*HS:]
	do := dout[b*T*C+h*HS:]
	T16 := (T + 15) &^ 15
	PW := attnPW(T)
	off := 0
	next := func(n int) []float32 { s := sc[off : off+n : off+n]; off += n; return s }
	kt, vt, kr := next(T16*HS), next(T16*HS), next(T16*HS)
	P, dP := next(attnBlock*PW), next(attnBlock*PW)
	qb, dob := next(attnBlock*HS), next(attnBlock*HS)
	cpad := next(6 * HS)
	packKT(kt, k, T, HS, C3)
	packKT(vt, v, T, HS, C3)
	// K's rows side by side for dQ, and each block's rows of Q and dout
	// for the scores, dK and dV: in place, their rows are 3C or C floats
	// apart and a tile's k steps fall on a few L1 sets, so the 8 key tiles
	// of a block each read them again from L2. A block's rows past T, up to
	// a whole tile of 6, are zeros.
	copyRows(kr, k, T, HS, C3)
	l := lse[bh*T : (bh+1)*T]
	for r0 := 0; r0 < T; r0 += attnBlock {
		r1 := min(r0+attnBlock, T)
		copyRows(qb, q[r0*C3:], r1-r0, HS, C3)
		copyRows(dob, do[r0*C:], r1-r0, HS, C)
		pad := ((r1-r0+5)/6*6 - (r1 - r0)) * HS
		clear(qb[(r1-r0)*HS:][:pad])
		clear(dob[(r1-r0)*HS:][:pad])
		for i0 := r0; i0 < r1; i0 += 6 {
			rows := min(6, r1-i0)
			kmax := i0 + rows
			npan := (kmax + 15) / 16
			// The rows' end: past the last panel and the block's last row,
			// rounded up to 16 (within the rows of P and dP: PW > T16).
			end := (max(npan*16, r1) + 15) &^ 15
			pr, dpr := P[(i0-r0)*PW:], dP[(i0-r0)*PW:]
			panelTiles(HS, qb[(i0-r0)*HS:], HS, kt, pr, PW, npan, scale)
			panelTiles(HS, dob[(i0-r0)*HS:], HS, vt, dpr, PW, npan, 1)
			for r := 0; r < rows; r++ {
				t := i0 + r
				softmaxRowBwd(pr[r*PW:r*PW+end], dpr[r*PW:r*PW+end], t+1, l[t], scale)
			}
			// dQ += dS @ K over the keys up to the group's last row.
			accTiles(kmax, dpr, PW, 1, kr, HS, dq[i0*C3:], C3, HS, rows, cpad)
		}
		// dV += P^T @ dout and dK += dS^T @ Q, 6 keys at a time, over the
		// block's rows from the tile's first key on (the earlier rows are
		// masked for all six).
		for j0 := 0; j0 < r1; j0 += 6 {
			i := max(r0, j0)
			keys := min(6, T-j0)
			accTiles(r1-i, P[(i-r0)*PW+j0:], 1, PW, dob[(i-r0)*HS:], HS, dv[j0*C3:], C3, HS, keys, cpad)
			accTiles(r1-i, dP[(i-r0)*PW+j0:], 1, PW, qb[(i-r0)*HS:], HS, dk[j0*C3:], C3, HS, keys, cpad)
		}
	}
}

// softmaxRowFwd is one row of attention's forward softmax on the scores of
// row (its length a multiple of 16): mx = the largest of row[:n], row[i] =
// exp(row[i] - mx) for i < n and 0 after, and sum = their sum as expSub
// gives it over row[:n8], n8 = n rounded up to 8, with row[n:n8] set to
// -Inf first (exp(-Inf) is clamped to at most 2^-126, nothing against the
// row's largest term, exp(0) = 1). With AVX2 or AVX-512 it is one call, with
// the bits of the separate calls.
func softmaxRowFwd(row []float32, n int) (mx, sum float32) {
	if haveAVX512 {
		return softmaxRowFwdAVX512(&row[0], n, len(row))
	}
	if haveAVX2 {
		return softmaxRowFwdAVX2(&row[0], n, len(row))
	}
	return softmaxRowFwdCalls(row, n)
}

// softmaxRowFwdCalls is softmaxRowFwd by the separate row kernels.
func softmaxRowFwdCalls(row []float32, n int) (mx, sum float32) {
	mx = maxSlice(row[:n])
	n8 := min((n+7)&^7, len(row))
	for j := n; j < n8; j++ {
		row[j] = float32(math.Inf(-1))
	}
	sum = expSub(row[:n8], mx)
	clear(row[n:])
	return mx, sum
}

// softmaxRowBwd is one row of attention's backward softmax: on the scores p
// and dP = d of the row (both of a length that is a multiple of 16), p[i] =
// exp(p[i] - lse) for i < n, then d[i] = p[i] * (d[i] - dot) * scale with
// dot = sum p[i]*d[i] over i < n (dotSlice), p and d 0 from n on. With AVX2
// or AVX-512 it is one call, with the bits of the separate calls.
func softmaxRowBwd(p, d []float32, n int, lse, scale float32) {
	d = d[:len(p)]
	if haveAVX512 {
		softmaxRowBwdAVX512(&p[0], &d[0], n, len(p), lse, scale)
		return
	}
	if haveAVX2 {
		softmaxRowBwdAVX2(&p[0], &d[0], n, len(p), lse, scale)
		return
	}
	softmaxRowBwdCalls(p, d, n, lse, scale)
}

// softmaxRowBwdCalls is softmaxRowBwd by the separate row kernels.
func softmaxRowBwdCalls(p, d []float32, n int, lse, scale float32) {
	n8 := min((n+7)&^7, len(p))
	for j := n; j < n8; j++ {
		p[j] = float32(math.Inf(-1))
	}
	expSub(p[:n8], lse)
	clear(p[n:])
	softmaxGrad(d[:n], p, dotSlice(p[:n], d), scale)
	clear(d[n:])
}
