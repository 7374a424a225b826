package msgcheck

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// Format bytes of msgpack (https://github.com/msgpack/msgpack/blob/master/spec.md).
const (
	PosFixIntMax = 0x7f // 0x00-0x7f: positive fixint
	FixMap       = 0x80 // | n, n < 16 pairs
	FixArray     = 0x90 // | n, n < 16 elements
	FixStr       = 0xa0 // | n, n < 32 bytes
	Nil          = 0xc0
	NeverUsed    = 0xc1
	False        = 0xc2
	True         = 0xc3
	Bin8         = 0xc4
	Bin16        = 0xc5
	Bin32        = 0xc6
	Ext8         = 0xc7
	Ext16        = 0xc8
	Ext32        = 0xc9
	Float32      = 0xca
	Float64      = 0xcb
	Uint8        = 0xcc
	Uint16       = 0xcd
	Uint32       = 0xce
	Uint64       = 0xcf
	Int8         = 0xd0
	Int16        = 0xd1
	Int32        = 0xd2
	Int64        = 0xd3
	FixExt1      = 0xd4
	FixExt2      = 0xd5
	FixExt4      = 0xd6
	FixExt8      = 0xd7
	FixExt16     = 0xd8
	Str8         = 0xd9
	Str16        = 0xda
	Str32        = 0xdb
	Array16      = 0xdc
	Array32      = 0xdd
	Map16        = 0xde
	Map32        = 0xdf
	NegFixIntMin = 0xe0 // 0xe0-0xff: negative fixint
)

// MaxDepth is how deeply Check lets values nest: a map in a map is depth 2.
const MaxDepth = 8

// ErrMalformed is wrapped by every error of the package.
var ErrMalformed = errors.New("msgcheck: malformed msgpack")

// Check walks the one msgpack value b holds and checks that every length
// and count in it can be backed by the bytes that follow, that nothing
// nests deeper than MaxDepth, that no byte is NeverUsed and that nothing
// trails the value. It allocates nothing when b is well formed.
func Check(b []byte) error {
	rest, err := skip(b, 0)
	if err != nil {
		return err
	}
	if len(rest) != 0 {
		return fmt.Errorf("%w: %d trailing bytes", ErrMalformed, len(rest))
	}
	return nil
}

// Skip checks one msgpack value at the start of b as Check does, and
// returns the bytes after it.
func Skip(b []byte) (rest []byte, err error) { return skip(b, 0) }

// fixed is the size of the bytes that follow a format byte of fixed width
// (integers, floats, fixext: type byte and data); 0 for the others.
func fixed(c byte) int {
	switch c {
	case Uint8, Int8:
		return 1
	case Uint16, Int16:
		return 2
	case Float32, Uint32, Int32:
		return 4
	case Float64, Uint64, Int64:
		return 8
	case FixExt1:
		return 2
	case FixExt2:
		return 3
	case FixExt4:
		return 5
	case FixExt8:
		return 9
	case FixExt16:
		return 17
	}
	return 0
}

// lengthWidth is the width of the big-endian length or count after a format
// byte that has one; 0 for the others.
func lengthWidth(c byte) int {
	switch c {
	case Bin8, Str8, Ext8:
		return 1
	case Bin16, Str16, Ext16, Array16, Map16:
		return 2
	case Bin32, Str32, Ext32, Array32, Map32:
		return 4
	}
	return 0
}

// readLength reads the w-byte big-endian length at the start of b.
func readLength(b []byte, w int) (n uint64, rest []byte, ok bool) {
	if len(b) < w {
		return 0, nil, false
	}
	switch w {
	case 1:
		n = uint64(b[0])
	case 2:
		n = uint64(binary.BigEndian.Uint16(b))
	case 4:
		n = uint64(binary.BigEndian.Uint32(b))
	}
	return n, b[w:], true
}

