package kernels

import "fmt"

// packedKC is the K block of a PackedB: 128 steps of a micro-panel (16 KiB
// at nr = 32) stay in L1 while the A panels stream past; a product may start
// at any multiple of it.
const packedKC = 128

// packedCols is the columns of one packing unit of PackB.
const packedCols = 512

// PackedB is op(B) [k, n] packed once into the micro-panels of a Pool's
// micro-kernel, for products that read it many times (Pool.SgemmPackedB):
// a shared weight packed once per step rather than once per product. The
// zero value is empty; Pool.PackB fills it, reusing its memory.
type PackedB struct {
	k, n, nPad int
	kern       *microKernel
	data       []float32 // K block at pc starts at pc*nPad: panels of nr columns, kc steps each

	// PackB's operands, for its parallel loop (forEach) without a closure.
	tB    bool
	b     []float32
	ldb   int
	units int // column units per K block
}

// PackB packs op(B) [k, n] into pb for the Pool's micro-kernel: B is [k, n]
// with ldb >= n, or [n, k] with ldb >= k when tB. The work is split over the
// Pool's budget; pb keeps no reference to b.
func (p *Pool) PackB(pb *PackedB, tB bool, k, n int, b []float32, ldb int) {
	checkGemm(false, tB, 0, n, k, nil, max(k, 1), b, ldb, nil, max(n, 1))
	kern := p.kern
	pb.k, pb.n, pb.kern = k, n, kern
	pb.nPad = roundUp(n, kern.nr)
	pb.data = grow(pb.data, k*pb.nPad)
	if k == 0 || n == 0 {
		return
	}
	pb.tB, pb.b, pb.ldb = tB, b, ldb
	pb.units = (n + packedCols - 1) / packedCols
	p.forEach(pb.units*((k+packedKC-1)/packedKC), 1, pb)
	pb.b = nil
}

// run packs units [lo, hi) of PackB: (K block, packedCols columns) pairs.
func (pb *PackedB) run(lo, hi int) {
	nr := pb.kern.nr
	for u := lo; u < hi; u++ {
		pc, j0 := u/pb.units*packedKC, u%pb.units*packedCols
		kc, nc := min(packedKC, pb.k-pc), min(packedCols, pb.n-j0)
		packB(pb.kern, pb.data[pc*pb.nPad+j0*kc:], pb.tB, pb.b, pb.ldb, pc, kc, j0, nc, nr)
	}
}

// SgemmPackedB computes C = alpha*op(A)*P + beta*C on the calling goroutine
// alone, where P is rows k0..k0+k and columns j0..j0+n of the op(B) packed
// in pb (by PackB on a Pool of the same micro-kernel); k0 must be a multiple
// of 128 and j0 of 32. A and C are as for Sgemm: op(A) [m, k], C [m, n],
// beta == 0 overwrites C without reading it. It is meant for the bodies of
// loops that already share the work among the Pool's goroutines; the sums
// are those of Sgemm's micro-kernel, in K blocks of 128.
func (p *Pool) SgemmPackedB(tA bool, m, n, k int, alpha float32, a []float32, lda int, pb *PackedB, k0, j0 int, beta float32, c []float32, ldc int) {
	checkGemm(tA, false, m, 0, k, a, lda, nil, 1, nil, 1)
	checkGemm(false, false, m, n, 0, nil, 1, nil, max(n, 1), c, ldc)
	if pb.kern != p.kern || k0%packedKC != 0 || j0%32 != 0 || k0 < 0 || j0 < 0 || k0+k > pb.k || j0+n > pb.n {
		panic(fmt.Sprintf("kernels: SgemmPackedB of rows %d..%d, columns %d..%d of a packed [%d, %d] (%s, pool %s)", k0, k0+k, j0, j0+n, pb.k, pb.n, pb.kern.name, p.kern.name))
	}
	switch {
	case m == 0 || n == 0:
		return
	case k == 0 || alpha == 0:
		scaleC(m, n, beta, c, ldc)
		return
	}
	buf := p.getBuf()
	defer p.putBuf(buf)
	kern := p.kern
	buf.tile = grow(buf.tile, kern.mr*kern.nr)
	inPlace := !p.packAll && aInPlace(kern, tA, lda, true, true)
	for pc := 0; pc < k; pc += packedKC {
		kc := min(packedKC, k-pc)
		kb := k0 + pc
		kcb := min(packedKC, pb.k-kb) // steps of the packed block
		pa := aPanels(buf, kern, tA, a, lda, 0, m, pc, kc, inPlace)
		pbp := panels{base: pb.data[kb*pb.nPad+j0*kcb:], mul: kcb, ld: kern.nr, full: n}
		bet := beta
		if pc > 0 {
			bet = 1
		}
		macro(kern, buf, &pa, &pbp, c, ldc, alpha, 0, 0, m, n, kc, bet)
	}
}
