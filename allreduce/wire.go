package allreduce

import (
	"encoding/binary"
	"fmt"
	"math"
	"unsafe"
)

// The envelope of a ring message is one msgpack array of nine elements:
//
//	[run str, epoch uint, step uint, phase uint, hop uint, segment uint,
//	 part uint, sender uint, data bin]
//
// data holds the part's floats as little-endian IEEE 754 bits, 4 bytes each.
// It is what github.com/vmihailenco/msgpack/v5 makes of a struct tagged
// `msgpack:",as_array"` with those fields (the tests check both directions),
// but it is written and read by hand: encoding writes the floats straight
// into the message buffer, and decoding checks every length against the
// bytes it has before it believes it, allocates nothing, and hands back the
// float bytes in place, so a peer's header can never size an allocation.

// msgpack format bytes used by the envelope.
const (
	mpFixArray9 = 0x99
	mpFixStr    = 0xa0 // | len, len < 32
	mpStr8      = 0xd9
	mpStr16     = 0xda
	mpStr32     = 0xdb
	mpBin8      = 0xc4
	mpBin16     = 0xc5
	mpBin32     = 0xc6
	mpUint8     = 0xcc
	mpUint16    = 0xcd
	mpUint32    = 0xce
	mpUint64    = 0xcf
	mpInt8      = 0xd0
	mpInt16     = 0xd1
	mpInt32     = 0xd2
	mpInt64     = 0xd3
)

// envelope is a decoded message. data aliases the message.
type envelope struct {
	run     []byte
	epoch   uint64
	step    uint64
	phase   uint64
	hop     uint64
	segment uint64
	part    uint64
	sender  uint64
	data    []byte
}

// AppendMessage appends to dst the message of part id of h sent by sender
// carrying the floats x. The envelope is padded (by choosing wider msgpack
// encodings of the run id and the phase) so that the floats start at a
// multiple of 4 bytes from the start of the message.
func AppendMessage(dst []byte, h Header, id PartID, sender int, x []float32) []byte {
	dst, b := appendHeader(dst, h, id, sender, 4*len(x))
	putFloats(b, x)
	return dst
}

// appendHeader appends the envelope of a message carrying nb bytes of floats
// and reserves them: it returns the message and its float bytes, to be
// filled by the caller.
func appendHeader(dst []byte, h Header, id PartID, sender int, nb int) (msg, floats []byte) {
	hdr := 1 + strHdrLen(len(h.Run)) + len(h.Run) + uintLen(h.Epoch) + uintLen(h.Step) + uintLen(uint64(id.Phase)) +
		uintLen(uint64(id.Hop)) + uintLen(uint64(id.Segment)) + uintLen(uint64(id.Part)) + uintLen(uint64(sender)) + binHdrLen(nb)
	pad := (4 - hdr%4) % 4
	dst = append(dst, mpFixArray9)
	switch n := len(h.Run); {
	case n < 32 && pad&1 == 0:
		dst = append(dst, mpFixStr|byte(n))
	case n < 32 || n <= math.MaxUint8 && pad&1 == 0:
		dst = append(dst, mpStr8, byte(n))
	default:
		dst = append(dst, mpStr16, byte(n>>8), byte(n))
	}
	dst = append(dst, h.Run...)
	dst = appendUint(dst, h.Epoch)
	dst = appendUint(dst, h.Step)
	if pad&2 != 0 && id.Phase < 128 {
		dst = append(dst, mpUint16, 0, byte(id.Phase))
	} else {
		dst = appendUint(dst, uint64(id.Phase))
	}
	dst = appendUint(dst, uint64(id.Hop))
	dst = appendUint(dst, uint64(id.Segment))
	dst = appendUint(dst, uint64(id.Part))
	dst = appendUint(dst, uint64(sender))
	switch {
	case nb <= math.MaxUint8:
		dst = append(dst, mpBin8, byte(nb))
	case nb <= math.MaxUint16:
		dst = append(dst, mpBin16, byte(nb>>8), byte(nb))
	default:
		dst = append(dst, mpBin32, byte(nb>>24), byte(nb>>16), byte(nb>>8), byte(nb))
	}
	o := len(dst)
	if cap(dst)-o >= nb {
		dst = dst[:o+nb]
	} else {
		dst = append(dst, make([]byte, nb)...)
	}
	return dst, dst[o : o+nb : o+nb]
}

func strHdrLen(n int) int {
	switch {
	case n < 32:
		return 1
	case n <= math.MaxUint8:
		return 2
	}
	return 3
}

func binHdrLen(n int) int {
	switch {
	case n <= math.MaxUint8:
		return 2
	case n <= math.MaxUint16:
		return 3
	}
	return 5
}