func skip(b []byte, depth int) ([]byte, error) {
	if depth > MaxDepth {
		return nil, fmt.Errorf("%w: nested deeper than %d", ErrMalformed, MaxDepth)
	}
	if len(b) == 0 {
		return nil, fmt.Errorf("%w: truncated", ErrMalformed)
	}
	c, b := b[0], b[1:]
	var n uint64 // bytes (str, bin, ext) or elements (array, map) that follow
	per := uint64(0)
	switch {
	case c <= PosFixIntMax || c >= NegFixIntMin || c == Nil || c == False || c == True:
		return b, nil
	case c == NeverUsed:
		return nil, fmt.Errorf("%w: format byte 0x%02x is never used", ErrMalformed, c)
	case c&0xf0 == FixMap:
		n, per = uint64(c&0x0f), 2
	case c&0xf0 == FixArray:
		n, per = uint64(c&0x0f), 1
	case c&0xe0 == FixStr:
		n = uint64(c & 0x1f)
	case fixed(c) > 0:
		if f := fixed(c); f > len(b) {
			return nil, fmt.Errorf("%w: format byte 0x%02x needs %d bytes, %d left", ErrMalformed, c, f, len(b))
		}
		return b[fixed(c):], nil
	default:
		w := lengthWidth(c)
		var ok bool
		if n, b, ok = readLength(b, w); !ok {
			return nil, fmt.Errorf("%w: truncated length of format byte 0x%02x", ErrMalformed, c)
		}
		switch c {
		case Array16, Array32:
			per = 1
		case Map16, Map32:
			per = 2
		case Ext8, Ext16, Ext32:
			n++ // the type byte
		}
	}
	if per == 0 {
		if n > uint64(len(b)) {
			return nil, fmt.Errorf("%w: length %d exceeds the %d bytes left", ErrMalformed, n, len(b))
		}
		return b[n:], nil
	}
	// Every element takes one byte at least.
	if n*per > uint64(len(b)) {
		return nil, fmt.Errorf("%w: count %d exceeds the %d bytes left", ErrMalformed, n, len(b))
	}
	var err error
	for i := uint64(0); i < n*per; i++ {
		if b, err = skip(b, depth+1); err != nil {
			return nil, err
		}
	}
	return b, nil
}

// ReadBytes reads a str or a bin of any width at the start of b and returns
// its bytes (aliasing b, capacity clipped) and the bytes after it. A length
// the bytes left cannot back is an error; nothing is allocated on success.
func ReadBytes(b []byte) (v, rest []byte, err error) {
	if len(b) == 0 {
		return nil, nil, fmt.Errorf("%w: truncated", ErrMalformed)
	}
	c := b[0]
	var n uint64
	h := 1
	switch {
	case c&0xe0 == FixStr:
		n = uint64(c & 0x1f)
	case c == Str8 || c == Bin8 || c == Str16 || c == Bin16 || c == Str32 || c == Bin32:
		w := lengthWidth(c)
		var ok bool
		if n, _, ok = readLength(b[1:], w); !ok {
			return nil, nil, fmt.Errorf("%w: truncated length", ErrMalformed)
		}
		h += w
	default:
		return nil, nil, fmt.Errorf("%w: format byte 0x%02x is not str or bin", ErrMalformed, c)
	}
	if n > uint64(len(b)-h) {
		return nil, nil, fmt.Errorf("%w: length %d exceeds the %d bytes left", ErrMalformed, n, len(b)-h)
	}
	e := h + int(n)
	return b[h:e:e], b[e:], nil
}

// ReadUint reads a non-negative integer of any msgpack width (a positive
// fixint, uint 8 to 64, or a signed int 8 to 64 that is not negative) at the
// start of b.
func ReadUint(b []byte) (v uint64, rest []byte, err error) {
	if len(b) == 0 {
		return 0, nil, fmt.Errorf("%w: truncated", ErrMalformed)
	}
	c := b[0]
	if c <= PosFixIntMax {
		return uint64(c), b[1:], nil
	}
	signed := false
	switch c {
	case Uint8, Uint16, Uint32, Uint64:
	case Int8, Int16, Int32, Int64:
		signed = true
	default:
		return 0, nil, fmt.Errorf("%w: format byte 0x%02x is not an unsigned integer", ErrMalformed, c)
	}
	w := fixed(c)
	if len(b) < 1+w {
		return 0, nil, fmt.Errorf("%w: truncated integer", ErrMalformed)
	}
	for _, x := range b[1 : 1+w] {
		v = v<<8 | uint64(x)
	}
	if signed && v>>(8*w-1) != 0 {
		return 0, nil, fmt.Errorf("%w: negative integer", ErrMalformed)
	}
	return v, b[1+w:], nil
}

// ReadArray reads the header of an array of any width at the start of b and
// returns its count and the bytes after the header. A count the bytes left
// cannot back (one byte per element) is an error.
func ReadArray(b []byte) (n int, rest []byte, err error) {
	if len(b) == 0 {
		return 0, nil, fmt.Errorf("%w: truncated", ErrMalformed)
	}
	c := b[0]
	var m uint64
	switch {
	case c&0xf0 == FixArray:
		m, rest = uint64(c&0x0f), b[1:]
	case c == Array16 || c == Array32:
		var ok bool
		if m, rest, ok = readLength(b[1:], lengthWidth(c)); !ok {
			return 0, nil, fmt.Errorf("%w: truncated array length", ErrMalformed)
		}
	default:
		return 0, nil, fmt.Errorf("%w: format byte 0x%02x is not an array", ErrMalformed, c)
	}
	if m > uint64(len(rest)) {
		return 0, nil, fmt.Errorf("%w: count %d exceeds the %d bytes left", ErrMalformed, m, len(rest))
	}
	return int(m), rest, nil
}
