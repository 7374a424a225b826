package teacherstore

import "math"

// halfFromFloat32 rounds f to the nearest IEEE 754 binary16 (ties to even).
// Values beyond the largest half become infinity; NaN stays NaN.
func halfFromFloat32(f float32) uint16 {
	b := math.Float32bits(f)
	sign := uint16(b>>16) & 0x8000
	exp := int((b >> 23) & 0xff)
	man := b & 0x7fffff
	switch {
	case exp == 0xff: // Inf or NaN
		if man != 0 {
			return sign | 0x7e00
		}
		return sign | 0x7c00
	case exp > 127+15: // overflow
		return sign | 0x7c00
	case exp >= 127-14: // normal half
		e := uint32(exp-127+15) << 10
		m := man >> 13
		rest := man & 0x1fff
		h := e | m
		if rest > 0x1000 || rest == 0x1000 && h&1 == 1 {
			h++ // may carry into the exponent, up to infinity: still right
		}
		return sign | uint16(h)
	case exp >= 127-25: // subnormal half (or rounds up to the smallest normal)
		man |= 0x800000 // the implicit bit
		shift := uint32(126 - 14 - exp + 13 + 1)
		// value = man * 2^(exp-127-23); a half subnormal is m * 2^-24.
		m := man >> shift
		rest := man & (1<<shift - 1)
		half := uint32(1) << (shift - 1)
		if rest > half || rest == half && m&1 == 1 {
			m++
		}
		return sign | uint16(m)
	}
	return sign // underflows to (signed) zero
}

// halfToFloat32 is the float32 of the binary16 h (exact).
func halfToFloat32(h uint16) float32 {
	sign := uint32(h&0x8000) << 16
	exp := uint32(h>>10) & 0x1f
	man := uint32(h) & 0x3ff
	switch {
	case exp == 0x1f:
		return math.Float32frombits(sign | 0x7f800000 | man<<13)
	case exp != 0:
		return math.Float32frombits(sign | (exp+127-15)<<23 | man<<13)
	case man == 0:
		return math.Float32frombits(sign)
	}
	// Subnormal: m * 2^-24.
	return math.Float32frombits(sign) + float32(man)*(1.0/(1<<24))*signOne(sign)
}

func signOne(sign uint32) float32 {
	if sign != 0 {
		return -1
	}
	return 1
}
