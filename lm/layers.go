package lm

import (
	"fmt"
	"math"
)

// The layers are free functions in llm.c's argument order: outputs first, then
// caches, then inputs, then dimensions. Backward functions ADD into every
// gradient they write (dinp, dweight, dbias); Model.ZeroGrad and the model's
// own zeroing of its scratch gradients clear them. Shape comments use the
// legend of doc.go; N is a number of rows (B*T).

// rowGrain is the smallest number of rows a goroutine of a row-wise kernel takes.
const rowGrain = 16

func need(name string, s []float32, n int) {
	if len(s) < n {
		panic(fmt.Sprintf("lm: %s has %d elements, want %d", name, len(s), n))
	}
}

// encoderForward: out[b,t,:] = wte[tokens[b,t],:] + wpe[t,:].
//
//	out    [B, T, C]  written
//	tokens [B, T]     each in [0, V)
//	wte    [V, C]
//	wpe    [maxT, C]  T <= maxT
func encoderForward(out []float32, tokens []int32, wte, wpe []float32, B, T, C int) {
	need("encoder out", out, B*T*C)
	for b := 0; b < B; b++ {
		for t := 0; t < T; t++ {
			o := out[(b*T+t)*C : (b*T+t+1)*C]
			w := wte[int(tokens[b*T+t])*C:][:C]
			p := wpe[t*C : (t+1)*C]
			for i := range o {
				o[i] = w[i] + p[i]
			}
		}
	}
}

// encoderBackward adds dout into the rows of dwte and dwpe the forward read.
//
//	dwte   [V, C]     accumulated
//	dwpe   [maxT, C]  accumulated
//	dout   [B, T, C]
//	tokens [B, T]
func encoderBackward(dwte, dwpe, dout []float32, tokens []int32, B, T, C int) {
	for b := 0; b < B; b++ {
		for t := 0; t < T; t++ {
			d := dout[(b*T+t)*C : (b*T+t+1)*C]
			w := dwte[int(tokens[b*T+t])*C:][:C]
			p := dwpe[t*C : (t+1)*C]
			for i, v := range d {
				w[i] += v
				p[i] += v
			}
		}
	}
}

// layernormForward normalises each row of inp to zero mean and unit variance
// (epsilon 1e-5), then scales by weight and shifts by bias.
//
//	out    [N, C]  written
//	mean   [N]     written (cache for backward)
//	rstd   [N]     written: 1/sqrt(var + eps)
//	inp    [N, C]
//	weight [C]
//	bias   [C]
func layernormForward(r *runner, out, mean, rstd, inp, weight, bias []float32, N, C int) {
	need("layernorm out", out, N*C)
	need("layernorm inp", inp, N*C)
	need("layernorm mean", mean, N)
	need("layernorm rstd", rstd, N)
	need("layernorm weight", weight, C)
	need("layernorm bias", bias, C)
	r.args.s = [8][]float32{out, mean, rstd, inp, weight, bias}
	r.args.n[0] = C
	r.run(N, rowGrain, layernormForwardRows)
}

func layernormForwardRows(a *loopArgs, lo, hi int) {
	out, mean, rstd, inp, weight, bias := a.s[0], a.s[1], a.s[2], a.s[3], a.s[4], a.s[5]
	C := a.n[0]
	for i := lo; i < hi; i++ {
		x := inp[i*C : (i+1)*C]
		mean[i], rstd[i] = lnRow(out[i*C:(i+1)*C], x, weight, bias, sumRow(x))
	}
}

// layernormBackward adds the gradients of layernormForward.
//
//	dinp    [N, C]  accumulated
//	dweight [C]     accumulated
//	dbias   [C]     accumulated
//	dout    [N, C]
//	inp     [N, C]
//	weight  [C]
//	mean    [N]
//	rstd    [N]
func layernormBackward(r *runner, dinp, dweight, dbias, dout, inp, weight, mean, rstd []float32, N, C int) {
	need("layernorm dinp", dinp, N*C)
	need("layernorm dout", dout, N*C)
	need("layernorm inp", inp, N*C)
	need("layernorm dweight", dweight, C)
	need("layernorm dbias", dbias, C)
	r.args.s = [8][]float32{dinp, dout, inp, weight, mean, rstd}
	r.args.n[0] = C
	r.run(N, rowGrain, layernormBackwardRows)
	lnParamGrads(r, dweight, dbias, dout, inp, mean, rstd, N, C)
}

