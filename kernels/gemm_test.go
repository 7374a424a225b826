package kernels

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
)

// gemmCase is one Sgemm call to check against SgemmNaive.
type gemmCase struct {
	tA, tB      bool
	m, n, k     int
	alpha, beta float32
	pad         int // extra leading-dimension elements of A, B and C
}

func (tc gemmCase) String() string {
	t := func(b bool) string {
		if b {
			return "T"
		}
		return "N"
	}
	return fmt.Sprintf("%s%s/m=%d,n=%d,k=%d,alpha=%g,beta=%g,pad=%d", t(tc.tA), t(tc.tB), tc.m, tc.n, tc.k, tc.alpha, tc.beta, tc.pad)
}

// operands returns A, B, C and their leading dimensions for tc, filled with
// values in [-1, 1). C is filled with NaN when beta == 0, to prove it is not read.
func (tc gemmCase) operands(rng *rand.Rand) (a []float32, lda int, b []float32, ldb int, c []float32, ldc int) {
	ar, ac := tc.m, tc.k
	if tc.tA {
		ar, ac = tc.k, tc.m
	}
	br, bc := tc.k, tc.n
	if tc.tB {
		br, bc = tc.n, tc.k
	}
	lda, ldb, ldc = max(ac, 1)+tc.pad, max(bc, 1)+tc.pad, max(tc.n, 1)+tc.pad
	fill := func(n int) []float32 {
		s := make([]float32, n)
		for i := range s {
			s[i] = 2*rng.Float32() - 1
		}
		return s
	}
	a, b, c = fill(ar*lda), fill(br*ldb), fill(tc.m*ldc)
	if tc.beta == 0 {
		for i := range c {
			c[i] = float32(math.NaN())
		}
	}
	return a, lda, b, ldb, c, ldc
}

// gemmCases covers every transposition with odd shapes: 1x1, sizes that are
// not multiples of any tile, long K (several K blocks), and sizes that need
// more than one M and N cache block.
func gemmCases() []gemmCase {
	shapes := [][3]int{
		{1, 1, 1}, {1, 1, 7}, {1, 17, 3}, {7, 1, 5}, {2, 3, 4},
		{5, 15, 1}, {6, 16, 8}, {7, 17, 9}, {12, 32, 33}, {13, 31, 300},
		{37, 45, 513}, {64, 64, 64}, {200, 70, 19}, {70, 200, 260},
		{193, 35, 11}, {9, 1030, 20}, {3, 5, 1100},
		// K over two and three blocks of the longest kc (1024), split by
		// rows and by columns of C.
		{130, 97, 2100}, {40, 150, 1300},
		// A^T with a leading dimension of 4 KiB (packed, not read in place),
		// split by rows and by columns of C.
		{1024, 20, 30}, {1024, 1030, 5},
	}
	scales := [][2]float32{{1, 0}, {1, 1}, {0.5, -1.5}, {-2, 0}, {0, 0.5}, {0, 0}}
	var cases []gemmCase
	for si, s := range shapes {
		for ti := 0; ti < 4; ti++ {
			sc := scales[(si+ti)%len(scales)]
			cases = append(cases, gemmCase{
				tA: ti&1 != 0, tB: ti&2 != 0, m: s[0], n: s[1], k: s[2],
				alpha: sc[0], beta: sc[1], pad: (si + ti) % 3 * 5,
			})
		}
	}
	// Every scale on one shape with edges in both directions, for each transposition.
	for ti := 0; ti < 4; ti++ {
		for _, sc := range scales {
			cases = append(cases, gemmCase{tA: ti&1 != 0, tB: ti&2 != 0, m: 19, n: 23, k: 29, alpha: sc[0], beta: sc[1], pad: 3})
		}
	}
	// k == 0: C = beta*C.
	cases = append(cases, gemmCase{m: 3, n: 4, k: 0, alpha: 1, beta: 0}, gemmCase{m: 3, n: 4, k: 0, alpha: 1, beta: 2})
	return cases
}

