package kernels

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
)

// distillImpl is one implementation of the kernels of exp_distill.go.
type distillImpl struct {
	name       string
	expDiffDot func(dst, x, y []float32, a, b, c, f float32) (float64, float64)
	logMixDot  func(dst, z, p, e []float32, cp, cq, a, b float32) (float64, float64)
	mulDiff    func(y, e, x []float32, alpha, a, b, c, d float32, s float64)
}

var distillImpls = append([]distillImpl{
	{"dispatch",
		func(dst, x, y []float32, a, b, c, f float32) (float64, float64) {
			return ExpDiffDot(dst, x, y, a, b, c, f, nil)
		},
		LogMixDot, MulDiff},
	{"go", expDiffDotGo, logMixDotGo, mulDiffGo},
}, archDistillImpls()...)

func randRow(rng *rand.Rand, n int, scale float64) []float32 {
	x := make([]float32, n)
	for i := range x {
		x[i] = float32(rng.NormFloat64() * scale)
	}
	return x
}

func TestExpDiffDot(t *testing.T) {
	rng := rand.New(rand.NewPCG(11, 12))
	for _, im := range distillImpls {
		for _, n := range rowLengths {
			for _, p := range [][4]float32{{1, 0, 1, 0}, {0.5, 3, 0.25, -2}, {2.5, -1, 0, 0}} {
				a, b, c, f := p[0], p[1], p[2], p[3]
				x, y := randRow(rng, n, 10), randRow(rng, n, 10)
				for i := range x {
					if a*x[i]-b > 20 { // e*d must fit a float32
						x[i] = 0
					}
				}
				x[0] = (b - 100) / a // underflows
				dst := make([]float32, n)
				s, dot := im.expDiffDot(dst, x, y, a, b, c, f)
				var ws, wd, ad float64
				for i, v := range x {
					arg := math.FMA(float64(a), float64(v), -float64(b))
					e := math.Exp(float64(float32(arg)))
					if arg < -87.34 {
						if dst[i] < 0 || dst[i] > 1.2e-38 {
							t.Fatalf("%s ExpDiffDot: exp(%v) = %v; want 0 or subnormal", im.name, arg, dst[i])
						}
						e = float64(dst[i])
					} else if relErr(float64(dst[i]), e) > 3e-7 {
						t.Fatalf("%s ExpDiffDot n=%d: dst[%d] = exp(%v) = %v; want %v", im.name, n, i, arg, dst[i], e)
					}
					d := float64(float32(arg)) - (float64(c)*float64(y[i]) - float64(f))
					ws += e
					wd += e * d
					ad += e * (math.Abs(arg) + math.Abs(float64(c)*float64(y[i])) + math.Abs(float64(f)))
				}
				if relErr(s, ws) > 3e-7 || math.Abs(dot-wd) > 3e-7*ad+1e-300 {
					t.Errorf("%s ExpDiffDot(n=%d, %v) = %v, %v; want %v, %v", im.name, n, p, s, dot, ws, wd)
				}
				// sum and dot are float64 sums over the stored values, with d
				// in float64 (from the float32 argument).
				var gs, gd, gad float64
				for i, e := range dst {
					arg := float32(math.FMA(float64(a), float64(x[i]), -float64(b)))
					d := float64(arg) - (float64(c)*float64(y[i]) - float64(f))
					gs += float64(e)
					gd += float64(e) * d
					gad += math.Abs(float64(e) * d)
				}
				if relErr(s, gs) > 1e-12 || math.Abs(dot-gd) > 1e-12*gad {
					t.Errorf("%s ExpDiffDot(n=%d): %v, %v; the stored values give %v, %v", im.name, n, s, dot, gs, gd)
				}
				// In place, y aliasing dst too: the same results.
				z := append([]float32(nil), x...)
				yy := z
				if c != 0 {
					yy = append([]float32(nil), y...)
				}
				s2, d2 := im.expDiffDot(z, z, yy, a, b, c, f)
				if c == 0 && (s2 != s || d2 != dot) {
					t.Errorf("%s ExpDiffDot in place n=%d = %v, %v; want %v, %v", im.name, n, s2, d2, s, dot)
				}
				for i := range z {
					if z[i] != dst[i] {
						t.Fatalf("%s ExpDiffDot in place n=%d: [%d] = %v; want %v", im.name, n, i, z[i], dst[i])
					}
				}
			}
		}
	}
}

