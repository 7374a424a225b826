package kernels

import (
	"runtime"
	"sync"
	"sync/atomic"
	"unsafe"
)

// A microKernel computes one mr x nr tile of C from an A micro-panel (k steps
// of mr values, lda apart) and a B micro-panel (k steps of nr values, ldb
// apart); packed panels have lda = mr, ldb = nr:
//
//	acc[i][j] = sum over p < k of a[p*lda+i] * b[p*ldb+j]
//	C[i*ldc+j] = alpha*acc[i][j]                   beta == 0: C is not read
//	C[i*ldc+j] = alpha*acc[i][j] + beta*C[i*ldc+j] otherwise
//
// with k >= 1. mc, kc, nc are the cache blocks the driver uses with it: mc is a
// multiple of mr and nc of nr.
type microKernel struct {
	name       string
	mr, nr     int
	mc, kc, nc int
	fn         func(k int, a *float32, lda int, b *float32, ldb int, c *float32, ldc int, alpha, beta float32)
	// fnRowA, if not nil, is fn reading A in place from a row-major matrix:
	// row i of the tile at a[i*lda], k steps adjacent. Small products use it
	// to skip packing A.
	fnRowA func(k int, a *float32, lda int, b *float32, ldb int, c *float32, ldc int, alpha, beta float32)
	// transpose8, if not nil, speeds up packing: it transposes 8 rows of
	// src and 8*n8 columns into dst, dst[p*ldd+i] = src[i*lds+p].
	transpose8 func(dst *float32, ldd int, src *float32, lds int, n8 int)
	// transpose4 is transpose8 for 4 rows; set whenever transpose8 is.
	transpose4 func(dst *float32, ldd int, src *float32, lds int, n8 int)
	// packPanels, if not nil, packs kc rows (lds apart) of panels*nr columns
	// of src into micro-panels: dst[q*nr*kc+p*nr+j] = src[p*lds+q*nr+j].
	packPanels func(dst *float32, src *float32, lds int, kc int, panels int, nr int)
	// packTA, if not nil, packs kc rows (lds apart) of panels*mr columns of
	// src into micro-panels of A^T: dst[q*mr*kc+p*mr+i] = src[p*lds+q*mr+i].
	packTA func(dst *float32, src *float32, lds int, kc int, panels int)
}

// kernelGo is the portable micro-kernel, used where no assembly kernel fits the
// CPU, and in tests to check the driver independently of the assembly.
var kernelGo = microKernel{
	name: "go-4x4",
	mr:   4, nr: 4,
	mc: 128, kc: 256, nc: 1024,
	fn: sgemmKernelGo,
}