func uintLen(v uint64) int {
	switch {
	case v < 128:
		return 1
	case v <= math.MaxUint8:
		return 2
	case v <= math.MaxUint16:
		return 3
	case v <= math.MaxUint32:
		return 5
	}
	return 9
}

// floatView returns b as a []float32 sharing its memory when that is exact
// and safe (a little-endian machine and b 4-byte aligned), else nil.
func floatView(b []byte) []float32 {
	if len(b) == 0 || binary.NativeEndian.Uint16([]byte{1, 0}) != 1 || uintptr(unsafe.Pointer(&b[0]))%4 != 0 {
		return nil
	}
	return unsafe.Slice((*float32)(unsafe.Pointer(&b[0])), len(b)/4)
}

// byteView returns the bytes of x, its little-endian floats on a
// little-endian machine, else nil.
func byteView(x []float32) []byte {
	if len(x) == 0 || binary.NativeEndian.Uint16([]byte{1, 0}) != 1 {
		return nil
	}
	return unsafe.Slice((*byte)(unsafe.Pointer(&x[0])), 4*len(x))
}

func appendUint(dst []byte, v uint64) []byte {
	switch {
	case v < 128:
		return append(dst, byte(v))
	case v <= math.MaxUint8:
		return append(dst, mpUint8, byte(v))
	case v <= math.MaxUint16:
		return append(dst, mpUint16, byte(v>>8), byte(v))
	case v <= math.MaxUint32:
		return append(dst, mpUint32, byte(v>>24), byte(v>>16), byte(v>>8), byte(v))
	}
	return append(dst, mpUint64, byte(v>>56), byte(v>>48), byte(v>>40), byte(v>>32), byte(v>>24), byte(v>>16), byte(v>>8), byte(v))
}

// decodeEnvelope parses b into e. Slices in e alias b. Any msgpack encoding
// of the fields is accepted (non-negative ints for uints, str or bin for the
// run id); anything else, or trailing bytes, wraps ErrMalformed.
func decodeEnvelope(b []byte, e *envelope) error {
	if len(b) < 1 || b[0] != mpFixArray9 {
		if len(b) >= 3 && b[0] == 0xdc && b[1] == 0 && b[2] == 9 {
			b = b[2:] // array16 of 9
		} else if len(b) >= 5 && b[0] == 0xdd && b[1] == 0 && b[2] == 0 && b[3] == 0 && b[4] == 9 {
			b = b[4:] // array32 of 9
		} else {
			return fmt.Errorf("%w: not an array of 9", ErrMalformed)
		}
	}
	b = b[1:]
	var err error
	if e.run, b, err = readBytes(b, "run"); err != nil {
		return err
	}
	for _, f := range [...]struct {
		p    *uint64
		name string
	}{{&e.epoch, "epoch"}, {&e.step, "step"}, {&e.phase, "phase"}, {&e.hop, "hop"}, {&e.segment, "segment"}, {&e.part, "part"}, {&e.sender, "sender"}} {
		if *f.p, b, err = readUint(b, f.name); err != nil {
			return err
		}
	}
	if e.data, b, err = readBytes(b, "data"); err != nil {
		return err
	}
	if len(b) != 0 {
		return fmt.Errorf("%w: %d trailing bytes", ErrMalformed, len(b))
	}
	return nil
}

// readBytes reads a str or bin, checking its length against len(b).
func readBytes(b []byte, field string) (v, rest []byte, err error) {
	if len(b) == 0 {
		return nil, nil, fmt.Errorf("%w: %s: truncated", ErrMalformed, field)
	}
	c := b[0]
	var n, h int
	switch {
	case c&0xe0 == mpFixStr:
		n, h = int(c&0x1f), 1
	case c == mpStr8 || c == mpBin8:
		if len(b) < 2 {
			return nil, nil, fmt.Errorf("%w: %s: truncated", ErrMalformed, field)
		}
		n, h = int(b[1]), 2
	case c == mpStr16 || c == mpBin16:
		if len(b) < 3 {
			return nil, nil, fmt.Errorf("%w: %s: truncated", ErrMalformed, field)
		}
		n, h = int(binary.BigEndian.Uint16(b[1:])), 3
	case c == mpStr32 || c == mpBin32:
		if len(b) < 5 {
			return nil, nil, fmt.Errorf("%w: %s: truncated", ErrMalformed, field)
		}
		u := binary.BigEndian.Uint32(b[1:])
		if uint64(u) > uint64(len(b)) {
			return nil, nil, fmt.Errorf("%w: %s: length %d exceeds the %d bytes left", ErrMalformed, field, u, len(b))
		}
		n, h = int(u), 5
	default:
		return nil, nil, fmt.Errorf("%w: %s: format byte 0x%02x is not str or bin", ErrMalformed, field, c)
	}
	if n > len(b)-h {
		return nil, nil, fmt.Errorf("%w: %s: length %d exceeds the %d bytes left", ErrMalformed, field, n, len(b)-h)
	}
	return b[h : h+n : h+n], b[h+n:], nil
}