func TestExpDiffDotNaN(t *testing.T) {
	for _, im := range distillImpls {
		for _, n := range []int{3, 16, 40} {
			for _, at := range []int{0, n - 1} {
				x := make([]float32, n)
				x[at] = float32(math.NaN())
				dst := make([]float32, n)
				if s, _ := im.expDiffDot(dst, x, x, 1, 0, 0, 0); !math.IsNaN(s) || dst[at] == dst[at] {
					t.Errorf("%s ExpDiffDot with NaN at %d of %d: sum %v, dst %v; want NaN", im.name, at, n, s, dst[at])
				}
			}
		}
	}
}

func TestLogMixDot(t *testing.T) {
	rng := rand.New(rand.NewPCG(13, 14))
	for _, im := range distillImpls {
		for _, n := range rowLengths {
			z := randRow(rng, n, 3)
			p, e := make([]float32, n), make([]float32, n)
			for i := range p {
				if rng.IntN(5) > 0 {
					p[i] = float32(math.Exp(rng.NormFloat64()*4 - 3))
				}
				e[i] = float32(math.Exp(rng.NormFloat64()*4 - 3))
			}
			e[n-1] = 0 // with p = 0, m = 0: log raised to the smallest normal
			p[n-1] = 0
			const cp, cq, a, b = 0.3, 0.02, 0.5, 1.25
			dst := make([]float32, n)
			pl, ds := im.logMixDot(dst, z, p, e, cp, cq, a, b)
			var wpl, wds, apl, ads, gds float64
			for i := range z {
				m := float64(cp)*float64(p[i]) + float64(cq)*float64(e[i])
				lm := math.Log(max(m, 0x1p-126))
				wpl += float64(p[i]) * lm
				apl += math.Abs(float64(p[i]) * lm)
				want := float64(e[i]) * (float64(a)*float64(z[i]) - b - lm)
				scale := float64(e[i]) * (math.Abs(float64(a)*float64(z[i])) + b + math.Abs(lm))
				wds += want
				ads += scale
				gds += float64(dst[i])
				if math.Abs(float64(dst[i])-want) > 1e-6*scale+1e-37 {
					t.Fatalf("%s LogMixDot n=%d: dst[%d] = %v; want %v", im.name, n, i, dst[i], want)
				}
			}
			if math.Abs(pl-wpl) > 1e-6*apl || math.Abs(ds-wds) > 1e-6*ads || math.Abs(ds-gds) > 2e-7*ads {
				t.Errorf("%s LogMixDot(n=%d) = %v, %v; want %v, %v (the stored values sum to %v)", im.name, n, pl, ds, wpl, wds, gds)
			}
			// dst may be z, or e.
			for _, alias := range []string{"z", "e"} {
				zz, ee := append([]float32(nil), z...), append([]float32(nil), e...)
				out := zz
				if alias == "e" {
					out = ee
				}
				pl2, ds2 := im.logMixDot(out, zz, p, ee, cp, cq, a, b)
				if pl2 != pl || ds2 != ds {
					t.Errorf("%s LogMixDot into %s n=%d = %v, %v; want %v, %v", im.name, alias, n, pl2, ds2, pl, ds)
				}
				for i := range out {
					if out[i] != dst[i] {
						t.Fatalf("%s LogMixDot into %s n=%d: [%d] = %v; want %v", im.name, alias, n, i, out[i], dst[i])
					}
				}
			}
		}
	}
}