func layernormBackwardRows(a *loopArgs, lo, hi int) {
	dinp, dout, inp, weight, mean, rstd := a.s[0], a.s[1], a.s[2], a.s[3], a.s[4], a.s[5]
	C := a.n[0]
	for i := lo; i < hi; i++ {
		lnBackwardRow(dinp[i*C:(i+1)*C], dout[i*C:(i+1)*C], inp[i*C:(i+1)*C], weight, mean[i], rstd[i])
	}
}

// matmulForward computes out = inp @ weight^T + bias.
//
//	out    [N, OC]  written
//	inp    [N, C]
//	weight [OC, C]
//	bias   [OC], or nil for none
func matmulForward(r *runner, out, inp, weight, bias []float32, N, C, OC int) {
	need("matmul out", out, N*OC)
	beta := float32(0)
	if bias != nil {
		need("matmul bias", bias, OC)
		for i := 0; i < N; i++ {
			copy(out[i*OC:(i+1)*OC], bias[:OC])
		}
		beta = 1
	}
	r.pool.Sgemm(false, true, N, OC, C, 1, inp, C, weight, C, beta, out, OC)
}

// matmulBackward adds the gradients of matmulForward.
//
//	dinp    [N, C]   accumulated: += dout @ weight
//	dweight [OC, C]  accumulated: += dout^T @ inp
//	dbias   [OC]     accumulated: += column sums of dout; nil for none
//	dout    [N, OC]
//	inp     [N, C]
//	weight  [OC, C]
func matmulBackward(r *runner, dinp, dweight, dbias, dout, inp, weight []float32, N, C, OC int) {
	r.pool.Sgemm(false, false, N, C, OC, 1, dout, OC, weight, C, 1, dinp, C)
	r.pool.Sgemm(true, false, OC, C, N, 1, dout, OC, inp, C, 1, dweight, C)
	if dbias != nil {
		biasGrad(r, dbias, dout, N, OC)
	}
}

const (
	geluScale = 0.7978845608028654 // sqrt(2/pi)
	geluCubic = 0.044715
)

// geluForward is GELU with the tanh approximation (gelu_new):
// out = 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))).
//
//	out [N]  written
//	inp [N]
func geluForward(r *runner, out, inp []float32, N int) {
	need("gelu out", out, N)
	need("gelu inp", inp, N)
	r.args.s[0], r.args.s[1] = out, inp
	r.run(N, 4096, geluForwardRange)
}

func geluForwardRange(a *loopArgs, lo, hi int) {
	geluSlice(a.s[0][lo:hi], a.s[1][lo:hi])
}

// geluBackward adds dout * gelu'(inp) into dinp. dinp and dout must not alias.
//
//	dinp [N]  accumulated
//	inp  [N]
//	dout [N]
func geluBackward(r *runner, dinp, inp, dout []float32, N int) {
	need("gelu dinp", dinp, N)
	need("gelu inp", inp, N)
	need("gelu dout", dout, N)
	r.args.s[0], r.args.s[1], r.args.s[2] = dinp, inp, dout
	r.run(N, 4096, geluBackwardRange)
}

func geluBackwardRange(a *loopArgs, lo, hi int) {
	geluGradSlice(a.s[0][lo:hi], a.s[1][lo:hi], a.s[2][lo:hi])
}

// residualForward: out = a + b. out may alias a or b.
//
//	out [N]  written
//	a   [N]
//	b   [N]
func residualForward(r *runner, out, a, b []float32, N int) {
	need("residual out", out, N)
	need("residual a", a, N)
	need("residual b", b, N)
	r.args.s[0], r.args.s[1], r.args.s[2] = out, a, b
	r.run(N, 8192, residualRange)
}

func residualRange(a *loopArgs, lo, hi int) {
	o, x, y := a.s[0][lo:hi], a.s[1][lo:hi], a.s[2][lo:hi]
	for i, v := range x {
		o[i] = v + y[i]
	}
}

