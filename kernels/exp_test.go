package kernels

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
	"unsafe"
)

// rowImpl is one implementation of the row kernels: the dispatching one
// (assembly where the CPU has it) and the portable Go one.
type rowImpl struct {
	name       string
	maxMinSum  func(x []float32) (float32, float32, float64)
	expSum     func(dst, x []float32, a, b float32) float64
	xLogXDot   func(x, y []float32) (float64, float64, float64, float32)
	scaleShift func(x []float32, alpha, beta float32)
	axpby      func(alpha float32, x []float32, beta float32, y []float32)
}

var rowImpls = append([]rowImpl{
	{"dispatch", MaxMinSum, ExpSum, XLogXDot, ScaleShift, Axpby},
	{"go", maxMinSumGo, expSumGo, xLogXDotGo, scaleShiftGo, axpbyGo},
}, archRowImpls()...)

// Lengths around the assembly's blocks of 16.
var rowLengths = []int{1, 2, 7, 15, 16, 17, 31, 32, 33, 100, 257, 4096, 4099}

func relErr(got, want float64) float64 {
	if got == want {
		return 0
	}
	return math.Abs(got-want) / math.Abs(want)
}

func TestExpGoAccuracy(t *testing.T) {
	worst := 0.0
	for x := float32(-87.3); x <= 88; x += 0.000731 * max(1, float32(math.Abs(float64(x)))) {
		got, want := float64(expGo(x)), math.Exp(float64(x))
		if e := relErr(got, want); e > worst {
			worst = e
		}
	}
	if worst > 2.5e-7 {
		t.Errorf("expGo: worst relative error %.3g; want <= 2.5e-7 (2 ulp)", worst)
	}
	for _, x := range []float32{-87.34, -100, float32(math.Inf(-1))} {
		if got := expGo(x); got != 0 {
			t.Errorf("expGo(%v) = %v; want 0", x, got)
		}
	}
	if got := expGo(float32(math.NaN())); got == got {
		t.Errorf("expGo(NaN) = %v; want NaN", got)
	}
}

func TestLogGoAccuracy(t *testing.T) {
	for x := float32(1e-37); x < 1e4; x *= 1.0007 {
		got, want := float64(logGo(x)), math.Log(float64(x))
		if math.Abs(got-want) > 1e-7+2.5e-7*math.Abs(want) {
			t.Fatalf("logGo(%v) = %v; want %v", x, got, want)
		}
	}
}

func TestExpSum(t *testing.T) {
	t.Logf("AVX2 row kernels: %v", useAVX2Row())
	rng := rand.New(rand.NewPCG(1, 2))
	for _, im := range rowImpls {
		for _, n := range rowLengths {
			for _, ab := range [][2]float32{{1, 0}, {0.5, 3}, {2.5, -1}} {
				a, b := ab[0], ab[1]
				x := make([]float32, n)
				for i := range x {
					x[i] = float32(rng.NormFloat64() * 10)
					if a*x[i]-b > 85 {
						x[i] = 0 // arguments above 88 are not supported
					}
				}
				x[0] = (b - 100) / a // underflows to 0
				dst := make([]float32, n)
				sum := im.expSum(dst, x, a, b)
				want := 0.0
				for _, v := range dst {
					want += float64(v)
				}
				kept := append([]float32(nil), dst...)
				for i, v := range x {
					arg := math.FMA(float64(a), float64(v), -float64(b))
					w := math.Exp(float64(float32(arg)))
					if arg < -87.34 { // 0, or subnormal
						w = 0
						if dst[i] < 0 || dst[i] > 1.2e-38 {
							t.Fatalf("%s ExpSum: exp(%v) = %v; want 0 or subnormal", im.name, arg, dst[i])
						}
						dst[i] = 0
					}
					if e := relErr(float64(dst[i]), w); e > 3e-7 {
						t.Fatalf("%s ExpSum n=%d a=%v b=%v: dst[%d] = exp(%v) = %v; want %v", im.name, n, a, b, i, arg, dst[i], w)
					}
				}
				dst = kept
				if e := relErr(sum, want); e > 1e-12 {
					t.Errorf("%s ExpSum n=%d: sum = %v; want %v", im.name, n, sum, want)
				}
				// In place gives the same.
				y := append([]float32(nil), x...)
				if s := im.expSum(y, y, a, b); s != sum {
					t.Errorf("%s ExpSum in place n=%d: sum = %v; want %v", im.name, n, s, sum)
				}
				for i := range y {
					if y[i] != dst[i] {
						t.Fatalf("%s ExpSum in place n=%d: [%d] = %v; want %v", im.name, n, i, y[i], dst[i])
					}
				}
			}
		}
	}
}

