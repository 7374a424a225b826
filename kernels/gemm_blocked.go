package kernels

import "unsafe"

// A microKernel computes one mr x nr tile of C from packed panels:
//
//	acc[i][j] = sum over p < k of a[p*mr+i] * b[p*nr+j]
//	C[i*ldc+j] = alpha*acc[i][j]                   beta == 0: C is not read
//	C[i*ldc+j] = alpha*acc[i][j] + beta*C[i*ldc+j] otherwise
//
// with k >= 1. mc, kc, nc are the cache blocks the driver uses with it: mc is a
// multiple of mr and nc of nr.
type microKernel struct {
	name       string
	mr, nr     int
	mc, kc, nc int
	fn         func(k int, a, b, c *float32, ldc int, alpha, beta float32)
}

// kernelGo is the portable micro-kernel, used where no assembly kernel fits the
// CPU, and in tests to check the driver independently of the assembly.
var kernelGo = microKernel{
	name: "go-4x8",
	mr:   4, nr: 8,
	mc: 128, kc: 256, nc: 1024,
	fn: sgemmKernelGo,
}

func sgemmKernelGo(k int, a, b, c *float32, ldc int, alpha, beta float32) {
	const mr, nr = 4, 8
	ap := unsafe.Slice(a, k*mr)
	bp := unsafe.Slice(b, k*nr)
	var acc [mr * nr]float32
	for p := 0; p < k; p++ {
		av := ap[p*mr : p*mr+mr : p*mr+mr]
		bv := bp[p*nr : p*nr+nr : p*nr+nr]
		for i, ai := range av {
			row := acc[i*nr : i*nr+nr : i*nr+nr]
			for j, bj := range bv {
				row[j] += ai * bj
			}
		}
	}
	cs := unsafe.Slice(c, (mr-1)*ldc+nr)
	for i := 0; i < mr; i++ {
		row := cs[i*ldc : i*ldc+nr : i*ldc+nr]
		src := acc[i*nr : i*nr+nr : i*nr+nr]
		if beta == 0 {
			for j, v := range src {
				row[j] = alpha * v
			}
		} else {
			for j, v := range src {
				row[j] = alpha*v + beta*row[j]
			}
		}
	}
}

// gemmArgs is one Sgemm call: C = alpha*op(A)*op(B) + beta*C.
type gemmArgs struct {
	tA, tB      bool
	m, n, k     int
	alpha, beta float32
	a           []float32 // op(A) [m, k]
	lda         int
	b           []float32 // op(B) [k, n]
	ldb         int
	c           []float32 // [m, n], written
	ldc         int
}

// gemmBuf holds one goroutine's packing buffers. Buffers grow to the largest
// block seen and are reused across calls through the Pool's free list.
type gemmBuf struct {
	a    []float32 // packed A block: ceil(mc/mr) micro-panels of kc x mr
	b    []float32 // packed B block: ceil(nc/nr) micro-panels of kc x nr
	tile []float32 // [mr x nr] result of an edge tile
}

func grow(s []float32, n int) []float32 {
	if cap(s) < n {
		return make([]float32, n)
	}
	return s[:n]
}

func (p *Pool) getBuf() *gemmBuf {
	p.mu.Lock()
	defer p.mu.Unlock()
	if n := len(p.free); n > 0 {
		b := p.free[n-1]
		p.free = p.free[:n-1]
		return b
	}
	return new(gemmBuf)
}

func (p *Pool) putBuf(b *gemmBuf) {
	p.mu.Lock()
	p.free = append(p.free, b)
	p.mu.Unlock()
}

// minPartFlops is the least work worth a goroutine of its own: about 10 µs.
const minPartFlops = 1 << 19

// gemmJob is one Sgemm call split over the budget: run computes parts
// [lo, hi) of the split dimension, counted in micro-tiles. Jobs are reused
// through the Pool's free list, so a call allocates nothing when it runs on
// the caller alone.
type gemmJob struct {
	gemmArgs
	p      *Pool
	kern   *microKernel
	splitM bool // split rows of C (else columns)
}

func (j *gemmJob) run(lo, hi int) {
	if j.splitM {
		mr := j.kern.mr
		j.p.gemmRange(j.kern, &j.gemmArgs, lo*mr, min(hi*mr, j.m), 0, j.n)
		return
	}
	nr := j.kern.nr
	j.p.gemmRange(j.kern, &j.gemmArgs, 0, j.m, lo*nr, min(hi*nr, j.n))
}

