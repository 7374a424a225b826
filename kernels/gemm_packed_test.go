package kernels

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
)

// TestSgemmPackedB checks SgemmPackedB against SgemmNaive on blocks of a
// packed op(B) (every K and column offset it allows, partial tiles, several
// K blocks, A read in place and packed, A^T with a 4 KiB leading dimension)
// on every micro-kernel, and that the padding of C is left alone.
func TestSgemmPackedB(t *testing.T) {
	type pcase struct {
		tA, tB          bool
		K, N            int // the packed op(B)
		m, n, k, k0, j0 int
		alpha, beta     float32
		ldaPad, ldcPad  int
	}
	var cases []pcase
	for i, s := range [][7]int{
		// K, N, m, n, k, k0, j0
		{1, 1, 1, 1, 1, 0, 0}, {7, 5, 3, 5, 7, 0, 0}, {128, 600, 256, 512, 128, 0, 0},
		{128, 600, 13, 88, 128, 0, 512}, {300, 100, 37, 100, 172, 128, 0}, {300, 100, 12, 64, 44, 256, 32},
		{600, 45, 25, 45, 300, 256, 0}, {1030, 130, 1024, 96, 5, 1024, 32}, {1030, 130, 30, 96, 1024, 0, 32},
	} {
		for f := range 4 {
			c := pcase{tA: f&1 != 0, tB: f&2 != 0, K: s[0], N: s[1], m: s[2], n: s[3], k: s[4], k0: s[5], j0: s[6],
				alpha: []float32{1, 0.5, -2, 0}[(i+f)%4], beta: []float32{0, 1, -1.5, 0}[(i+2*f)%4], ldaPad: (i + f) % 3 * 5, ldcPad: f % 2 * 3}
			if c.m == 1024 && c.tA {
				c.ldaPad = 0 // lda 1024: A^T packed, not read in place
			}
			if c.k == 1024 && !c.tA {
				c.ldaPad = 0 // lda 1024: row-major A packed, not read in place
			}
			cases = append(cases, c)
		}
	}
	rng := rand.New(rand.NewPCG(3, 4))
	fill := func(n int) []float32 {
		s := make([]float32, n)
		for i := range s {
			s[i] = 2*rng.Float32() - 1
		}
		return s
	}
	for _, kern := range cpuKernels() {
		p := NewPool(2)
		p.kern, p.useGonum = kern, false
		var pb PackedB
		for _, c := range cases {
			name := fmt.Sprintf("%s/tA=%v,tB=%v/K=%d,N=%d/m=%d,n=%d,k=%d,k0=%d,j0=%d", kern.name, c.tA, c.tB, c.K, c.N, c.m, c.n, c.k, c.k0, c.j0)
			ldb := c.N + 2
			b := fill(c.K * ldb)
			if c.tB {
				ldb = c.K + 2
				b = fill(c.N * ldb)
			}
			p.PackB(&pb, c.tB, c.K, c.N, b, ldb)
			if pb.k != c.K || pb.n != c.N {
				t.Fatalf("%s: packed [%d, %d]", name, pb.k, pb.n)
			}
			// op(B)[k0:k0+k, j0:j0+n] as a plain [k, n] matrix.
			sub := make([]float32, c.k*c.n)
			for i := range c.k {
				for j := range c.n {
					if c.tB {
						sub[i*c.n+j] = b[(c.j0+j)*ldb+c.k0+i]
					} else {
						sub[i*c.n+j] = b[(c.k0+i)*ldb+c.j0+j]
					}
				}
			}
			lda := c.k + c.ldaPad
			a := fill(c.m * lda)
			if c.tA {
				lda = c.m + c.ldaPad
				a = fill(c.k * lda)
			}
			ldc := c.n + c.ldcPad
			got := fill(c.m * ldc)
			if c.beta == 0 {
				for i := range got {
					if i%ldc < c.n {
						got[i] = float32(math.NaN())
					}
				}
			}
			want := append([]float32(nil), got...)
			SgemmNaive(c.tA, false, c.m, c.n, c.k, c.alpha, a, lda, sub, max(c.n, 1), c.beta, want, ldc)
			p.SgemmPackedB(c.tA, c.m, c.n, c.k, c.alpha, a, lda, &pb, c.k0, c.j0, c.beta, got, ldc)
			tol := 1e-6 * float64(c.k+8)
			if e, at := maxRelErr(got, want, c.m, c.n, ldc); e > tol {
				t.Errorf("%s: C[%d] = %g; want %g", name, at, got[at], want[at])
			}
			for i := range got {
				if i%ldc >= c.n && got[i] != want[i] {
					t.Errorf("%s: wrote the padding C[%d]", name, i)
					break
				}
			}
		}
	}
}

func TestSgemmPackedBNoAllocs(t *testing.T) {
	p := NewPool(1)
	var pb PackedB
	b, a, c := make([]float32, 256*300), make([]float32, 50*256), make([]float32, 50*300)
	p.PackB(&pb, true, 256, 300, b, 256)
	allocs := testing.AllocsPerRun(10, func() {
		p.PackB(&pb, true, 256, 300, b, 256)
		p.SgemmPackedB(false, 50, 300, 256, 1, a, 256, &pb, 0, 0, 0, c, 300)
	})
	if allocs != 0 {
		t.Errorf("PackB and SgemmPackedB allocate %v times per call; want 0", allocs)
	}
}

func TestSgemmPackedBPanics(t *testing.T) {
	p := NewPool(1)
	var pb PackedB
	p.PackB(&pb, false, 300, 100, make([]float32, 300*100), 100)
	a, c := make([]float32, 4*300), make([]float32, 4*100)
	for _, tc := range []struct {
		name string
		call func()
	}{
		{"k0 not a multiple of 128", func() { p.SgemmPackedB(false, 4, 10, 10, 1, a, 10, &pb, 64, 0, 0, c, 10) }},
		{"j0 not a multiple of 32", func() { p.SgemmPackedB(false, 4, 10, 10, 1, a, 10, &pb, 0, 16, 0, c, 10) }},
		{"past the packed rows", func() { p.SgemmPackedB(false, 4, 10, 200, 1, a, 200, &pb, 128, 0, 0, c, 10) }},
		{"past the packed columns", func() { p.SgemmPackedB(false, 4, 80, 10, 1, a, 10, &pb, 0, 32, 0, c, 80) }},
		{"short C", func() { p.SgemmPackedB(false, 4, 100, 10, 1, a, 10, &pb, 0, 0, 0, c[:399], 100) }},
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