// readUint reads a non-negative msgpack integer.
func readUint(b []byte, field string) (v uint64, rest []byte, err error) {
	if len(b) == 0 {
		return 0, nil, fmt.Errorf("%w: %s: truncated", ErrMalformed, field)
	}
	c := b[0]
	if c < 0x80 {
		return uint64(c), b[1:], nil
	}
	var w int
	signed := false
	switch c {
	case mpUint8:
		w = 1
	case mpUint16:
		w = 2
	case mpUint32:
		w = 4
	case mpUint64:
		w = 8
	case mpInt8:
		w, signed = 1, true
	case mpInt16:
		w, signed = 2, true
	case mpInt32:
		w, signed = 4, true
	case mpInt64:
		w, signed = 8, true
	default:
		return 0, nil, fmt.Errorf("%w: %s: format byte 0x%02x is not an unsigned integer", ErrMalformed, field, c)
	}
	if len(b) < 1+w {
		return 0, nil, fmt.Errorf("%w: %s: truncated", ErrMalformed, field)
	}
	for _, x := range b[1 : 1+w] {
		v = v<<8 | uint64(x)
	}
	if signed && v>>(8*w-1) != 0 {
		return 0, nil, fmt.Errorf("%w: %s: negative", ErrMalformed, field)
	}
	return v, b[1+w:], nil
}

// putFloats writes x into b as little-endian floats; len(b) must be 4*len(x).
func putFloats(b []byte, x []float32) {
	b = b[:4*len(x)]
	if xb := byteView(x); xb != nil {
		copy(b, xb) // any alignment of b
		return
	}
	for i, v := range x {
		binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(v))
	}
}

// sumFloats writes x + in into out, in and out little-endian float bytes;
// len(in) and len(out) must be 4*len(x). The sums are those addFloats would
// compute, bit for bit.
func sumFloats(out []byte, x []float32, in []byte) {
	out, in = out[:4*len(x)], in[:4*len(x)]
	if fo, fi := floatView(out), floatView(in); fo != nil && fi != nil {
		sum32(fo, x, fi)
		return
	}
	for i, v := range x {
		binary.LittleEndian.PutUint32(out[4*i:], math.Float32bits(v+math.Float32frombits(binary.LittleEndian.Uint32(in[4*i:]))))
	}
}

// addFloats adds the little-endian floats in b into dst; copyFloats copies
// them. len(b) must be 4*len(dst).
func addFloats(dst []float32, b []byte) {
	b = b[:4*len(dst)]
	if f := floatView(b); f != nil {
		add32(dst, f)
		return
	}
	for i := range dst {
		dst[i] += math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:]))
	}
}

func copyFloats(dst []float32, b []byte) {
	b = b[:4*len(dst)]
	if db := byteView(dst); db != nil {
		copy(db, b) // any alignment of b
		return
	}
	for i := range dst {
		dst[i] = math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:]))
	}
}

// sum32 sets out[i] = x[i] + y[i]; add32 adds y into dst. Unrolled by 8 (the
// compiler does not vectorize): each element is one float32 addition, as in
// the plain loop, so the results are bit-identical to it.
func sum32(out, x, y []float32) {
	n := len(out)
	x, y = x[:n], y[:n]
	i := 0
	for ; i+8 <= n; i += 8 {
		o, a, b := (*[8]float32)(out[i:]), (*[8]float32)(x[i:]), (*[8]float32)(y[i:])
		o[0] = a[0] + b[0]
		o[1] = a[1] + b[1]
		o[2] = a[2] + b[2]
		o[3] = a[3] + b[3]
		o[4] = a[4] + b[4]
		o[5] = a[5] + b[5]
		o[6] = a[6] + b[6]
		o[7] = a[7] + b[7]
	}
	for ; i < n; i++ {
		out[i] = x[i] + y[i]
	}
}

func add32(dst, y []float32) {
	n := len(dst)
	y = y[:n]
	i := 0
	for ; i+8 <= n; i += 8 {
		d, b := (*[8]float32)(dst[i:]), (*[8]float32)(y[i:])
		d[0] += b[0]
		d[1] += b[1]
		d[2] += b[2]
		d[3] += b[3]
		d[4] += b[4]
		d[5] += b[5]
		d[6] += b[6]
		d[7] += b[7]
	}
	for ; i < n; i++ {
		dst[i] += y[i]
	}
}