// maxRelErr returns the largest |got-want| / (1 + |want|) over the m x n
// elements of C, with its index; NaN counts as infinitely wrong.
func maxRelErr(got, want []float32, m, n, ldc int) (float64, int) {
	worst, at := 0.0, -1
	for i := 0; i < m; i++ {
		for j := 0; j < n; j++ {
			g, w := float64(got[i*ldc+j]), float64(want[i*ldc+j])
			e := math.Abs(g-w) / (1 + math.Abs(w))
			if math.IsNaN(e) {
				e = math.Inf(1)
			}
			if e > worst || at < 0 {
				worst, at = e, i*ldc+j
			}
		}
	}
	return worst, at
}

// checkSgemm runs every case on p and compares with SgemmNaive. Elements of C
// beyond n in each row (the ld padding) must be left alone.
func checkSgemm(t *testing.T, p *Pool) {
	t.Helper()
	rng := rand.New(rand.NewPCG(1, 2))
	for _, tc := range gemmCases() {
		a, lda, b, ldb, c, ldc := tc.operands(rng)
		want := append([]float32(nil), c...)
		SgemmNaive(tc.tA, tc.tB, tc.m, tc.n, tc.k, tc.alpha, a, lda, b, ldb, tc.beta, want, ldc)
		// Tolerance: float32 accumulation over k terms of size <= 1.
		tol := 1e-6 * float64(tc.k+8)
		// SgemmThen: every row handed to then once, already final.
		fused := append([]float32(nil), c...)
		seen := make([]atomic.Int32, tc.m)
		p.SgemmThen(tc.tA, tc.tB, tc.m, tc.n, tc.k, tc.alpha, a, lda, b, ldb, tc.beta, fused, ldc, func(lo, hi int) {
			if lo < 0 || hi > tc.m || lo >= hi {
				t.Errorf("SgemmThen(%v): then(%d, %d) out of [0, %d)", tc, lo, hi, tc.m)
				return
			}
			for i := lo; i < hi; i++ {
				seen[i].Add(1)
				if e, at := maxRelErr(fused[i*ldc:], want[i*ldc:], 1, tc.n, ldc); e > tol {
					t.Errorf("SgemmThen(%v): row %d not final when handed over: [%d] = %g; want %g", tc, i, at, fused[i*ldc+at], want[i*ldc+at])
				}
			}
		})
		for i := range seen {
			if n := seen[i].Load(); n != 1 {
				t.Errorf("SgemmThen(%v): row %d handed to then %d times; want once", tc, i, n)
			}
		}
		got := c
		p.Sgemm(tc.tA, tc.tB, tc.m, tc.n, tc.k, tc.alpha, a, lda, b, ldb, tc.beta, got, ldc)
		for i := range got {
			if g, f := got[i], fused[i]; g != f && !(g != g && f != f) {
				t.Errorf("SgemmThen(%v)[%d] = %g; Sgemm gives %g", tc, i, f, g)
				break
			}
		}
		if e, at := maxRelErr(got, want, tc.m, tc.n, ldc); e > tol {
			t.Errorf("Sgemm(%v)[%d] = %g; want %g (relative error %.3g > %.3g)", tc, at, got[at], want[at], e, tol)
		}
		for i := 0; i < tc.m; i++ {
			for j := tc.n; j < ldc && i*ldc+j < len(c); j++ {
				g, w := got[i*ldc+j], want[i*ldc+j]
				if g != w && !(g != g && w != w) {
					t.Errorf("Sgemm(%v) wrote padding C[%d][%d] = %g; want %g", tc, i, j, g, w)
				}
			}
		}
	}
}

