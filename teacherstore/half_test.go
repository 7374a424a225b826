package teacherstore

import (
	"math"
	"math/rand/v2"
	"testing"
)

// Every half converts to a float32 and back to itself (NaNs to a NaN).
func TestHalfRoundTripAll(t *testing.T) {
	for i := range 1 << 16 {
		h := uint16(i)
		f := halfToFloat32(h)
		if math.IsNaN(float64(f)) {
			if g := halfFromFloat32(f); g&0x7c00 != 0x7c00 || g&0x3ff == 0 {
				t.Fatalf("half %#04x: NaN back to %#04x", h, g)
			}
			continue
		}
		if g := halfFromFloat32(f); g != h {
			t.Fatalf("half %#04x -> %v -> %#04x", h, f, g)
		}
	}
}

// halfNearest is the nearest half to f (ties to the even one), by search
// over every finite half, in float64.
func halfNearest(f float32, halves []float64) uint16 {
	x := float64(f)
	lo, hi := 0, len(halves)-1 // halves: the non-negative finite halves, ascending
	ax := math.Abs(x)
	if ax >= 65520 { // halfway between the largest half and 2^16
		return signBits(f) | 0x7c00
	}
	for lo < hi {
		mid := (lo + hi + 1) / 2
		if halves[mid] <= ax {
			lo = mid
		} else {
			hi = mid - 1
		}
	}
	best := lo
	if lo+1 < len(halves) {
		d0, d1 := ax-halves[lo], halves[lo+1]-ax
		if d1 < d0 || d1 == d0 && (lo+1)%2 == 0 {
			best = lo + 1
		}
	}
	return signBits(f) | uint16(best)
}

func signBits(f float32) uint16 {
	if math.Signbit(float64(f)) {
		return 0x8000
	}
	return 0
}

func TestHalfFromFloat32Rounds(t *testing.T) {
	halves := make([]float64, 0x7c00)
	for i := range halves {
		halves[i] = float64(halfToFloat32(uint16(i)))
	}
	rng := rand.New(rand.NewPCG(5, 6))
	check := func(f float32) {
		if got, want := halfFromFloat32(f), halfNearest(f, halves); got != want {
			t.Fatalf("halfFromFloat32(%v (%#08x)) = %#04x; want %#04x", f, math.Float32bits(f), got, want)
		}
	}
	for range 200000 {
		check(math.Float32frombits(rng.Uint32() & 0x7fffffff &^ 0x40000000)) // exponents up to 2^0 and below
		check(float32(rng.Float64()))
		check(-float32(math.Exp(rng.Float64() * -20)))
	}
	// Halfway cases and the edges of the subnormals.
	for i := range 0x7c00 - 1 {
		mid := float32((halves[i] + halves[i+1]) / 2)
		check(mid)
		check(math.Nextafter32(mid, 0))
		check(math.Nextafter32(mid, 1e9))
	}
	for _, f := range []float32{0, 1e-10, 5.9604645e-08, 2.9802322e-08, 2.9802326e-08, 65504, 65519, 65520, 1e9} {
		check(f)
		check(-f)
	}
	if h := halfFromFloat32(float32(math.Inf(1))); h != 0x7c00 {
		t.Errorf("Inf -> %#04x", h)
	}
}