func sgemmKernelGo(k int, a *float32, lda int, b *float32, ldb int, c *float32, ldc int, alpha, beta float32) {
	ap := unsafe.Slice(a, (k-1)*lda+4)
	bp := unsafe.Slice(b, (k-1)*ldb+4)
	// Sixteen scalar accumulators: the compiler keeps most in registers.
	var c00, c01, c02, c03, c10, c11, c12, c13 float32
	var c20, c21, c22, c23, c30, c31, c32, c33 float32
	for p := 0; p < k; p++ {
		av := (*[4]float32)(ap[p*lda:])
		bv := (*[4]float32)(bp[p*ldb:])
		b0, b1, b2, b3 := bv[0], bv[1], bv[2], bv[3]
		a0, a1, a2, a3 := av[0], av[1], av[2], av[3]
		c00 += a0 * b0
		c01 += a0 * b1
		c02 += a0 * b2
		c03 += a0 * b3
		c10 += a1 * b0
		c11 += a1 * b1
		c12 += a1 * b2
		c13 += a1 * b3
		c20 += a2 * b0
		c21 += a2 * b1
		c22 += a2 * b2
		c23 += a2 * b3
		c30 += a3 * b0
		c31 += a3 * b1
		c32 += a3 * b2
		c33 += a3 * b3
	}
	acc := [16]float32{c00, c01, c02, c03, c10, c11, c12, c13, c20, c21, c22, c23, c30, c31, c32, c33}
	cs := unsafe.Slice(c, 3*ldc+4)
	for i := 0; i < 4; i++ {
		row := (*[4]float32)(cs[i*ldc:])
		src := (*[4]float32)(acc[i*4:])
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
	a           []float32 // A [m, k], or [k, m] when tA
	lda         int
	b           []float32 // B [k, n], or [n, k] when tB
	ldb         int
	c           []float32 // [m, n], written
	ldc         int
	then        func(lo, hi int) // called on finished rows of C (SgemmThen), or nil
}

// gemmBuf holds one goroutine's packing buffers. Buffers grow to the largest
// block seen and are reused across calls through the Pool's free list.
type gemmBuf struct {
	pack []float32 // packed block of the split operand: mc x kc of A or kc x nc of B
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

const (
	// minPartFlops is the least work worth a goroutine of its own: about 5 µs.
	minPartFlops = 1 << 19
	// guidedDiv sets the size of the next chunk of C a goroutine claims
	// when there are several: the tiles left / (guidedDiv * goroutines), at
	// most mc rows (nc columns). Chunks shrink towards the end, so that when
	// a goroutine is slowed by other processes on its core, the others wait
	// for little.
	guidedDiv = 2
	// minChunk is the least chunk (rows or columns) a goroutine claims
	// before the last: each chunk reads the whole shared operand. At 48 the
	// two goroutines of a 1024^3 product (Zen 4, AVX-512) ended 300 µs
	// apart; 24 took it from 212 to 215 GFLOP/s at two threads, and 12 was
	// no faster.
	minChunk = 24
	// defaultSmallFlops is the size of product (2mnk) up to which operands
	// are read in place where the micro-kernels allow: packing would cost
	// more than it saves.
	defaultSmallFlops = 2 * 160 * 160 * 160
	// rowAMaxN is the widest C (n) for which a row-major A is read in place
	// (microKernel.fnRowA) whatever the size of the product: with at most
	// rowAMaxN/nr B micro-panels, each A micro-panel is used too few times
	// to pay for packing it.
	rowAMaxN = 256
	// transAMaxN is the widest C (n) for which a chunk of rows of C reads
	// its op(A) = A^T in place whatever the size of the product; wider, it
	// packs its block of A^T: each micro-panel is then read by more than
	// transAMaxN/nr B micro-panels, from a packed panel (contiguous) rather
	// than one cache line per k step, lda apart. A shared A^T (C cut into
	// columns) stays in place: packing it costs the goroutines a wait.
	transAMaxN = 128
	// defaultPackSpin is how many times a goroutine yields, waiting for a K
	// block of the shared operand, before it parks.
	defaultPackSpin = 64
	// defaultMaxShared bounds the shared packed operand (float32s, 16 MiB);
	// a larger one is done in slabs.
	defaultMaxShared = 1 << 22
)

// gemmJob is one Sgemm call split over the budget.
//
// The smaller of op(A) and op(B) (the shared operand) is packed once, whole,
// by all goroutines together (a job on one goroutine packs each K block of
// it just before its first use). C is cut along the other dimension into chunks
// of at most mc rows (or nc columns), shrinking towards the end (guided
// self-scheduling); goroutines claim chunks one at a time
// and, for each, pack their own block of the other operand and run the
// micro-kernel over it. Each element of C is computed by one goroutine in the
// same order whatever the number of threads, so results do not depend on the
// budget.
//
// When op(A) = A^T, its micro-panels already lie in memory as the
// micro-kernel reads them (mr consecutive values per k step): A is then read
// in place with its leading dimension, and only its partial edge panel is
// packed. op(B) = B is read in place only for small products: a B
// micro-panel is read once per A panel, and in place its k steps ldb apart
// (often a multiple of 4 KiB) would fight over the same L1 sets. Small
// products, and products with a narrow C (rowAMaxN), also read row-major A
// in place when the kernel has fnRowA, unless its rows are a multiple of
// 4 KiB apart (aliasing): the 12 rows the AVX-512 kernel reads side by side
// would then share one set of an 8-way L1 (Zen 4's), and evict each other
// at every step.
//
// Jobs are reused through the Pool's free list, so a call allocates nothing
// when it runs on the caller alone.
type gemmJob struct {
	gemmArgs
	p      *Pool
	kern   *microKernel
	splitM bool // chunks are rows of C and op(B) is shared (else columns, op(A))
	small  bool // few flops: read operands in place where the kernels allow, to skip packing

	sharedDirect bool      // the shared operand is read in place
	sharedDim    int       // n (splitM) or m
	sharedFull   int       // sharedDim rounded down to whole panels
	sharedN      int       // packed width: sharedDim rounded up to whole panels, or one panel when direct
	shared       []float32 // packed shared operand (or its edge panel): block at k offset pc starts at pc*sharedN

	// Packing units of the shared operand: (k block, group of packGroup panels).
	packUnits, packGroups int
	packNext              atomic.Int64
	blockDone             []atomic.Int32 // per k block: packing units done
	// Goroutines waiting for a K block park on packed (L: packMu) after a
	// short spin, so that on a busy machine they leave the CPU to the
	// goroutine that packs.
	packMu                sync.Mutex
	packed                sync.Cond
	waiters               atomic.Int32
	parts                 int          // goroutines the job asked for
	tiles, tile, maxTiles int          // tiles of the split dimension, tile size (mr or nr), tiles per chunk at most
	tileNext              atomic.Int64 // first tile not claimed yet
}

// packGroup is the number of micro-panels of the shared operand in one
// packing unit.
const packGroup = 8

// panels locates the micro-panels of one k block of an operand: the panel of
// rows (or columns) x.. starts at base[x*mul] with k steps ld apart, except
// the partial panel at x >= full, packed in edge (steps of the tile size).
type panels struct {
	base     []float32
	mul, ld  int
	full     int
	edge     []float32
	rowMajor bool // A panels below full are rows of a row-major matrix (microKernel.fnRowA)
}

// at returns the panel at row (or column) x and its step, r the tile size.
func (s *panels) at(x, r int) (*float32, int) {
	if x >= s.full {
		return &s.edge[0], r
	}
	return &s.base[x*s.mul], s.ld
}

// sgemm runs C = alpha*op(A)*op(B) + beta*C over the budget, in slabs when the
// shared operand would be too large to pack whole. It reports whether it
// called g.then on every row of C (rows are final chunk by chunk only when C
// is cut into blocks of rows and computed in one slab).
func (p *Pool) sgemm(g gemmArgs) bool {
	kern := p.kern
	splitM := g.m >= g.n
	small, nr := g.n, kern.nr
	if !splitM {
		small, nr = g.m, kern.mr
	}
	slab := max(nr, p.maxShared/max(g.k, 1)/nr*nr)
	if small <= slab {
		if !splitM {
			g.then = nil
		}
		p.sgemmSlab(kern, splitM, g)
		return g.then != nil
	}
	g.then = nil
	for lo := 0; lo < small; lo += slab {
		s := g
		hi := min(lo+slab, small)
		if splitM { // columns [lo, hi) of op(B) and C
			s.n = hi - lo
			s.c = g.c[lo:]
			if g.tB {
				s.b = g.b[lo*g.ldb:]
			} else {
				s.b = g.b[lo:]
			}
		} else { // rows [lo, hi) of op(A) and C
			s.m = hi - lo
			s.c = g.c[lo*g.ldc:]
			if g.tA {
				s.a = g.a[lo:]
			} else {
				s.a = g.a[lo*g.lda:]
			}
		}
		p.sgemmSlab(kern, splitM, s)
	}
	return false
}

func (p *Pool) sgemmSlab(kern *microKernel, splitM bool, g gemmArgs) {
	p.mu.Lock()
	var j *gemmJob
	if n := len(p.jobs); n > 0 {
		j = p.jobs[n-1]
		p.jobs = p.jobs[:n-1]
	} else {
		j = new(gemmJob)
	}
	p.mu.Unlock()

	flops := 2 * float64(g.m) * float64(g.n) * float64(g.k)
	j.gemmArgs, j.p, j.kern, j.splitM = g, p, kern, splitM
	j.packed.L = &j.packMu
	j.small = flops <= p.smallFlops && !p.packAll
	var tiles, tile, maxChunk, r int
	if splitM {
		tiles, tile, maxChunk = (g.m+kern.mr-1)/kern.mr, kern.mr, kern.mc
		j.sharedDim, r, j.sharedDirect = g.n, kern.nr, j.small && !g.tB
	} else {
		tiles, tile, maxChunk = (g.n+kern.nr-1)/kern.nr, kern.nr, kern.nc
		j.sharedDim, r = g.m, kern.mr
		j.sharedDirect = !p.packAll && aInPlace(kern, g.tA, g.lda, j.small, true)
	}
	j.sharedFull = j.sharedDim / r * r
	kBlocks := (g.k + kern.kc - 1) / kern.kc
	if j.sharedDirect {
		j.sharedN = r
		j.packGroups = 1
		j.packUnits = 0
		if j.sharedFull < j.sharedDim {
			j.packUnits = kBlocks
		}
	} else {
		j.sharedN = roundUp(j.sharedDim, r)
		j.packGroups = (j.sharedN/r + packGroup - 1) / packGroup
		j.packUnits = kBlocks * j.packGroups
	}
	j.shared = grow(j.shared, g.k*j.sharedN)
	j.packNext.Store(0)
	if cap(j.blockDone) < kBlocks {
		j.blockDone = make([]atomic.Int32, kBlocks)
	}
	j.blockDone = j.blockDone[:kBlocks]
	for i := range j.blockDone {
		j.blockDone[i].Store(0)
	}

	j.parts = min(p.threads, tiles, max(1, int(flops/minPartFlops)))
	j.tiles, j.tile, j.maxTiles = tiles, tile, maxChunk/tile
	j.tileNext.Store(0)

	p.forEach(j.parts, 1, j)

	j.gemmArgs = gemmArgs{} // drop references to the caller's slices
	p.mu.Lock()
	p.jobs = append(p.jobs, j)
	p.mu.Unlock()
}

// run is one goroutine's share of the job: help pack the shared operand,
// then claim chunks of C until none is left. A chunk waits for a K block of
// the shared operand only if another goroutine is still packing it.
func (j *gemmJob) run(_, _ int) {
	kern := j.kern
	// Several goroutines pack the shared operand together first; one alone
	// packs each K block just before its first use (packBlock), while the
	// block is still in cache: on Zen 2 at one thread the 1024^3 product
	// and the weight gradients (k = 2048) ran 0.5-4% faster so.
	for j.parts > 1 {
		u := int(j.packNext.Add(1) - 1)
		if u >= j.packUnits {
			break
		}
		j.packShared(u)
		if j.blockDone[u/j.packGroups].Add(1) == int32(j.packGroups) && j.waiters.Load() > 0 {
			j.packMu.Lock()
			j.packed.Broadcast()
			j.packMu.Unlock()
		}
	}

	buf := j.p.getBuf()
	defer j.p.putBuf(buf)
	buf.tile = grow(buf.tile, kern.mr*kern.nr)
	kcMax := min(kern.kc, j.k)
	buf.pack = grow(buf.pack, j.maxTiles*j.tile*kcMax)
	// A goroutine claims a chunk and runs it over every column block jc and
	// K block pc, in order: a goroutine that the OS deschedules only delays
	// the chunk it holds (or a K block it is packing).
	ncStep := kern.nc
	if !j.splitM {
		ncStep = j.n // colChunk's chunks are the column blocks
	}
	for {
		lo, hi, ok := j.claim()
		if !ok {
			return
		}
		for jc := 0; jc < j.n; jc += ncStep {
			for pc := 0; pc < j.k; pc += kern.kc {
				if j.splitM {
					j.rowChunk(buf, lo*j.tile, min(hi*j.tile, j.m), jc, pc)
				} else {
					j.colChunk(buf, lo*j.tile, min(hi*j.tile, j.n), pc)
				}
			}
		}
		if j.then != nil { // splitM: the chunk's rows are final
			j.then(lo*j.tile, min(hi*j.tile, j.m))
		}
	}
}

// claim returns the next chunk of tiles [lo, hi) of the split dimension, or
// false when none is left; the last chunk may reach past the last tile, and
// the caller clips it. A job on one goroutine has no one to balance
// against: it takes whole chunks (maxTiles), each of which reads the whole
// shared operand once.
func (j *gemmJob) claim() (lo, hi int, ok bool) {
	for {
		next := j.tileNext.Load()
		left := int64(j.tiles) - next
		if left <= 0 {
			return 0, 0, false
		}
		n := int64(j.maxTiles)
		if j.parts > 1 {
			n = min(n, max(int64(minChunk/j.tile), 1, left/int64(guidedDiv*j.parts)))
		}
		if j.tileNext.CompareAndSwap(next, next+n) {
			return int(next), int(next + n), true
		}
	}
}

// packShared packs unit u of the shared operand: one k block, one group of
// micro-panels (or, read in place, the edge panel of one k block).
func (j *gemmJob) packShared(u int) {
	kern := j.kern
	blk, grp := u/j.packGroups, u%j.packGroups
	pc := blk * kern.kc
	kc := min(kern.kc, j.k-pc)
	r := kern.mr
	if j.splitM {
		r = kern.nr
	}
	x0, w := grp*packGroup*r, min(packGroup*r, j.sharedDim-grp*packGroup*r)
	off := pc*j.sharedN + x0*kc
	if j.sharedDirect {
		x0, w, off = j.sharedFull, j.sharedDim-j.sharedFull, pc*j.sharedN
	}
	dst := j.shared[off:]
	if j.splitM {
		packB(kern, dst, j.tB, j.b, j.ldb, pc, kc, x0, w, r)
		return
	}
	packA(kern, dst, j.tA, j.a, j.lda, x0, w, pc, kc, r)
}

// waitBlock returns once done counts every packing unit of its K block:
// another goroutine is finishing it.
func (j *gemmJob) waitBlock(done *atomic.Int32) {
	for range j.p.packSpin {
		if done.Load() >= int32(j.packGroups) {
			return
		}
		runtime.Gosched()
	}
	j.packMu.Lock()
	j.waiters.Add(1)
	for done.Load() < int32(j.packGroups) {
		j.packed.Wait()
	}
	j.waiters.Add(-1)
	j.packMu.Unlock()
}

// packBlock packs every unit of the shared operand's K block blk, unless
// it is packed already: a job on one goroutine packs each block on its
// first use.
func (j *gemmJob) packBlock(blk int) {
	if j.blockDone[blk].Load() != 0 {
		return
	}
	for g := range j.packGroups {
		j.packShared(blk*j.packGroups + g)
	}
	j.blockDone[blk].Store(int32(j.packGroups))
}

// sharedPanels returns the panels of the shared operand's k block at pc,
// once it is packed.
func (j *gemmJob) sharedPanels(pc, kc int) panels {
	if j.packUnits > 0 {
		if blk := pc / j.kern.kc; j.parts == 1 {
			j.packBlock(blk)
		} else {
			j.waitBlock(&j.blockDone[blk])
		}
	}
	r := j.kern.mr
	if j.splitM {
		r = j.kern.nr
	}
	if !j.sharedDirect {
		return panels{base: j.shared[pc*j.sharedN:], mul: kc, ld: r, full: j.sharedN}
	}
	s := panels{mul: 1, full: j.sharedFull}
	switch {
	case j.splitM:
		s.base, s.ld = j.b[pc*j.ldb:], j.ldb
	case j.tA:
		s.base, s.ld = j.a[pc*j.lda:], j.lda
	default:
		s.base, s.mul, s.ld, s.rowMajor = j.a[pc:], j.lda, j.lda, true
	}
	if j.sharedFull < j.sharedDim {
		s.edge = j.shared[pc*j.sharedN:]
	}
	return s
}

// rowChunk computes rows [i0, i1) of C (i1-i0 <= mc), columns [jc, jc+nc),
// K block pc, against the shared op(B).
func (j *gemmJob) rowChunk(buf *gemmBuf, i0, i1, jc, pc int) {
	kern := j.kern
	mc := i1 - i0
	nc := min(kern.nc, j.n-jc)
	kc := min(kern.kc, j.k-pc)
	beta := j.beta
	if pc > 0 {
		beta = 1
	}
	inPlace := !j.p.packAll && chunkAInPlace(kern, j.tA, j.lda, j.small, j.n)
	pa := aPanels(buf, kern, j.tA, j.a, j.lda, i0, mc, pc, kc, inPlace)
	pb := j.sharedPanels(pc, kc)
	pb.full -= jc
	pb.base = pb.base[jc*pb.mul:]
	macro(kern, buf, &pa, &pb, j.c, j.ldc, j.alpha, i0, jc, mc, nc, kc, beta)
}

// aPanels returns the A panels of rows i0..i0+mc, K steps pc..pc+kc, of
// op(A): read in place when inPlace (the micro-kernel reads A^T, or a
// row-major A with fnRowA), the partial panel packed into buf; otherwise
// all packed into buf.
func aPanels(buf *gemmBuf, kern *microKernel, tA bool, a []float32, lda, i0, mc, pc, kc int, inPlace bool) panels {
	mr := kern.mr
	if !inPlace {
		buf.pack = grow(buf.pack, roundUp(mc, mr)*kc)
		packA(kern, buf.pack, tA, a, lda, i0, mc, pc, kc, mr)
		return panels{base: buf.pack, mul: kc, ld: mr, full: mc}
	}
	full := mc / mr * mr
	var pa panels
	if tA {
		pa = panels{base: a[pc*lda+i0:], mul: 1, ld: lda, full: full}
	} else {
		pa = panels{base: a[i0*lda+pc:], mul: lda, ld: lda, full: full, rowMajor: true}
	}
	if full < mc {
		buf.pack = grow(buf.pack, mr*kc)
		packA(kern, buf.pack, tA, a, lda, i0+full, mc-full, pc, kc, mr)
		pa.edge = buf.pack
	}
	return pa
}

// colChunk computes columns [j0, j1) of C (j1-j0 <= nc), K block pc, against
// the shared op(A).
func (j *gemmJob) colChunk(buf *gemmBuf, j0, j1, pc int) {
	kern := j.kern
	nr, nc := kern.nr, j1-j0
	kc := min(kern.kc, j.k-pc)
	beta := j.beta
	if pc > 0 {
		beta = 1
	}
	packB(kern, buf.pack, j.tB, j.b, j.ldb, pc, kc, j0, nc, nr)
	pb := panels{base: buf.pack, mul: kc, ld: nr, full: nc}
	pa := j.sharedPanels(pc, kc)
	for ic := 0; ic < j.m; ic += kern.mc {
		mc := min(kern.mc, j.m-ic)
		sub := pa
		sub.full -= ic
		sub.base = pa.base[ic*pa.mul:]
		macro(j.kern, buf, &sub, &pb, j.c, j.ldc, j.alpha, ic, j0, mc, nc, kc, beta)
	}
}

// macro runs the micro-kernel over the mc x nc block of C at (i0, j0), from
// A panels pa and B panels pb (positions relative to the block): B panel
// outer, so it stays in L1 while the A panels stream from L2.
func macro(kern *microKernel, buf *gemmBuf, pa, pb *panels, c []float32, ldc int, alpha float32, i0, j0, mc, nc, kc int, beta float32) {
	mr, nr := kern.mr, kern.nr
	for jr := 0; jr < nc; jr += nr {
		cols := min(nr, nc-jr)
		b, ldb := pb.at(jr, nr)
		for ir := 0; ir < mc; ir += mr {
			rows := min(mr, mc-ir)
			a, lda := pa.at(ir, mr)
			fn := kern.fn
			if pa.rowMajor && ir < pa.full {
				fn = kern.fnRowA
			}
			ci := (i0+ir)*ldc + j0 + jr
			if rows == mr && cols == nr {
				fn(kc, a, lda, b, ldb, &c[ci], ldc, alpha, beta)
				continue
			}
			fn(kc, a, lda, b, ldb, &buf.tile[0], nr, 1, 0)
			mergeTile(c[ci:], ldc, buf.tile, nr, rows, cols, alpha, beta)
		}
	}
}

func roundUp(x, m int) int { return (x + m - 1) / m * m }

// aliasing reports whether k steps (or rows) ld float32s apart fall on the
// same few cache sets (a stride of a multiple of 4 KiB), so that an A read
// in place would evict itself from L1 and L2 at every step: such an A is
// packed.
func aliasing(ld int) bool { return ld%1024 == 0 }

// stepAliasing reports whether the k steps of an A^T read in place, ld
// float32s apart, fall on two sets of a 64-set L1 (a stride of a multiple
// of 2 KiB): a micro-panel's kc cache lines then evict each other, and
// the B micro-panel's, before the next micro-panels of the chunk reuse
// them. On Zen 2 tiny's fc weight gradient (lda 512) ran at 57 GFLOP/s in
// place, 71-76 packed (lm BenchmarkMatMul/tiny/fc/dweight, one thread). A
// row-major A (its rows ld apart, read side by side) keeps the 4 KiB rule.
func stepAliasing(ld int) bool { return ld%512 == 0 }

// aInPlace reports whether the micro-kernel reads op(A) in place, lda
// apart, rather than packed: A^T when narrowT (a small product, or a C of
// at most transAMaxN columns: its micro-panels already lie as the kernel
// reads them, mr values per k step), a row-major A when rowA (a small
// product, or a C of at most rowAMaxN columns) and the kernel has fnRowA;
// neither when lda is aliasing (for A^T, stepAliasing).
func aInPlace(kern *microKernel, tA bool, lda int, rowA, narrowT bool) bool {
	if tA {
		return narrowT && !stepAliasing(lda)
	}
	return rowA && kern.fnRowA != nil && !aliasing(lda)
}

// chunkAInPlace is aInPlace for a chunk of rows of C (C cut into rows, op(B)
// shared): the chunk's A is read in place for a small product, or a C of at
// most rowAMaxN columns (row-major A) or transAMaxN columns (A^T).
func chunkAInPlace(kern *microKernel, tA bool, lda int, small bool, n int) bool {
	return aInPlace(kern, tA, lda, small || n <= rowAMaxN, small || n <= transAMaxN)
}

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
func packA(kern *microKernel, dst []float32, tA bool, a []float32, lda, i0, mc, p0, kc, mr int) {
	t8, t4 := kern.transpose8, kern.transpose4
	full := mc / mr * mr
	if tA {
		// op(A)[i][p] = a[p*lda+i]: step p of every micro-panel comes from
		// one contiguous run of A.
		if kern.packTA != nil && full > 0 {
			kern.packTA(&dst[0], &a[p0*lda+i0], lda, kc, full/mr)
			if full == mc {
				return
			}
			for p := 0; p < kc; p++ {
				src := a[(p0+p)*lda+i0:][:mc]
				d := dst[full*kc+p*mr : full*kc+p*mr+mr]
				copy(d, src[full:])
				clear(d[mc-full:])
			}
			return
		}
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
			if n8 := kc / 8; t4 != nil && n8 > 0 {
				// Rows 0-3, then rows 2-5 (rows 2-3 twice, same values).
				t4(&d[0], 6, &row(0)[0], lda, n8)
				t4(&d[2], 6, &row(2)[0], lda, n8)
				for p := n8 * 8; p < kc; p++ {
					for i := 0; i < 6; i++ {
						d[p*6+i] = row(i)[p]
					}
				}
				continue
			}
			packRows6(d, row(0), row(1), row(2), row(3), row(4), row(5))
		case 12:
			if n8 := kc / 8; t8 != nil && n8 > 0 {
				// Rows 0-7, then rows 8-11.
				t8(&d[0], 12, &row(0)[0], lda, n8)
				t4(&d[8], 12, &row(8)[0], lda, n8)
				for p := n8 * 8; p < kc; p++ {
					for i := 0; i < 12; i++ {
						d[p*12+i] = row(i)[p]
					}
				}
				continue
			}
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
		// The partial panel: step by step, so each write is contiguous.
		var rows [maxTile][]float32
		n := mc - full
		for i := 0; i < n; i++ {
			rows[i] = a[(i0+full+i)*lda+p0:][:kc]
		}
		d := dst[full*kc : full*kc+mr*kc]
		for p := 0; p < kc; p++ {
			dp := d[p*mr : p*mr+mr]
			for i, r := range rows[:n] {
				dp[i] = r[p]
			}
			clear(dp[n:])
		}
	}
}

// maxTile bounds mr and nr of every micro-kernel.
const maxTile = 32

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
func packB(kern *microKernel, dst []float32, tB bool, b []float32, ldb, p0, kc, j0, nc, nr int) {
	t8 := kern.transpose8
	full := nc / nr * nr
	if !tB {
		// op(B)[p][j] = b[p*ldb+j]: row p of B is step p of every micro-panel;
		// reading B row by row keeps the reads sequential.
		if kern.packPanels != nil && full > 0 && nr%8 == 0 {
			kern.packPanels(&dst[0], &b[p0*ldb+j0], ldb, kc, full/nr, nr)
			if full < nc {
				for p := 0; p < kc; p++ {
					d := dst[full*kc+p*nr : full*kc+p*nr+nr]
					copy(d, b[(p0+p)*ldb+j0+full:][:nc-full])
					clear(d[nc-full:])
				}
			}
			return
		}
		for p := 0; p < kc; p++ {
			src := b[(p0+p)*ldb+j0:][:nc]
			for jr := 0; jr < full; jr += nr {
				copy(dst[jr*kc+p*nr:jr*kc+p*nr+nr], src[jr:jr+nr])
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
		if n8 := kc / 8; t8 != nil && n8 > 0 && cols == nr && nr%8 == 0 {
			for j := 0; j < nr; j += 8 {
				t8(&d[j], nr, &b[(j0+jr+j)*ldb+p0], ldb, n8)
			}
			for j := 0; j < nr; j++ {
				src := b[(j0+jr+j)*ldb+p0:][:kc]
				for p := n8 * 8; p < kc; p++ {
					d[p*nr+j] = src[p]
				}
			}
			continue
		}
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

// defaultDirectMNK is the size of product (m*n*k) up to which Sgemm uses
// sgemmDirect: below it, the fixed cost of packing and tiles dominates.
const defaultDirectMNK = 256

// sgemmDirect is Sgemm for tiny products: plain loops, C row by row.
func sgemmDirect(tA, tB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) {
	for i := 0; i < m; i++ {
		row := c[i*ldc : i*ldc+n]
		if beta == 0 {
			clear(row)
		} else if beta != 1 {
			for j := range row {
				row[j] *= beta
			}
		}
		for l := 0; l < k; l++ {
			var av float32
			if tA {
				av = alpha * a[l*lda+i]
			} else {
				av = alpha * a[i*lda+l]
			}
			if tB {
				for j := range row {
					row[j] += av * b[j*ldb+l]
				}
				continue
			}
			for j, bv := range b[l*ldb : l*ldb+n] {
				row[j] += av * bv
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
