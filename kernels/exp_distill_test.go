package kernels

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
)

// distillImpl is one implementation of the kernels of exp_distill.go.
type distillImpl struct {
	name      string
	expDot2   func(dst, x, y, w []float32, a, b float32) (float64, float64, float64)
	logMixDot func(dst, z, p, e []float32, cp, cq, a, b float32) (float64, float64)
	mulDiff   func(y, e, x []float32, alpha, a, b, c, d, s float32)
	nextAbove func(x []float32, from int, thr float32) int
}

var distillImpls = append([]distillImpl{
	{"dispatch",
		func(dst, x, y, w []float32, a, b float32) (float64, float64, float64) {
			return ExpDot2(dst, x, y, w, a, b, nil)
		},
		LogMixDot, MulDiff, NextAbove},
	{"go", expDot2Go, logMixDotGo, mulDiffGo, nextAboveGo},
}, archDistillImpls()...)

func randRow(rng *rand.Rand, n int, scale float64) []float32 {
	x := make([]float32, n)
	for i := range x {
		x[i] = float32(rng.NormFloat64() * scale)
	}
	return x
}

func TestExpDot2(t *testing.T) {
	rng := rand.New(rand.NewPCG(11, 12))
	for _, im := range distillImpls {
		for _, n := range rowLengths {
			for _, ab := range [][2]float32{{1, 0}, {0.5, 3}, {2.5, -1}} {
				a, b := ab[0], ab[1]
				x, y, w := randRow(rng, n, 10), randRow(rng, n, 3), randRow(rng, n, 100)
				for i := range x {
					if a*x[i]-b > 85 {
						x[i] = 0
					}
				}
				x[0] = (b - 100) / a // underflows
				dst := make([]float32, n)
				s, dy, dw := im.expDot2(dst, x, y, w, a, b)
				var ws, wy, ww, ay, aw float64
				for i, v := range x {
					arg := math.FMA(float64(a), float64(v), -float64(b))
					e := math.Exp(float64(float32(arg)))
					if arg < -87.34 {
						if dst[i] < 0 || dst[i] > 1.2e-38 {
							t.Fatalf("%s ExpDot2: exp(%v) = %v; want 0 or subnormal", im.name, arg, dst[i])
						}
						e = float64(dst[i])
					} else if relErr(float64(dst[i]), e) > 3e-7 {
						t.Fatalf("%s ExpDot2 n=%d: dst[%d] = exp(%v) = %v; want %v", im.name, n, i, arg, dst[i], e)
					}
					ws += e
					wy += e * float64(y[i])
					ww += e * float64(w[i])
					ay += math.Abs(e * float64(y[i]))
					aw += math.Abs(e * float64(w[i]))
				}
				if relErr(s, ws) > 3e-7 || math.Abs(dy-wy) > 3e-7*ay+1e-300 || math.Abs(dw-ww) > 3e-7*aw+1e-300 {
					t.Errorf("%s ExpDot2(n=%d, a=%v, b=%v) = %v, %v, %v; want %v, %v, %v", im.name, n, a, b, s, dy, dw, ws, wy, ww)
				}
				// The sums are those of the stored values, exactly but for
				// float64 rounding.
				var gs, gy, gw float64
				for i, e := range dst {
					gs += float64(e)
					gy += float64(e) * float64(y[i])
					gw += float64(e) * float64(w[i])
				}
				if relErr(s, gs) > 1e-12 || math.Abs(dy-gy) > 1e-12*ay || math.Abs(dw-gw) > 1e-12*aw {
					t.Errorf("%s ExpDot2(n=%d): sums %v, %v, %v; the stored values give %v, %v, %v", im.name, n, s, dy, dw, gs, gy, gw)
				}
				// In place, with y and w aliasing dst too: the same results.
				z := append([]float32(nil), x...)
				if s2, dy2, dw2 := im.expDot2(z, z, z, z, a, b); s2 != s {
					t.Errorf("%s ExpDot2 in place n=%d: sum %v; want %v", im.name, n, s2, s)
				} else {
					var wy2 float64
					for i := range x {
						wy2 += float64(dst[i]) * float64(x[i])
					}
					if math.Abs(dy2-wy2) > 1e-12*math.Abs(wy2)+1e-300 || dy2 != dw2 {
						t.Errorf("%s ExpDot2 in place n=%d: dy %v, dw %v; want %v", im.name, n, dy2, dw2, wy2)
					}
				}
				for i := range z {
					if z[i] != dst[i] {
						t.Fatalf("%s ExpDot2 in place n=%d: [%d] = %v; want %v", im.name, n, i, z[i], dst[i])
					}
				}
			}
		}
	}
}