func TestExpSumNaN(t *testing.T) {
	for _, im := range rowImpls {
		for _, n := range []int{3, 16, 40} {
			for _, at := range []int{0, n - 1} {
				x := make([]float32, n)
				x[at] = float32(math.NaN())
				dst := make([]float32, n)
				if s := im.expSum(dst, x, 1, 0); !math.IsNaN(s) || dst[at] == dst[at] {
					t.Errorf("%s ExpSum with NaN at %d of %d: sum %v, dst %v; want NaN", im.name, at, n, s, dst[at])
				}
			}
		}
	}
}

func TestMaxMinSum(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for _, im := range rowImpls {
		for _, n := range rowLengths {
			x := make([]float32, n)
			for i := range x {
				x[i] = float32(rng.NormFloat64() * 100)
			}
			wmx, wmn, wsum := x[0], x[0], 0.0
			for _, v := range x {
				wmx, wmn, wsum = max(wmx, v), min(wmn, v), wsum+float64(v)
			}
			mx, mn, sum := im.maxMinSum(x)
			if mx != wmx || mn != wmn || relErr(sum, wsum) > 1e-12 {
				t.Errorf("%s MaxMinSum(n=%d) = %v, %v, %v; want %v, %v, %v", im.name, n, mx, mn, sum, wmx, wmn, wsum)
			}
			x[n/2] = float32(math.NaN())
			if _, _, sum := im.maxMinSum(x); !math.IsNaN(sum) {
				t.Errorf("%s MaxMinSum(n=%d with NaN) sum = %v; want NaN", im.name, n, sum)
			}
		}
	}
}

func TestXLogXDot(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	for _, im := range rowImpls {
		for _, n := range rowLengths {
			x, y := make([]float32, n), make([]float32, n)
			for i := range x {
				if rng.IntN(4) > 0 {
					x[i] = float32(math.Exp(rng.NormFloat64()*5 - 5))
				}
				y[i] = float32(rng.NormFloat64() * 3)
			}
			x[n-1] = 1e-40 // subnormal
			var wl, ws, wd, wabs float64
			wmn := x[0]
			for i, v := range x {
				wmn = min(wmn, v)
				ws += float64(v)
				wd += float64(v) * float64(y[i])
				if v > 0 {
					wl += float64(v) * math.Log(float64(v))
					wabs += math.Abs(float64(v) * math.Log(float64(v)))
				}
			}
			l, s, d, mn := im.xLogXDot(x, y)
			if math.Abs(l-wl) > 1e-30+3e-7*wabs || relErr(s, ws) > 1e-12 || math.Abs(d-wd) > 1e-12*max(1, math.Abs(wd)) || mn != wmn {
				t.Errorf("%s XLogXDot(n=%d) = %v, %v, %v, %v; want %v, %v, %v, %v", im.name, n, l, s, d, mn, wl, ws, wd, wmn)
			}
		}
	}
}

func TestScaleShiftAxpby(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	for _, im := range rowImpls {
		for _, n := range rowLengths {
			x, y := make([]float32, n), make([]float32, n)
			for i := range x {
				x[i], y[i] = float32(rng.NormFloat64()), float32(rng.NormFloat64())
			}
			got := append([]float32(nil), x...)
			im.scaleShift(got, 0.3, -0.7)
			for i, v := range x {
				if w := 0.3*float64(v) - 0.7; math.Abs(float64(got[i])-w) > 1e-7*max(1, math.Abs(w)) {
					t.Fatalf("%s ScaleShift n=%d: [%d] = %v; want %v", im.name, n, i, got[i], w)
				}
			}
			got = append(got[:0], y...)
			im.axpby(1.5, x, -0.25, got)
			for i := range x {
				if w := 1.5*float64(x[i]) - 0.25*float64(y[i]); math.Abs(float64(got[i])-w) > 2e-7*max(1, math.Abs(w)) {
					t.Fatalf("%s Axpby n=%d: [%d] = %v; want %v", im.name, n, i, got[i], w)
				}
			}
		}
	}
}

func BenchmarkRowKernels(b *testing.B) {
	for _, im := range rowImpls {
		const n = 4096
		x, y := make([]float32, n), make([]float32, n)
		for i := range x {
			x[i], y[i] = float32(i%97)/97-1, 1.0/n
		}
		dst := make([]float32, n)
		run := func(name string, f func()) {
			b.Run(fmt.Sprintf("%s/%s/n=%d", name, im.name, n), func(b *testing.B) {
				b.SetBytes(4 * n)
				for b.Loop() {
					f()
				}
			})
		}
		run("ExpSum", func() { im.expSum(dst, x, 1, 0) })
		run("MaxMinSum", func() { im.maxMinSum(x) })
		run("XLogXDot", func() { im.xLogXDot(y, x) })
		run("Axpby", func() { im.axpby(1, y, 0.5, dst) })
	}
}