// attnBlock is the number of query rows attention handles at a time (a
// multiple of the tile kernel's 6 rows).
const attnBlock = 48

// attnScratch is the scratch one slot of attention needs: probabilities and
// their gradient for one block of rows, [2, attnBlock, T], on the Sgemm
// path; on the tile path (attn_fast.go) what its forward and backward need
// for head sizes up to attnMaxHS.
func attnScratch(T int) int {
	return max(2*attnBlock*T, attnFastNeed(attnMaxHS, T), attnBwdNeed(attnMaxHS, T))
}

// attentionForward is causal multi-head self-attention with softmax scale
// 1/sqrt(HS). The pool's goroutines claim the (b, h) pairs one at a time, each
// with its own slot of scratch. For each pair and each block of attnBlock query
// rows it forms the scores against the keys up to the block's last row with
// one GEMM, takes the softmax, and multiplies by the values with another
// (where the CPU has AVX2, the tile kernels of attn_fast.go do the same
// without GEMM calls). It keeps only the log-sum-exp of each row; backward
// recomputes the probabilities.
//
//	out     [B, T, C]        written; head h in columns h*HS..(h+1)*HS
//	lse     [B, NH, T]       written: log sum_j exp(score)
//	scratch [slots, attnScratch(T)]
//	qkv     [B, T, 3C]       q, k, v in columns 0..C, C..2C, 2C..3C
func attentionForward(r *runner, out, lse, scratch, qkv []float32, B, T, C, NH int) {
	need("attention out", out, B*T*C)
	need("attention lse", lse, B*NH*T)
	need("attention qkv", qkv, B*T*3*C)
	r.attention(attentionForwardSlot, [8][]float32{out, lse, scratch, qkv}, B, T, C, NH)
}

// attentionBackward adds the gradients of attentionForward into dqkv.
//
//	dqkv    [B, T, 3C]  accumulated
//	scratch [slots, attnScratch(T)]
//	dout    [B, T, C]
//	qkv     [B, T, 3C]
//	lse     [B, NH, T]
func attentionBackward(r *runner, dqkv, scratch, dout, qkv, lse []float32, B, T, C, NH int) {
	need("attention dqkv", dqkv, B*T*3*C)
	need("attention dout", dout, B*T*C)
	need("attention qkv", qkv, B*T*3*C)
	need("attention lse", lse, B*NH*T)
	r.attention(attentionBackwardSlot, [8][]float32{dqkv, lse, scratch, qkv, dout}, B, T, C, NH)
}

// attention runs fn over the slots, whose goroutines claim the B*NH (b, h)
// pairs one at a time.
func (r *runner) attention(fn rangeFunc, s [8][]float32, B, T, C, NH int) {
	per := attnScratch(T)
	slots := min(len(s[2])/per, B*NH)
	if slots < 1 {
		panic(fmt.Sprintf("lm: attention scratch %d < %d", len(s[2]), per))
	}
	r.args.s = s
	r.args.n = [6]int{B, T, C, NH, slots, B * NH}
	r.args.x[0] = float32(1 / math.Sqrt(float64(C/NH)))
	r.args.noTiles = r.noTiles
	r.runEach(slots, fn)
}