func TestSgemm(t *testing.T) {
	// gonum's Sgemm: the path of CPUs without an assembly micro-kernel.
	for _, threads := range []int{1, 2} {
		t.Run(fmt.Sprintf("gonum/threads=%d", threads), func(t *testing.T) {
			p := NewPool(threads)
			p.useGonum = true
			checkSgemm(t, p)
		})
	}
	for _, kern := range cpuKernels() {
		for _, threads := range []int{1, 2, 3} {
			t.Run(fmt.Sprintf("%s/threads=%d", kern.name, threads), func(t *testing.T) {
				p := NewPool(threads)
				p.kern, p.useGonum = kern, false
				if threads == 3 {
					p.directMNK = 0 // tiny shapes through the micro-kernels too
				}
				checkSgemm(t, p)
			})
		}
		t.Run(kern.name+"/nosmall", func(t *testing.T) {
			p := NewPool(2)
			p.kern, p.useGonum = kern, false
			p.smallFlops, p.directMNK = 0, 0
			checkSgemm(t, p)
		})
		t.Run(kern.name+"/packall", func(t *testing.T) {
			p := NewPool(2)
			p.kern, p.useGonum = kern, false
			p.packAll, p.directMNK = true, 0
			checkSgemm(t, p)
		})
		// Goroutines waiting for a block of the shared operand park at once.
		t.Run(kern.name+"/park", func(t *testing.T) {
			p := NewPool(3)
			p.kern, p.useGonum = kern, false
			p.packSpin, p.directMNK, p.smallFlops = 0, 0, 0
			checkSgemm(t, p)
		})
		// A shared operand too large to pack whole is done in slabs.
		t.Run(kern.name+"/slabs", func(t *testing.T) {
			p := NewPool(2)
			p.kern, p.useGonum = kern, false
			p.maxShared = 1
			checkSgemm(t, p)
		})
	}
}

// TestSgemmThreadsBitwise checks that the result does not depend on the
// budget: every element of C is summed by one goroutine in a fixed order.
func TestSgemmThreadsBitwise(t *testing.T) {
	rng := rand.New(rand.NewPCG(9, 10))
	for _, tc := range []gemmCase{
		{tA: false, tB: true, m: 300, n: 97, k: 450, alpha: 1, beta: 0},
		{tA: true, tB: false, m: 61, n: 230, k: 700, alpha: 0.5, beta: 1},
	} {
		a, lda, b, ldb, c0, ldc := tc.operands(rng)
		var first []float32
		for _, threads := range []int{1, 2, 3} {
			c := append([]float32(nil), c0...)
			NewPool(threads).Sgemm(tc.tA, tc.tB, tc.m, tc.n, tc.k, tc.alpha, a, lda, b, ldb, tc.beta, c, ldc)
			if first == nil {
				first = c
				continue
			}
			for i := range c {
				if c[i] != first[i] && !(c[i] != c[i] && first[i] != first[i]) {
					t.Errorf("Sgemm(%v) with %d threads: C[%d] = %g; want %g as with 1 thread", tc, threads, i, c[i], first[i])
					break
				}
			}
		}
	}
}

func TestSgemmLarge(t *testing.T) {
	// Shapes of the model, which split over threads and cross cache blocks.
	if testing.Short() {
		t.Skip("long reference computation")
	}
	rng := rand.New(rand.NewPCG(3, 4))
	p := NewPool(2)
	for _, tc := range []gemmCase{
		{tA: false, tB: true, m: 300, n: 1100, k: 130, alpha: 1, beta: 0},
		{tA: false, tB: false, m: 257, n: 130, k: 515, alpha: 1, beta: 1},
		{tA: true, tB: false, m: 131, n: 129, k: 1029, alpha: 1, beta: 1, pad: 1},
		{tA: true, tB: true, m: 200, n: 199, k: 300, alpha: -1, beta: 0.25},
		// Rows of a row-major A 4 KiB apart (aliasing): packed, not read
		// in place (aInPlace), for a narrow C (rows of C split) and for a
		// small product (A shared).
		{tA: false, tB: true, m: 250, n: 200, k: 1024, alpha: 1, beta: 0},
		{tA: false, tB: false, m: 13, n: 20, k: 1024, alpha: 1, beta: 1},
	} {
		a, lda, b, ldb, c, ldc := tc.operands(rng)
		want := append([]float32(nil), c...)
		SgemmNaive(tc.tA, tc.tB, tc.m, tc.n, tc.k, tc.alpha, a, lda, b, ldb, tc.beta, want, ldc)
		p.Sgemm(tc.tA, tc.tB, tc.m, tc.n, tc.k, tc.alpha, a, lda, b, ldb, tc.beta, c, ldc)
		tol := 1e-6 * float64(tc.k+8)
		if e, at := maxRelErr(c, want, tc.m, tc.n, ldc); e > tol {
			t.Errorf("Sgemm(%v)[%d] = %g; want %g (relative error %.3g > %.3g)", tc, at, c[at], want[at], e, tol)
		}
	}
}