func TestLogDotMulShift(t *testing.T) {
	rng := rand.New(rand.NewPCG(9, 10))
	type impl struct {
		name     string
		log      func(dst, x []float32)
		dot      func(x, y []float32) float64
		mulShift func(y, x []float32, alpha, beta float32)
	}
	impls := []impl{{"dispatch", Log, Dot, MulShift}, {"go", logRowGo, dotGo, mulShiftGo}}
	for _, f := range archLogs() {
		impls = append(impls, impl{f.name, f.log, Dot, MulShift})
	}
	for _, im := range impls {
		for _, n := range rowLengths {
			x, y := make([]float32, n), make([]float32, n)
			for i := range x {
				x[i] = float32(math.Exp(rng.NormFloat64() * 20))
				y[i] = float32(rng.NormFloat64())
			}
			x[0] = 0
			dst := make([]float32, n)
			im.log(dst, x)
			for i, v := range x {
				want := math.Log(max(float64(v), 0x1p-126))
				if math.Abs(float64(dst[i])-want) > 1e-7+2.5e-7*math.Abs(want) {
					t.Fatalf("%s Log n=%d: log(%v) = %v; want %v", im.name, n, v, dst[i], want)
				}
			}
			want := 0.0
			for i := range x {
				want += float64(x[i]) * float64(y[i])
			}
			if got := im.dot(x, y); relErr(got, want) > 1e-12 {
				t.Errorf("%s Dot n=%d = %v; want %v", im.name, n, got, want)
			}
			got := append([]float32(nil), y...)
			im.mulShift(got, x, 0.5, -2)
			for i := range got {
				w := 0.5 * float64(y[i]) * (float64(x[i]) - 2)
				if math.Abs(float64(got[i])-w) > 3e-7*math.Abs(w)+1e-30 && relErr(float64(got[i]), w) > 1e-6 {
					t.Fatalf("%s MulShift n=%d: [%d] = %v; want %v", im.name, n, i, got[i], w)
				}
			}
		}
	}
}

// alignedAt returns n floats of a fresh buffer starting off floats past a
// 64-byte boundary.
func alignedAt(n, off int) []float32 {
	buf := make([]float32, n+off+16)
	i := 0
	for uintptr(unsafe.Pointer(&buf[i]))%64 != 0 {
		i++
	}
	return buf[i+off : i+off+n]
}

// TestExpSumStream: ExpSumStream writes what ExpSum writes, bit for bit, on
// aligned and misaligned dst (streamed or not), in place too, with its sum
// within its float32 lanes' rounding, and NaN propagates.
func TestExpSumStream(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	for _, n := range rowLengths {
		for _, off := range []int{0, 1, 8, 16} {
			a, b := float32(1), float32(rng.NormFloat64())
			x := make([]float32, n)
			for i := range x {
				x[i] = float32(rng.NormFloat64()*3) + b
			}
			x[0] = b - 100 // underflows to 0
			want := make([]float32, n)
			ExpSum(want, x, a, b)
			dst := alignedAt(n, off)
			sum := ExpSumStream(dst, x, a, b)
			StreamFence()
			exact := 0.0
			for i := range dst {
				if dst[i] != want[i] {
					t.Fatalf("ExpSumStream n=%d off=%d: [%d] = %v; want %v", n, off, i, dst[i], want[i])
				}
				exact += float64(dst[i])
			}
			if e := relErr(sum, exact); e > 1e-6*max(1, float64(n)/256) {
				t.Errorf("ExpSumStream n=%d off=%d: sum = %v; want %v (relative error %.3g)", n, off, sum, exact, e)
			}
			y := alignedAt(n, off)
			copy(y, x)
			if s := ExpSumStream(y, y, a, b); s != sum {
				t.Errorf("ExpSumStream in place n=%d off=%d: sum = %v; want %v", n, off, s, sum)
			}
			StreamFence()
			for i := range y {
				if y[i] != want[i] {
					t.Fatalf("ExpSumStream in place n=%d off=%d: [%d] = %v; want %v", n, off, i, y[i], want[i])
				}
			}
			x[n-1] = float32(math.NaN())
			if s := ExpSumStream(dst, x, a, b); !math.IsNaN(s) {
				t.Errorf("ExpSumStream with NaN, n=%d off=%d: sum %v; want NaN", n, off, s)
			}
		}
	}
}