// sgemm splits C over the budget and runs the blocked algorithm on each part.
// Only the dimension of C with more elements is split, so the operand packed
// twice (once per part) is the smaller one.
func (p *Pool) sgemm(g gemmArgs) {
	p.mu.Lock()
	var j *gemmJob
	if n := len(p.jobs); n > 0 {
		j = p.jobs[n-1]
		p.jobs = p.jobs[:n-1]
	} else {
		j = new(gemmJob)
	}
	p.mu.Unlock()

	j.gemmArgs, j.p, j.kern = g, p, p.kern
	flops := 2 * g.k // per element of C
	var tiles, grain int
	if j.splitM = g.m >= g.n; j.splitM {
		tiles = (g.m + j.kern.mr - 1) / j.kern.mr
		grain = minPartFlops / (j.kern.mr*g.n*flops + 1)
	} else {
		tiles = (g.n + j.kern.nr - 1) / j.kern.nr
		grain = minPartFlops / (j.kern.nr*g.m*flops + 1)
	}
	p.forEach(tiles, grain, j)

	j.gemmArgs = gemmArgs{} // drop references to the caller's slices
	p.mu.Lock()
	p.jobs = append(p.jobs, j)
	p.mu.Unlock()
}

// gemmRange computes rows [i0, i1) and columns [j0, j1) of C with packed,
// cache-blocked panels (the BLIS loop order: jc, pc, ic, jr, ir).
func (p *Pool) gemmRange(kern *microKernel, g *gemmArgs, i0, i1, j0, j1 int) {
	buf := p.getBuf()
	defer p.putBuf(buf)
	mr, nr := kern.mr, kern.nr
	buf.tile = grow(buf.tile, mr*nr)
	kcMax := min(kern.kc, g.k)
	mcMax := min(kern.mc, roundUp(i1-i0, mr))
	ncMax := min(kern.nc, roundUp(j1-j0, nr))
	buf.a = grow(buf.a, mcMax*kcMax)
	buf.b = grow(buf.b, ncMax*kcMax)
	c, ldc := g.c, g.ldc
	for jc := j0; jc < j1; jc += kern.nc {
		nc := min(kern.nc, j1-jc)
		for pc := 0; pc < g.k; pc += kern.kc {
			kc := min(kern.kc, g.k-pc)
			beta := g.beta
			if pc > 0 {
				beta = 1
			}
			packB(buf.b, g.tB, g.b, g.ldb, pc, kc, jc, nc, nr)
			for ic := i0; ic < i1; ic += kern.mc {
				mc := min(kern.mc, i1-ic)
				packA(buf.a, g.tA, g.a, g.lda, ic, mc, pc, kc, mr)
				for jr := 0; jr < nc; jr += nr {
					cols := min(nr, nc-jr)
					bp := &buf.b[jr*kc]
					for ir := 0; ir < mc; ir += mr {
						rows := min(mr, mc-ir)
						ap := &buf.a[ir*kc]
						ci := (ic+ir)*ldc + jc + jr
						if rows == mr && cols == nr {
							kern.fn(kc, ap, bp, &c[ci], ldc, g.alpha, beta)
							continue
						}
						kern.fn(kc, ap, bp, &buf.tile[0], nr, 1, 0)
						mergeTile(c[ci:], ldc, buf.tile, nr, rows, cols, g.alpha, beta)
					}
				}
			}
		}
	}
}

func roundUp(x, m int) int { return (x + m - 1) / m * m }

// mergeTile writes the top-left rows x cols of an edge tile into C:
// C = alpha*tile + beta*C (beta == 0: C is not read).
func mergeTile(c []float32, ldc int, tile []float32, nr, rows, cols int, alpha, beta float32) {
	for i := 0; i < rows; i++ {
		dst := c[i*ldc : i*ldc+cols]
		src := tile[i*nr : i*nr+cols]
		if beta == 0 {
			for j, v := range src {
				dst[j] = alpha * v
			}
			continue
		}
		for j, v := range src {
			dst[j] = alpha*v + beta*dst[j]
		}
	}
}

// packA packs rows [i0, i0+mc) and columns [p0, p0+kc) of op(A) into dst as
// ceil(mc/mr) micro-panels, each kc steps of mr values (zero-padded rows).
func packA(dst []float32, tA bool, a []float32, lda, i0, mc, p0, kc, mr int) {
	full := mc / mr * mr
	if tA {
		// op(A)[i][p] = a[p*lda+i]: step p of every micro-panel comes from
		// one contiguous run of A.
		for p := 0; p < kc; p++ {
			src := a[(p0+p)*lda+i0:][:mc]
			switch mr {
			case 6:
				for ir := 0; ir < full; ir += 6 {
					*(*[6]float32)(dst[ir*kc+p*6:]) = *(*[6]float32)(src[ir:])
				}
			case 12:
				for ir := 0; ir < full; ir += 12 {
					*(*[12]float32)(dst[ir*kc+p*12:]) = *(*[12]float32)(src[ir:])
				}
			default:
				for ir := 0; ir < full; ir += mr {
					copy(dst[ir*kc+p*mr:ir*kc+p*mr+mr], src[ir:ir+mr])
				}
			}
			if full < mc {
				d := dst[full*kc+p*mr : full*kc+p*mr+mr]
				copy(d, src[full:])
				clear(d[mc-full:])
			}
		}
		return
	}
	// op(A)[i][p] = a[i*lda+p]: interleave mr rows.
	for ir := 0; ir < full; ir += mr {
		d := dst[ir*kc : ir*kc+mr*kc]
		row := func(i int) []float32 { return a[(i0+ir+i)*lda+p0:][:kc] }
		switch mr {
		case 6:
			packRows6(d, row(0), row(1), row(2), row(3), row(4), row(5))
		case 12:
			packRows6x2(d, row(0), row(1), row(2), row(3), row(4), row(5), row(6), row(7), row(8), row(9), row(10), row(11))
		default:
			for i := 0; i < mr; i++ {
				for p, v := range row(i) {
					d[p*mr+i] = v
				}
			}
		}
	}
	if full < mc {
		d := dst[full*kc : full*kc+mr*kc]
		rows := mc - full
		for i := 0; i < rows; i++ {
			for p, v := range a[(i0+full+i)*lda+p0:][:kc] {
				d[p*mr+i] = v
			}
		}
		for i := rows; i < mr; i++ {
			for p := 0; p < kc; p++ {
				d[p*mr+i] = 0
			}
		}
	}
}