// TestSgemmConcurrent runs several callers on one Pool at once (run with -race):
// packing buffers are never shared and results stay exact.
func TestSgemmConcurrent(t *testing.T) {
	p := NewPool(2)
	rng := rand.New(rand.NewPCG(5, 6))
	tc := gemmCase{tA: false, tB: true, m: 150, n: 90, k: 70, alpha: 1, beta: 0}
	a, lda, b, ldb, c0, ldc := tc.operands(rng)
	want := append([]float32(nil), c0...)
	p.Sgemm(tc.tA, tc.tB, tc.m, tc.n, tc.k, tc.alpha, a, lda, b, ldb, tc.beta, want, ldc)
	const callers, rounds = 4, 5
	var wg sync.WaitGroup
	errs := make([]string, callers)
	for w := 0; w < callers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := make([]float32, len(c0))
			for r := 0; r < rounds; r++ {
				p.Sgemm(tc.tA, tc.tB, tc.m, tc.n, tc.k, tc.alpha, a, lda, b, ldb, tc.beta, c, ldc)
				for i := range c {
					if c[i] != want[i] {
						errs[w] = fmt.Sprintf("caller %d round %d: C[%d] = %g; want %g", w, r, i, c[i], want[i])
						return
					}
				}
			}
		}()
	}
	wg.Wait()
	for _, e := range errs {
		if e != "" {
			t.Error(e)
		}
	}
}

func TestSgemmNoAllocs(t *testing.T) {
	p := NewPool(1)
	rng := rand.New(rand.NewPCG(7, 8))
	tc := gemmCase{tA: false, tB: true, m: 64, n: 48, k: 40, alpha: 1, beta: 0}
	a, lda, b, ldb, c, ldc := tc.operands(rng)
	p.Sgemm(tc.tA, tc.tB, tc.m, tc.n, tc.k, tc.alpha, a, lda, b, ldb, tc.beta, c, ldc)
	allocs := testing.AllocsPerRun(10, func() {
		p.Sgemm(tc.tA, tc.tB, tc.m, tc.n, tc.k, tc.alpha, a, lda, b, ldb, tc.beta, c, ldc)
	})
	if allocs != 0 {
		t.Errorf("Sgemm(%v) allocates %v times per call; want 0", tc, allocs)
	}
}

func TestSgemmPanics(t *testing.T) {
	p := NewPool(1)
	for _, tc := range []struct {
		name string
		call func()
	}{
		{"negative m", func() { p.Sgemm(false, false, -1, 1, 1, 1, nil, 1, nil, 1, 0, nil, 1) }},
		{"short A", func() {
			p.Sgemm(false, false, 2, 2, 2, 1, make([]float32, 3), 2, make([]float32, 4), 2, 0, make([]float32, 4), 2)
		}},
		{"small ldb", func() {
			p.Sgemm(false, true, 2, 2, 3, 1, make([]float32, 6), 3, make([]float32, 6), 2, 0, make([]float32, 4), 2)
		}},
		{"short C", func() {
			p.Sgemm(true, false, 2, 2, 2, 1, make([]float32, 4), 2, make([]float32, 4), 2, 0, make([]float32, 3), 2)
		}},
	} {
		func() {
			defer func() {
				r := recover()
				if s, ok := r.(string); !ok || len(s) < 8 || s[:8] != "kernels:" {
					t.Errorf("%s: panic %v; want a \"kernels:\" panic", tc.name, r)
				}
			}()
			tc.call()
		}()
	}
}