func TestExpDot2NaN(t *testing.T) {
	for _, im := range distillImpls {
		for _, n := range []int{3, 16, 40} {
			for _, at := range []int{0, n - 1} {
				x := make([]float32, n)
				x[at] = float32(math.NaN())
				dst := make([]float32, n)
				if s, _, _ := im.expDot2(dst, x, x, x, 1, 0); !math.IsNaN(s) || dst[at] == dst[at] {
					t.Errorf("%s ExpDot2 with NaN at %d of %d: sum %v, dst %v; want NaN", im.name, at, n, s, dst[at])
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
			pl, el := im.logMixDot(dst, z, p, e, cp, cq, a, b)
			var wpl, wel, apl, ael float64
			for i := range z {
				m := float64(cp)*float64(p[i]) + float64(cq)*float64(e[i])
				lm := math.Log(max(m, 0x1p-126))
				wpl += float64(p[i]) * lm
				wel += float64(e[i]) * lm
				apl += math.Abs(float64(p[i]) * lm)
				ael += math.Abs(float64(e[i]) * lm)
				want := float64(e[i]) * (float64(a)*float64(z[i]) - b - lm)
				scale := float64(e[i]) * (math.Abs(float64(a)*float64(z[i])) + b + math.Abs(lm))
				if math.Abs(float64(dst[i])-want) > 1e-6*scale+1e-37 {
					t.Fatalf("%s LogMixDot n=%d: dst[%d] = %v; want %v", im.name, n, i, dst[i], want)
				}
			}
			if math.Abs(pl-wpl) > 1e-6*apl || math.Abs(el-wel) > 1e-6*ael {
				t.Errorf("%s LogMixDot(n=%d) = %v, %v; want %v, %v", im.name, n, pl, el, wpl, wel)
			}
			// dst may be z, or e.
			for _, alias := range []string{"z", "e"} {
				zz, ee := append([]float32(nil), z...), append([]float32(nil), e...)
				out := zz
				if alias == "e" {
					out = ee
				}
				pl2, el2 := im.logMixDot(out, zz, p, ee, cp, cq, a, b)
				if pl2 != pl || el2 != el {
					t.Errorf("%s LogMixDot into %s n=%d = %v, %v; want %v, %v", im.name, alias, n, pl2, el2, pl, el)
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

func TestMulDiff(t *testing.T) {
	rng := rand.New(rand.NewPCG(15, 16))
	for _, im := range distillImpls {
		for _, n := range rowLengths {
			y, e, x := randRow(rng, n, 5), randRow(rng, n, 1), randRow(rng, n, 5)
			const alpha, a, b, c, d, s = 0.7, 0.5, 3.5, 1.5, -2.25, 0.375
			got := append([]float32(nil), y...)
			im.mulDiff(got, e, x, alpha, a, b, c, d, s)
			for i := range y {
				u := float64(a)*float64(y[i]) - b
				v := float64(c)*float64(x[i]) - d
				w := alpha * float64(e[i]) * (u - v + s)
				scale := math.Abs(alpha*float64(e[i])) * (math.Abs(u) + math.Abs(v) + s)
				if math.Abs(float64(got[i])-w) > 3e-7*scale {
					t.Fatalf("%s MulDiff n=%d: [%d] = %v; want %v", im.name, n, i, got[i], w)
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

func TestNextAbove(t *testing.T) {
	rng := rand.New(rand.NewPCG(17, 18))
	for _, im := range distillImpls {
		for _, n := range rowLengths {
			x := randRow(rng, n, 1)
			if n > 3 {
				x[n/2] = float32(math.NaN())
			}
			for _, thr := range []float32{-10, 0, 1.5, 2.5, 10, float32(math.Inf(-1))} {
				for from := 0; from <= n; from += 1 + from/3 {
					want := n
					for i := from; i < n; i++ {
						if x[i] > thr {
							want = i
							break
						}
					}
					if got := im.nextAbove(x, from, thr); got != want {
						t.Fatalf("%s NextAbove(n=%d, from %d, thr %v) = %d; want %d", im.name, n, from, thr, got, want)
					}
				}
			}
		}
	}
}

func BenchmarkDistillKernels(b *testing.B) {
	for _, im := range distillImpls {
		const n = 4096
		rng := rand.New(rand.NewPCG(1, 2))
		x, y, w := randRow(rng, n, 2), randRow(rng, n, 2), randRow(rng, n, 2)
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
		run("ExpDot2", func() { im.expDot2(dst, x, y, w, 1, 4) })
		run("LogMixDot", func() { im.logMixDot(dst, x, e, e, 0.5, 0.5, 1, 4) })
		run("MulDiff", func() { copy(dst, y); im.mulDiff(dst, e, x, 0.5, 1, 4, 1, 3, 0.5) })
		run("NextAbove", func() { im.nextAbove(x, 0, 100) })
	}
}