// packRows6 interleaves 6 rows of equal length into d: d[p*6+i] = ri[p].
func packRows6(d, r0, r1, r2, r3, r4, r5 []float32) {
	n := len(r0)
	r1, r2, r3, r4, r5 = r1[:n], r2[:n], r3[:n], r4[:n], r5[:n]
	for p := range r0 {
		dp := (*[6]float32)(d[p*6:])
		dp[0], dp[1], dp[2], dp[3], dp[4], dp[5] = r0[p], r1[p], r2[p], r3[p], r4[p], r5[p]
	}
}

// packRows6x2 interleaves 12 rows of equal length into d: d[p*12+i] = ri[p].
func packRows6x2(d, r0, r1, r2, r3, r4, r5, r6, r7, r8, r9, r10, r11 []float32) {
	n := len(r0)
	r1, r2, r3, r4, r5 = r1[:n], r2[:n], r3[:n], r4[:n], r5[:n]
	r6, r7, r8, r9, r10, r11 = r6[:n], r7[:n], r8[:n], r9[:n], r10[:n], r11[:n]
	for p := range r0 {
		dp := (*[12]float32)(d[p*12:])
		dp[0], dp[1], dp[2], dp[3], dp[4], dp[5] = r0[p], r1[p], r2[p], r3[p], r4[p], r5[p]
		dp[6], dp[7], dp[8], dp[9], dp[10], dp[11] = r6[p], r7[p], r8[p], r9[p], r10[p], r11[p]
	}
}

// packB packs rows [p0, p0+kc) and columns [j0, j0+nc) of op(B) into dst as
// ceil(nc/nr) micro-panels, each kc steps of nr values (zero-padded columns).
func packB(dst []float32, tB bool, b []float32, ldb, p0, kc, j0, nc, nr int) {
	full := nc / nr * nr
	if !tB {
		// op(B)[p][j] = b[p*ldb+j]: row p of B is step p of every micro-panel;
		// reading B row by row keeps the reads sequential.
		for p := 0; p < kc; p++ {
			src := b[(p0+p)*ldb+j0:][:nc]
			switch nr {
			case 16:
				for jr := 0; jr < full; jr += 16 {
					*(*[16]float32)(dst[jr*kc+p*16:]) = *(*[16]float32)(src[jr:])
				}
			case 32:
				for jr := 0; jr < full; jr += 32 {
					*(*[32]float32)(dst[jr*kc+p*32:]) = *(*[32]float32)(src[jr:])
				}
			default:
				for jr := 0; jr < full; jr += nr {
					copy(dst[jr*kc+p*nr:jr*kc+p*nr+nr], src[jr:jr+nr])
				}
			}
			if full < nc {
				d := dst[full*kc+p*nr : full*kc+p*nr+nr]
				copy(d, src[full:])
				clear(d[nc-full:])
			}
		}
		return
	}
	// op(B)[p][j] = b[j*ldb+p]: transpose nr rows of B per micro-panel.
	for jr := 0; jr < nc; jr += nr {
		cols := min(nr, nc-jr)
		d := dst[jr*kc : jr*kc+nr*kc]
		for j := 0; j < cols; j++ {
			for p, v := range b[(j0+jr+j)*ldb+p0:][:kc] {
				d[p*nr+j] = v
			}
		}
		for j := cols; j < nr; j++ {
			for p := 0; p < kc; p++ {
				d[p*nr+j] = 0
			}
		}
	}
}

// scaleC sets C = beta*C (beta == 0: C = 0, not read).
func scaleC(m, n int, beta float32, c []float32, ldc int) {
	for i := 0; i < m; i++ {
		row := c[i*ldc : i*ldc+n]
		if beta == 0 {
			clear(row)
			continue
		}
		if beta == 1 {
			continue
		}
		for j := range row {
			row[j] *= beta
		}
	}
}