// TestClaimChunks checks the chunks of C that goroutines claim: guided
// (shrinking towards the end, never below minChunk) when several share a
// job, whole (mc rows) when one runs it alone; the last may reach past the
// last tile, whose rows the caller clips.
func TestClaimChunks(t *testing.T) {
	for _, tc := range []struct {
		parts int
		want  [][2]int
	}{
		{1, [][2]int{{0, 16}, {16, 32}, {32, 48}}},
		{2, [][2]int{{0, 10}, {10, 18}, {18, 24}, {24, 28}, {28, 31}, {31, 34}, {34, 36}, {36, 38}, {38, 40}, {40, 42}, {42, 44}}},
	} {
		j := &gemmJob{parts: tc.parts, tiles: 43, tile: 12, maxTiles: 16}
		var got [][2]int
		for {
			lo, hi, ok := j.claim()
			if !ok {
				break
			}
			got = append(got, [2]int{lo, hi})
		}
		if !slices.Equal(got, tc.want) {
			t.Errorf("%d goroutines: claimed %v; want %v", tc.parts, got, tc.want)
		}
	}
}

// TestAInPlace checks when the micro-kernel reads A in place: A^T for small
// products and narrow C, a row-major A for small products and narrow C when
// the kernel has fnRowA, and never when its rows (or k steps) are a
// multiple of 4 KiB apart.
func TestAInPlace(t *testing.T) {
	rowA := &microKernel{fnRowA: sgemmKernelGo}
	for _, tc := range []struct {
		kern                *microKernel
		tA                  bool
		lda                 int
		rowA, narrowT, want bool
	}{
		{rowA, true, 1040, false, true, true},
		{rowA, true, 1040, true, false, false},
		{rowA, true, 1024, false, true, false},
		{rowA, false, 1040, true, false, true},
		{rowA, false, 1040, false, true, false},
		{rowA, false, 1024, true, true, false},
		{rowA, false, 2048, true, true, false},
		{rowA, false, 512, true, false, true},
		{rowA, true, 512, false, true, false},
		{rowA, true, 1536, false, true, false},
		{rowA, true, 256, false, true, true},
		{rowA, true, 768, false, true, true},
		{rowA, false, 1040, false, false, false},
		{&kernelGo, false, 1040, true, true, false},
		{&kernelGo, true, 1040, false, true, true},
	} {
		if got := aInPlace(tc.kern, tc.tA, tc.lda, tc.rowA, tc.narrowT); got != tc.want {
			t.Errorf("aInPlace(fnRowA %v, tA %v, lda %d, rowA %v, narrowT %v) = %v; want %v", tc.kern.fnRowA != nil, tc.tA, tc.lda, tc.rowA, tc.narrowT, got, tc.want)
		}
	}
}

// TestChunkAInPlace checks the widths at which a chunk of rows of C packs
// its A: A^T above transAMaxN columns, a row-major A above rowAMaxN, either
// read in place for a small product.
func TestChunkAInPlace(t *testing.T) {
	rowA := &microKernel{fnRowA: sgemmKernelGo}
	for _, tc := range []struct {
		tA, small bool
		n         int
		want      bool
	}{
		{true, false, 128, true},
		{true, false, 129, false},
		{true, false, 1024, false},
		{true, true, 1024, true},
		{false, false, 256, true},
		{false, false, 257, false},
		{false, true, 1024, true},
	} {
		if got := chunkAInPlace(rowA, tc.tA, 1040, tc.small, tc.n); got != tc.want {
			t.Errorf("chunkAInPlace(tA %v, small %v, n %d) = %v; want %v", tc.tA, tc.small, tc.n, got, tc.want)
		}
	}
	if chunkAInPlace(rowA, true, 1024, true, 64) {
		t.Error("chunkAInPlace: A^T at a 4 KiB stride read in place")
	}
}
