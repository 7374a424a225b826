package kernels

import (
	"math"
	"math/rand/v2"
	"testing"
)

// archRowImpls returns the assembly variants the CPU runs, each with the Go
// tail the dispatcher adds.
func archRowImpls() []rowImpl {
	var out []rowImpl
	withTail := func(f func(dst, x, pf *float32, n int, a, b float32) float64) func(dst, x []float32, a, b float32) float64 {
		return func(dst, x []float32, a, b float32) float64 {
			n := len(x) &^ 15
			s := 0.0
			if n > 0 {
				s = f(&dst[0], &x[0], &x[0], n, a, b)
			}
			return s + expSumGo(dst[n:], x[n:], a, b)
		}
	}
	xlTail := func(f func(x, y, pf *float32, n int) (float64, float64, float64, float32)) func(x, y []float32) (float64, float64, float64, float32) {
		return func(x, y []float32) (float64, float64, float64, float32) {
			n := len(x) &^ 15
			if n == 0 {
				return xLogXDotGo(x, y)
			}
			l, s, d, mn := f(&x[0], &y[0], &x[0], n)
			if n < len(x) {
				l2, s2, d2, mn2 := xLogXDotGo(x[n:], y[n:])
				l, s, d, mn = l+l2, s+s2, d+d2, min(mn, mn2)
			}
			return l, s, d, mn
		}
	}
	if useAVX2Row() {
		out = append(out, rowImpl{"avx2", maxMinSum, withTail(expSumAVX2), xlTail(xLogXDotAVX2), scaleShift, axpby})
	}
	if useAVX512Row() {
		out = append(out, rowImpl{"avx512", maxMinSum, withTail(expSumAVX512), xlTail(xLogXDotAVX512), scaleShift, axpby})
	}
	return out
}

type namedLog struct {
	name string
	log  func(dst, x []float32)
}

// archLogs returns the assembly logarithms the CPU runs, with the Go tail.
func archLogs() []namedLog {
	withTail := func(f func(dst, x *float32, n int)) func(dst, x []float32) {
		return func(dst, x []float32) {
			n := len(x) &^ 15
			if n > 0 {
				f(&dst[0], &x[0], n)
			}
			logRowGo(dst[n:], x[n:])
		}
	}
	var out []namedLog
	if useAVX2Row() {
		out = append(out, namedLog{"avx2", withTail(logAVX2)})
	}
	if useAVX512Row() {
		out = append(out, namedLog{"avx512", withTail(logAVX512)})
	}
	return out
}

// archDistillImpls returns the assembly variants of the kernels of
// exp_distill.go that the CPU runs, each with the Go tail the dispatcher adds.
func archDistillImpls() []distillImpl {
	edd := func(f func(dst, x, y, pf *float32, n int, a, b, c, g float32) (float64, float64)) func(dst, x, y []float32, a, b, c, g float32) (float64, float64) {
		return func(dst, x, y []float32, a, b, c, g float32) (float64, float64) {
			n := len(x) &^ 15
			var s, d float64
			if n > 0 {
				s, d = f(&dst[0], &x[0], &y[0], &x[0], n, a, b, c, g)
			}
			s2, d2 := expDiffDotGo(dst[n:], x[n:], y[n:], a, b, c, g)
			return s + s2, d + d2
		}
	}
	lmd := func(f func(dst, z, p, e *float32, n int, cp, cq, a, b float32) (float64, float64)) func(dst, z, p, e []float32, cp, cq, a, b float32) (float64, float64) {
		return func(dst, z, p, e []float32, cp, cq, a, b float32) (float64, float64) {
			n := len(z) &^ 15
			var pl, el float64
			if n > 0 {
				pl, el = f(&dst[0], &z[0], &p[0], &e[0], n, cp, cq, a, b)
			}
			p2, e2 := logMixDotGo(dst[n:], z[n:], p[n:], e[n:], cp, cq, a, b)
			return pl + p2, el + e2
		}
	}
	var out []distillImpl
	if useAVX2Row() {
		out = append(out, distillImpl{"avx2", edd(expDiffDotAVX2), lmd(logMixDotAVX2), mulDiff})
		// The c = f = 0 kernel, on the cases with c = f = 0.
		arg := edd(func(dst, x, y, pf *float32, n int, a, b, c, f float32) (float64, float64) {
			if c != 0 || f != 0 {
				return expDiffDotAVX2(dst, x, y, pf, n, a, b, c, f)
			}
			return expArgDotAVX2(dst, x, pf, n, a, b)
		})
		out = append(out, distillImpl{"avx2-arg", arg, lmd(logMixDotAVX2), mulDiff})
	}
	if useAVX512Row() {
		out = append(out, distillImpl{"avx512", edd(expDiffDotAVX512), lmd(logMixDotAVX512), mulDiff})
	}
	return out
}

