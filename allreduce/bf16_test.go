package allreduce

import (
	"math"
	"testing"
)

func TestBF16KnownValues(t *testing.T) {
	f := math.Float32frombits
	for _, tc := range []struct {
		name string
		in   float32
		want uint16
	}{
		{"zero", 0, 0x0000},
		{"negative zero", float32(math.Copysign(0, -1)), 0x8000},
		{"one", 1, 0x3f80},
		{"minus two", -2, 0xc000},
		{"pi", math.Pi, 0x4049},                      // 3.140625; 3.1415927 is 0x40490fdb
		{"1/3", 1.0 / 3, 0x3eab},                     // 0x3eaaaaab rounds up
		{"tie to even, down", f(0x3f808000), 0x3f80}, // 1 + 2^-8: halfway, 0x3f80 is even
		{"tie to even, up", f(0x3f818000), 0x3f82},   // halfway between 0x3f81 and 0x3f82
		{"just above a tie", f(0x3f808001), 0x3f81},  // rounds up
		{"just below a tie", f(0x3f807fff), 0x3f80},  // rounds down
		{"negative tie", f(0xbf818000), 0xbf82},      // sign-magnitude: same as positive
		{"carry into the exponent", f(0x3fffffff), 0x4000},
		{"largest bfloat16", f(0x7f7f0000), 0x7f7f},
		{"below the overflow tie", f(0x7f7f7fff), 0x7f7f},
		{"overflow tie to infinity", f(0x7f7f8000), 0x7f80}, // even is the infinity
		{"largest float32 overflows", math.MaxFloat32, 0x7f80},
		{"negative overflow", -math.MaxFloat32, 0xff80},
		{"+Inf", float32(math.Inf(1)), 0x7f80},
		{"-Inf", float32(math.Inf(-1)), 0xff80},
		{"smallest subnormal float32", f(1), 0x0000},
		{"bfloat16 subnormal", f(0x00018000), 0x0002}, // tie between 0x0001 and 0x0002
		{"subnormal rounds to the smallest normal", f(0x007fffff), 0x0080},
		{"quiet NaN", f(0x7fc00000), 0x7fc0},
		{"NaN with a payload in the high bits", f(0x7fa00001), 0x7fc0},
		{"NaN with a payload in the low bits only", f(0x7f800001), 0x7fc0}, // truncation would make it +Inf
		{"NaN whose rounding would carry", f(0x7fffffff), 0x7fc0},
		{"negative NaN", f(0xffc12345), 0xffc0},
	} {
		got := BF16(tc.in)
		if got != tc.want {
			t.Errorf("BF16(%s %08x) = %04x; want %04x", tc.name, math.Float32bits(tc.in), got, tc.want)
		}
		if r := RoundBF16(tc.in); math.Float32bits(r) != uint32(tc.want)<<16 {
			t.Errorf("RoundBF16(%s) = %08x; want %08x", tc.name, math.Float32bits(r), uint32(tc.want)<<16)
		}
	}
}

// TestBF16Exhaustive checks every bfloat16 value round-trips, and the
// rounding of every float32 with a given low half against its neighbours:
// the result is the nearer of the two bfloat16 around it, the even one on a
// tie.
func TestBF16Exhaustive(t *testing.T) {
	for b := range 1 << 16 {
		h := uint16(b)
		v := FromBF16(h)
		if v != v {
			if got := BF16(v); got != h&0x8000|0x7fc0 {
				t.Fatalf("BF16(FromBF16(%04x)) = %04x; want the quiet NaN", h, got)
			}
			continue
		}
		if got := BF16(v); got != h {
			t.Fatalf("BF16(FromBF16(%04x)) = %04x", h, got)
		}
	}
	for hi := uint32(0); hi < 1<<16; hi += 7 {
		if hi&0x7f80 == 0x7f80 {
			continue // Inf and NaN: above
		}
		for _, lo := range []uint32{0, 1, 0x7fff, 0x8000, 0x8001, 0xffff} {
			u := hi<<16 | lo
			got := BF16(math.Float32frombits(u))
			var want uint16
			switch {
			case lo < 0x8000, lo == 0x8000 && hi&1 == 0:
				want = uint16(hi)
			default:
				want = uint16(hi + 1)
			}
			if got != want {
				t.Fatalf("BF16(%08x) = %04x; want %04x", u, got, want)
			}
		}
	}
}

func TestResidual(t *testing.T) {
	for _, v := range []float32{1.0 / 3, -7.0625001, 1e-40, 3e38, 123456.789} {
		r := RoundBF16(v)
		if d := residual(v, r); d+r != v {
			t.Errorf("residual(%v, %v) = %v; want v - r exactly", v, r, d)
		}
	}
	for _, v := range []float32{float32(math.NaN()), float32(math.Inf(1)), math.MaxFloat32} {
		if d := residual(v, RoundBF16(v)); d != 0 {
			t.Errorf("residual of %v = %v; want 0 (not finite)", v, d)
		}
	}
}

func TestParseWire(t *testing.T) {
	for _, w := range []Wire{WireF32, WireBF16} {
		if got, err := ParseWire(w.String()); err != nil || got != w {
			t.Errorf("ParseWire(%q) = %v, %v", w.String(), got, err)
		}
	}
	if _, err := ParseWire("fp16"); err == nil {
		t.Error("ParseWire(fp16) = nil error")
	}
	if err := (Options{ChunkBytes: 1024, Wire: 2}).Validate(); err == nil {
		t.Error("Validate(Wire 2) = nil")
	}
	if err := (Options{ChunkBytes: 1024, Residual: []float32{0}}).Validate(); err == nil {
		t.Error("Validate(a Residual on the f32 wire) = nil")
	}
}

// TestBF16Codec checks the encoders of the bf16 wire against the scalar
// rounding, with an exact tail, on every alignment of the bytes.
func TestBF16Codec(t *testing.T) {
	x := []float32{1.0 / 3, -2.7182817, 1e-39, float32(math.Inf(-1)), 65537, 4099, 123.456}
	y := []float32{1, 1, 1, 1, 1, 1, 1}
	const nb = 5
	for shift := range 4 {
		b := make([]byte, shift+wireBytes(len(x), nb))[shift:]
		res := make([]float32, nb)
		putBF16(b, x, nb, res)
		got := make([]float32, len(x))
		copyBF16(got, b, nb)
		for i := range x {
			want := x[i]
			if i < nb {
				want = RoundBF16(x[i])
				if rd := residual(x[i], want); math.Float32bits(res[i]) != math.Float32bits(rd) {
					t.Errorf("shift %d: residual[%d] = %v; want %v", shift, i, res[i], rd)
				}
			}
			if math.Float32bits(got[i]) != math.Float32bits(want) {
				t.Errorf("shift %d: [%d] = %v; want %v", shift, i, got[i], want)
			}
		}
		// y + decoded x, rounded on the way out.
		out := make([]byte, len(b))
		sumBF16(out, y, b, nb, res)
		sum := make([]float32, len(x))
		copyBF16(sum, out, nb)
		acc := append([]float32(nil), y...)
		addBF16(acc, b, nb, nil)
		for i := range x {
			want := y[i] + got[i]
			if i < nb {
				want = RoundBF16(want)
			}
			if math.Float32bits(sum[i]) != math.Float32bits(want) || math.Float32bits(acc[i]) != math.Float32bits(want) {
				t.Errorf("shift %d: sum [%d] = %v, add %v; want %v", shift, i, sum[i], acc[i], want)
			}
		}
	}
}