func attentionForwardSlot(a *loopArgs, lo, hi int) {
	out, lse, scratch, qkv := a.s[0], a.s[1], a.s[2], a.s[3]
	T, C, NH, n := a.n[1], a.n[2], a.n[3], a.n[5]
	scale := a.x[0]
	p := a.pool
	HS, C3 := C/NH, 3*C
	per := attnScratch(T)
	fast := !a.noTiles && attnFastOK(HS, T, per)
	for slot := lo; slot < hi; slot++ {
		att := scratch[slot*per : slot*per+attnBlock*T]
		sums := scratch[slot*per+attnBlock*T : slot*per+attnBlock*T+attnBlock]
		for {
			bh, ok := a.claim(n)
			if !ok {
				break
			}
			b, h := bh/NH, bh%NH
			if fast {
				attentionForwardPair(out, lse, scratch[slot*per:(slot+1)*per], qkv, b, h, bh, T, C, HS, scale)
				continue
			}
			base := b * T * C3
			q := qkv[base+h*HS:]
			k := qkv[base+C+h*HS:]
			v := qkv[base+2*C+h*HS:]
			for r0 := 0; r0 < T; r0 += attnBlock {
				r1 := min(r0+attnBlock, T)
				rb := r1 - r0
				p.Sgemm(false, true, rb, r1, HS, scale, q[r0*C3:], C3, k, C3, 0, att, T)
				for i := 0; i < rb; i++ {
					t := r0 + i
					row := att[i*T : i*T+r1]
					mx := maxSlice(row[:t+1])
					sum := expSub(row[:t+1], mx)
					clear(row[t+1:])
					sums[i] = sum
					lse[bh*T+t] = mx + float32(math.Log(float64(sum)))
				}
				// out = (exp(scores - max) @ V) / sum: normalise the HS
				// outputs of a row rather than its r1 probabilities.
				o := out[(b*T+r0)*C+h*HS:]
				p.Sgemm(false, false, rb, HS, r1, 1, att, T, v, C3, 0, o, C)
				for i := 0; i < rb; i++ {
					inv := 1 / sums[i]
					for j := range o[i*C : i*C+HS] {
						o[i*C+j] *= inv
					}
				}
			}
		}
	}
}

func attentionBackwardSlot(a *loopArgs, lo, hi int) {
	dqkv, lse, scratch, qkv, dout := a.s[0], a.s[1], a.s[2], a.s[3], a.s[4]
	T, C, NH, n := a.n[1], a.n[2], a.n[3], a.n[5]
	scale := a.x[0]
	p := a.pool
	HS, C3 := C/NH, 3*C
	per := attnScratch(T)
	fast := !a.noTiles && attnFastOK(HS, T, per)
	for slot := lo; slot < hi; slot++ {
		P := scratch[slot*per : slot*per+attnBlock*T]
		dP := scratch[slot*per+attnBlock*T : (slot+1)*per]
		for {
			bh, ok := a.claim(n)
			if !ok {
				break
			}
			b, h := bh/NH, bh%NH
			if fast {
				attentionBackwardPair(dqkv, scratch[slot*per:(slot+1)*per], qkv, dout, lse, b, h, bh, T, C, HS, scale)
				continue
			}
			base := b * T * C3
			q, dq := qkv[base+h*HS:], dqkv[base+h*HS:]
			k, dk := qkv[base+C+h*HS:], dqkv[base+C+h*HS:]
			v, dv := qkv[base+2*C+h*HS:], dqkv[base+2*C+h*HS:]
			for r0 := 0; r0 < T; r0 += attnBlock {
				r1 := min(r0+attnBlock, T)
				rb := r1 - r0
				do := dout[(b*T+r0)*C+h*HS:]
				// Recompute the probabilities from the scores and the cached lse.
				p.Sgemm(false, true, rb, r1, HS, scale, q[r0*C3:], C3, k, C3, 0, P, T)
				for i := 0; i < rb; i++ {
					t := r0 + i
					row := P[i*T : i*T+r1]
					expSub(row[:t+1], lse[bh*T+t])
					clear(row[t+1:])
				}
				// dP = dout @ V^T; dV += P^T @ dout.
				p.Sgemm(false, true, rb, r1, HS, 1, do, C, v, C3, 0, dP, T)
				p.Sgemm(true, false, r1, HS, rb, 1, P, T, do, C, 1, dv, C3)
				// Softmax backward, with the score scale folded in.
				for i := 0; i < rb; i++ {
					t := r0 + i
					pr := P[i*T : i*T+t+1]
					dr := dP[i*T : i*T+r1]
					softmaxGrad(dr[:t+1], pr, dotSlice(pr, dr), scale)
					clear(dr[t+1:])
				}
				// dQ += dS @ K; dK += dS^T @ Q.
				p.Sgemm(false, false, rb, HS, r1, 1, dP, T, k, C3, 1, dq[r0*C3:], C3)
				p.Sgemm(true, false, r1, HS, rb, 1, dP, T, q[r0*C3:], C3, 1, dk, C3)
			}
		}
	}
}
