package allreduce

import (
	"encoding/binary"
	"fmt"
	"math"
)

// Wire is how the floats of a ring part cross the wire.
type Wire uint8

// The wire encodings. The value is the envelope's wire field.
const (
	// WireF32 sends every float as its 4 bytes of IEEE 754 binary32.
	WireF32 Wire = 0
	// WireBF16 sends every float but the vector's last Options.ExactTail
	// as the 2 bytes of its bfloat16 rounding (BF16); sums are still
	// accumulated in float32.
	WireBF16 Wire = 1
)

func (w Wire) String() string {
	switch w {
	case WireF32:
		return "f32"
	case WireBF16:
		return "bf16"
	}
	return fmt.Sprintf("wire(%d)", uint8(w))
}

// ParseWire parses "f32" or "bf16".
func ParseWire(s string) (Wire, error) {
	switch s {
	case "f32":
		return WireF32, nil
	case "bf16":
		return WireBF16, nil
	}
	return 0, fmt.Errorf("%w: wire %q, want f32 or bf16", ErrBadOptions, s)
}

// BF16 returns the bfloat16 nearest to f (the high 16 bits of a float32),
// rounding ties to even. Infinities stay infinities; a finite f whose
// rounding exceeds bfloat16's largest finite value (3.3895314e38) becomes
// an infinity of its sign, as IEEE 754 rounding does; every NaN becomes the
// quiet NaN 0x7fc0 with f's sign bit, so that a NaN's payload never decides
// the bits on the wire.
func BF16(f float32) uint16 {
	u := math.Float32bits(f)
	if u&0x7fffffff > 0x7f800000 { // NaN
		return uint16(u>>16)&0x8000 | 0x7fc0
	}
	u += 0x7fff + (u>>16)&1 // ties to even; a carry into the exponent is right, up to infinity
	return uint16(u >> 16)
}

// FromBF16 returns the float32 of bfloat16 bits b (exact).
func FromBF16(b uint16) float32 { return math.Float32frombits(uint32(b) << 16) }

// RoundBF16 returns f rounded to bfloat16, as a float32: FromBF16(BF16(f)).
func RoundBF16(f float32) float32 { return FromBF16(BF16(f)) }

// residual is v - r for r = RoundBF16(v), exact in float32, and 0 when
// either is not finite.
func residual(v, r float32) float32 {
	d := v - r
	if d-d != 0 { // NaN or Inf: v or r was not finite
		return 0
	}
	return d
}

// wireBytes is the size of the float bytes of a part of m floats of which
// the first nb travel as bfloat16 (nb is 0 on the f32 wire).
func wireBytes(m, nb int) int { return 2*nb + 4*(m-nb) }

// putBF16 writes x into b: x[:nb] as little-endian bfloat16, x[nb:] as
// little-endian float32. With res not nil (len nb) it stores each rounded
// float's residual.
func putBF16(b []byte, x []float32, nb int, res []float32) {
	b = b[:wireBytes(len(x), nb)]
	for i, v := range x[:nb] {
		h := BF16(v)
		binary.LittleEndian.PutUint16(b[2*i:], h)
		if res != nil {
			res[i] = residual(v, FromBF16(h))
		}
	}
	putFloats(b[2*nb:], x[nb:])
}

// sumBF16 writes x + in into out, both encoded as putBF16 encodes, with the
// additions in float32 and the sums of x[:nb] rounded to bfloat16; res, if
// not nil, receives the rounding residuals.
func sumBF16(out []byte, x []float32, in []byte, nb int, res []float32) {
	n := wireBytes(len(x), nb)
	out, in = out[:n], in[:n]
	for i, v := range x[:nb] {
		s := v + FromBF16(binary.LittleEndian.Uint16(in[2*i:]))
		h := BF16(s)
		binary.LittleEndian.PutUint16(out[2*i:], h)
		if res != nil {
			res[i] = residual(s, FromBF16(h))
		}
	}
	sumFloats(out[2*nb:], x[nb:], in[2*nb:])
}

// addBF16 adds the floats of b (encoded as putBF16 encodes) into dst, in
// float32, and rounds dst[:nb] to bfloat16 precision in place; res, if not
// nil, receives the rounding residuals.
func addBF16(dst []float32, b []byte, nb int, res []float32) {
	b = b[:wireBytes(len(dst), nb)]
	for i := range dst[:nb] {
		s := dst[i] + FromBF16(binary.LittleEndian.Uint16(b[2*i:]))
		r := RoundBF16(s)
		dst[i] = r
		if res != nil {
			res[i] = residual(s, r)
		}
	}
	addFloats(dst[nb:], b[2*nb:])
}

// copyBF16 copies the floats of b (encoded as putBF16 encodes) into dst.
func copyBF16(dst []float32, b []byte, nb int) {
	b = b[:wireBytes(len(dst), nb)]
	for i := range dst[:nb] {
		dst[i] = FromBF16(binary.LittleEndian.Uint16(b[2*i:]))
	}
	copyFloats(dst[nb:], b[2*nb:])
}
