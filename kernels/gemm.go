package kernels

import (
	"fmt"

	"gonum.org/v1/gonum/blas"
	"gonum.org/v1/gonum/blas/gonum"
)

// Sgemm computes C = alpha*op(A)*op(B) + beta*C for row-major float32 matrices,
// where op(X) is X, or X transposed when the matching flag is set.
//
//	op(A): [m, k]   A is [m, k] with lda >= k, or [k, m] with lda >= m when tA
//	op(B): [k, n]   B is [k, n] with ldb >= n, or [n, k] with ldb >= k when tB
//	C:     [m, n]   ldc >= n; written
//
// beta == 0 overwrites C without reading it (NaNs in C do not propagate).
// The work is split over the Pool's budget.
func (p *Pool) Sgemm(tA, tB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) {
	p.SgemmThen(tA, tB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc, nil)
}

// SgemmThen is Sgemm followed by then(lo, hi) over rows [lo, hi) of C: each
// row of C is handed to then exactly once, after its last product is stored,
// in ranges that cover [0, m). Where C is computed in blocks of rows (m >= n,
// the usual case of a layer's rows times its features), then runs on the
// goroutine that computed the block, right after it, while the block is still
// in cache: an epilogue (bias, activation, residual, normalisation) fused
// with the product at no extra pass over memory. Otherwise the ranges are
// split over the budget after the product. then may be nil; it must not
// write C outside its rows, and must not depend on how [0, m) is cut.
func (p *Pool) SgemmThen(tA, tB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int, then func(lo, hi int)) {
	checkGemm(tA, tB, m, n, k, a, lda, b, ldb, c, ldc)
	if m == 0 {
		return
	}
	if p.yield.Load() {
		p.gosched()
	}
	switch {
	case n == 0:
	case k == 0 || alpha == 0:
		scaleC(m, n, beta, c, ldc)
	case p.useGonum:
		p.sgemmGonum(tA, tB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
	case m*n*k <= p.directMNK:
		sgemmDirect(tA, tB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
	default:
		if p.sgemm(gemmArgs{
			tA: tA, tB: tB, m: m, n: n, k: k, alpha: alpha, beta: beta,
			a: a, lda: lda, b: b, ldb: ldb, c: c, ldc: ldc, then: then,
		}) {
			return // then ran on every block of rows
		}
	}
	if then != nil {
		p.For(m, 16, then)
	}
}

// sgemmGonum is Sgemm through gonum's pure-Go implementation, called through
// a value (never the process-wide blas32.Use), one call per block of rows of
// C, the blocks split over the budget.
func (p *Pool) sgemmGonum(tA, tB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) {
	ta, tb := blas.NoTrans, blas.NoTrans
	if tA {
		ta = blas.Trans
	}
	if tB {
		tb = blas.Trans
	}
	var impl gonum.Implementation
	p.For(m, 32, func(lo, hi int) {
		var aa []float32
		if tA {
			aa = a[lo:]
		} else {
			aa = a[lo*lda:]
		}
		impl.Sgemm(ta, tb, hi-lo, n, k, alpha, aa, lda, b, ldb, beta, c[lo*ldc:], ldc)
	})
}

// SgemmNaive is the reference for Sgemm: the same contract, three plain loops
// with float64 accumulation. It is slow and exists for tests.
func SgemmNaive(tA, tB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) {
	checkGemm(tA, tB, m, n, k, a, lda, b, ldb, c, ldc)
	for i := 0; i < m; i++ {
		for j := 0; j < n; j++ {
			var s float64
			for l := 0; l < k; l++ {
				var av, bv float32
				if tA {
					av = a[l*lda+i]
				} else {
					av = a[i*lda+l]
				}
				if tB {
					bv = b[j*ldb+l]
				} else {
					bv = b[l*ldb+j]
				}
				s += float64(av) * float64(bv)
			}
			v := float32(float64(alpha) * s)
			if beta != 0 {
				v += beta * c[i*ldc+j]
			}
			c[i*ldc+j] = v
		}
	}
}

func checkGemm(tA, tB bool, m, n, k int, a []float32, lda int, b []float32, ldb int, c []float32, ldc int) {
	if m < 0 || n < 0 || k < 0 {
		panic(fmt.Sprintf("kernels: negative dimension m=%d n=%d k=%d", m, n, k))
	}
	ar, ac := m, k
	if tA {
		ar, ac = k, m
	}
	br, bc := k, n
	if tB {
		br, bc = n, k
	}
	need := func(name string, rows, cols, ld, have int) {
		if ld < max(cols, 1) {
			panic(fmt.Sprintf("kernels: %s leading dimension %d < %d columns", name, ld, cols))
		}
		if rows > 0 && cols > 0 && have < (rows-1)*ld+cols {
			panic(fmt.Sprintf("kernels: %s has %d elements, [%d x %d] with ld %d needs %d", name, have, rows, cols, ld, (rows-1)*ld+cols))
		}
	}
	need("A", ar, ac, lda, len(a))
	need("B", br, bc, ldb, len(b))
	need("C", m, n, ldc, len(c))
}