type namedLogMixConst = struct {
	name string
	f    func(dst, z, e []float32, pc, cq, a, b float32) (float64, float64)
}

// archLogMixConst returns the assembly LogMixConst kernels the CPU runs,
// with the Go tail.
func archLogMixConst() []namedLogMixConst {
	withTail := func(f func(dst, z, e *float32, n int, pc, cq, a, b float32) (float64, float64)) func(dst, z, e []float32, pc, cq, a, b float32) (float64, float64) {
		return func(dst, z, e []float32, pc, cq, a, b float32) (float64, float64) {
			n := len(z) &^ 15
			var sl, ds float64
			if n > 0 {
				sl, ds = f(&dst[0], &z[0], &e[0], n, pc, cq, a, b)
			}
			s2, d2 := logMixConstGo(dst[n:], z[n:], e[n:], pc, cq, a, b)
			return sl + s2, ds + d2
		}
	}
	var out []namedLogMixConst
	if useAVX2Row() {
		out = append(out, namedLogMixConst{"avx2", withTail(logMixConstAVX2)})
	}
	if useAVX512Row() {
		out = append(out, namedLogMixConst{"avx512", withTail(logMixConstAVX512)})
	}
	return out
}

// TestLogT8 sweeps the table logarithm (LOGT8 through logAVX2, LOGT16
// through logAVX512, where the CPU has them) over every 251st float from the
// smallest normal to the largest finite one, and over every float in [0.5,
// 2) where its table and the split of ln2 meet: within 2 ulp of math.Log,
// and the two bit for bit equal.
func TestLogT8(t *testing.T) {
	if !useAVX2Row() {
		t.Skip("no AVX2")
	}
	const n = 1 << 16
	x, dst, d512 := make([]float32, n), make([]float32, n), make([]float32, n)
	worst, at := 0.0, float32(0)
	check := func(m int) {
		logAVX2(&dst[0], &x[0], m)
		if useAVX512Row() {
			logAVX512(&d512[0], &x[0], m)
			for i := range m {
				if d512[i] != dst[i] {
					t.Fatalf("log(%v): LOGT16 %v, LOGT8 %v; want equal", x[i], d512[i], dst[i])
				}
			}
		}
		for i, v := range x[:m] {
			want := math.Log(float64(v))
			w32 := float32(want)
			ulp := float64(math.Nextafter32(float32(math.Abs(want)), math.MaxFloat32)) - math.Abs(float64(w32))
			if w32 == 0 {
				ulp = 0x1p-149
			}
			if e := math.Abs(float64(dst[i])-want) / ulp; e > worst {
				worst, at = e, v
			}
		}
	}
	sweep := func(lo, hi, step uint32) {
		m := 0
		for b := lo; b < hi; b += step {
			x[m] = math.Float32frombits(b)
			if m++; m == n {
				check(m)
				m = 0
			}
		}
		for m%16 != 0 {
			x[m] = 1
			m++
		}
		if m > 0 {
			check(m)
		}
	}
	sweep(0x00800000, 0x7f800000, 251)
	sweep(0x3f000000, 0x40000000, 1)
	if worst > 2 {
		t.Errorf("table logarithm: error %.2f ulp at %v; want at most 2", worst, at)
	}
	t.Logf("table logarithm: worst error %.3f ulp at %v", worst, at)
}

// TestExpSumStreamAsm runs each assembly ExpSumStream the CPU has (the
// dispatcher picks one) against ExpSum on aligned rows.
func TestExpSumStreamAsm(t *testing.T) {
	type impl struct {
		name string
		f    func(dst, x *float32, n int, a, b float32) float64
	}
	var impls []impl
	if useAVX2Row() {
		impls = append(impls, impl{"avx2", expSumStreamAVX2})
	}
	if useAVX512Row() {
		impls = append(impls, impl{"avx512", expSumStreamAVX512})
	}
	rng := rand.New(rand.NewPCG(7, 8))
	for _, im := range impls {
		for _, n := range []int{16, 32, 48, 512, 4096 + 16} {
			x := make([]float32, n)
			for i := range x {
				x[i] = float32(rng.NormFloat64() * 4)
			}
			want := make([]float32, n)
			exact := ExpSum(want, x, 1, 2)
			dst := alignedAt(n, 0)
			sum := im.f(&dst[0], &x[0], n, 1, 2)
			streamFence()
			for i := range dst {
				if dst[i] != want[i] {
					t.Fatalf("%s n=%d: [%d] = %v; want %v", im.name, n, i, dst[i], want[i])
				}
			}
			if e := relErr(sum, exact); e > 1e-6*max(1, float64(n)/256) {
				t.Errorf("%s n=%d: sum = %v; want %v", im.name, n, sum, exact)
			}
		}
	}
}