func TestLogMixConst(t *testing.T) {
	rng := rand.New(rand.NewPCG(23, 24))
	impls := []struct {
		name string
		f    func(dst, z, e []float32, pc, cq, a, b float32) (float64, float64)
	}{{"dispatch", LogMixConst}, {"go", logMixConstGo}}
	impls = append(impls, archLogMixConst()...)
	for _, im := range impls {
		for _, n := range rowLengths {
			z := randRow(rng, n, 3)
			e := make([]float32, n)
			for i := range e {
				e[i] = float32(math.Exp(rng.NormFloat64()*4 - 3))
			}
			for _, pc := range []float32{0.01, 0} {
				e[n-1] = 0 // with pc = 0, m = 0: log raised to the smallest normal
				const cq, a, b = 0.02, 0.5, 1.25
				dst := make([]float32, n)
				sl, ds := im.f(dst, z, e, pc, cq, a, b)
				var wsl, wds, asl, ads float64
				for i := range z {
					lm := math.Log(max(float64(pc)+float64(cq)*float64(e[i]), 0x1p-126))
					wsl += lm
					asl += math.Abs(lm)
					want := float64(e[i]) * (float64(a)*float64(z[i]) - b - lm)
					scale := float64(e[i]) * (math.Abs(float64(a)*float64(z[i])) + b + math.Abs(lm))
					wds += want
					ads += scale
					if math.Abs(float64(dst[i])-want) > 1e-6*scale+1e-37 {
						t.Fatalf("%s LogMixConst n=%d pc=%v: dst[%d] = %v; want %v", im.name, n, pc, i, dst[i], want)
					}
				}
				if math.Abs(sl-wsl) > 1e-6*asl || math.Abs(ds-wds) > 1e-6*ads {
					t.Errorf("%s LogMixConst(n=%d, pc=%v) = %v, %v; want %v, %v", im.name, n, pc, sl, ds, wsl, wds)
				}
				zz := append([]float32(nil), z...)
				if sl2, ds2 := im.f(zz, zz, e, pc, cq, a, b); sl2 != sl || ds2 != ds || !slicesEqualF(zz, dst) {
					t.Errorf("%s LogMixConst in place n=%d = %v, %v; want %v, %v", im.name, n, sl2, ds2, sl, ds)
				}
			}
		}
	}
}

func slicesEqualF(a, b []float32) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if math.Float32bits(a[i]) != math.Float32bits(b[i]) {
			return false
		}
	}
	return true
}

func TestMulDiff(t *testing.T) {
	rng := rand.New(rand.NewPCG(15, 16))
	for _, im := range distillImpls {
		for _, n := range rowLengths {
			y, e, x := randRow(rng, n, 5), randRow(rng, n, 1), randRow(rng, n, 5)
			const alpha, a, b, c, d, s = 0.7, 0.5, 3.5, 1.5, -2.25, 0.375
			got := append([]float32(nil), y...)
			im.mulDiff(got, e, x, alpha, a, b, c, d, s)
			for i := range y {
				r := (float64(a)*float64(y[i]) - b) - (float64(c)*float64(x[i]) - d) + s
				w := float64(alpha*e[i]) * float64(float32(r))
				if math.Abs(float64(got[i])-w) > 1e-7*math.Abs(w) {
					t.Fatalf("%s MulDiff n=%d: [%d] = %v; want %v", im.name, n, i, got[i], w)
				}
			}
			// Large arguments that cancel keep the digits of their
			// difference: a*y - b near -c*x + d near 5e4.
			for i := range y {
				y[i] = 51032 + float32(i%5)/8
				x[i] = -float32(i % 3)
			}
			got = append(got[:0], y...)
			im.mulDiff(got, e, x, 1, 1, 0, 1, -51032, -0.0625)
			for i := range y {
				r := float64(y[i]) - (float64(x[i]) + 51032) - 0.0625
				w := float64(e[i]) * float64(float32(r))
				if math.Abs(float64(got[i])-w) > 1e-7*math.Abs(w) {
					t.Fatalf("%s MulDiff with cancellation n=%d: [%d] = %v; want %v", im.name, n, i, got[i], w)
				}
			}
			// x may be y.
			g2 := append([]float32(nil), y...)
			im.mulDiff(g2, e, g2, alpha, a, b, a, b, 0)
			for i := range g2 {
				if g2[i] != 0 {
					t.Fatalf("%s MulDiff with x = y: [%d] = %v; want 0", im.name, i, g2[i])
				}
			}
		}
	}
}

func BenchmarkDistillKernels(b *testing.B) {
	for _, im := range distillImpls {
		const n = 4096
		rng := rand.New(rand.NewPCG(1, 2))
		x, y := randRow(rng, n, 2), randRow(rng, n, 2)
		e := make([]float32, n)
		ExpSum(e, x, 1, 4)
		dst := make([]float32, n)
		run := func(name string, f func()) {
			b.Run(fmt.Sprintf("%s/%s/n=%d", name, im.name, n), func(b *testing.B) {
				b.SetBytes(4 * n)
				for b.Loop() {
					f()
				}
			})
		}
		run("ExpDiffDot", func() { im.expDiffDot(dst, x, y, 1, 4, 1, 3) })
		run("LogMixDot", func() { im.logMixDot(dst, x, e, e, 0.5, 0.5, 1, 4) })
		run("MulDiff", func() { copy(dst, y); im.mulDiff(dst, e, x, 0.5, 1, 4, 1, 3, 0.5) })
	}
}
