package allreduce

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"math"
	"slices"
	"unsafe"

	"github.com/klring/klring/msgcheck"
)

// The envelope of a ring message is one msgpack array of eleven elements:
//
//	[run str, epoch uint, step uint, phase uint, hop uint, segment uint,
//	 part uint, sender uint, wire uint, crc uint, data bin]
//
// wire is the encoding of data (Wire): with WireF32, data holds the part's
// floats as little-endian IEEE 754 binary32 bits, 4 bytes each; with
// WireBF16, the part's floats below the vector's exact tail as little-endian
// bfloat16 bits, 2 bytes each, then those of the exact tail (at most
// Options.ExactTail floats, the vector's last) as binary32. A receiver knows
// the part's length and where the tail starts from its Plan and Options, and
// drops a part of another wire or of another byte length.
// crc is the CRC-32C (Castagnoli) of data's bytes, so that a part corrupted
// on its way is dropped rather than summed. The envelope is what
// github.com/vmihailenco/msgpack/v5 makes of a struct tagged
// `msgpack:",as_array"` with those fields (the tests check both directions),
// but it is written and read by hand: encoding writes the floats straight
// into the message buffer (and the CRC after them, into a uint32 field of
// fixed width), and decoding checks every length against the bytes it has
// before it believes it (package msgcheck), allocates nothing, and hands
// back the float bytes in place, so a peer's header can never size an
// allocation.

// envelopeFields is the number of elements of the envelope's array.
const envelopeFields = 11

// crcLen is the width of the crc field: msgcheck.Uint32 and 4 bytes, always,
// so that it can be written after the floats it covers.
const crcLen = 5

// checksum is the CRC-32C of a part's float bytes (hash/crc32 computes it
// with the CPU's CRC32 instructions where it has them; the table is made
// once, by hash/crc32).
func checksum(b []byte) uint32 { return crc32.Checksum(b, crc32.MakeTable(crc32.Castagnoli)) }

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
	wire    uint64
	crc     uint64
	data    []byte
}

// AppendMessage appends to dst the message of part id of h sent by sender
// carrying the floats x on the f32 wire, with their CRC-32C. The envelope is
// padded (by choosing wider msgpack encodings of the run id and the phase)
// so that the floats start at a multiple of 4 bytes from the start of the
// message.
func AppendMessage(dst []byte, h Header, id PartID, sender int, x []float32) []byte {
	return AppendMessageWire(dst, h, id, sender, WireF32, x, 0)
}

// AppendMessageWire is AppendMessage on wire w: with WireBF16 the floats
// x[:nb] are rounded to bfloat16 (BF16) and x[nb:] sent as float32 (the
// part's share of the exact tail); with WireF32 nb is ignored.
func AppendMessageWire(dst []byte, h Header, id PartID, sender int, w Wire, x []float32, nb int) []byte {
	if w != WireBF16 {
		nb = 0
	}
	nb = min(max(nb, 0), len(x))
	start := len(dst)
	dst, b := appendHeader(dst, h, id, sender, w, wireBytes(len(x), nb))
	putBF16(b, x, nb, nil)
	sealMessage(dst[start:], b)
	return dst
}

// appendHeader appends the envelope of a message carrying nb bytes of floats
// and reserves them: it returns the message and its float bytes, to be
// filled by the caller, who then seals the message (sealMessage).
func appendHeader(dst []byte, h Header, id PartID, sender int, w Wire, nb int) (msg, floats []byte) {
	hdr := 1 + strHdrLen(len(h.Run)) + len(h.Run) + uintLen(h.Epoch) + uintLen(h.Step) + uintLen(uint64(id.Phase)) +
		uintLen(uint64(id.Hop)) + uintLen(uint64(id.Segment)) + uintLen(uint64(id.Part)) + uintLen(uint64(sender)) + uintLen(uint64(w)) + crcLen + binHdrLen(nb)
	pad := (4 - hdr%4) % 4
	dst = append(dst, msgcheck.FixArray|envelopeFields)
	switch n := len(h.Run); {
	case n < 32 && pad&1 == 0:
		dst = append(dst, msgcheck.FixStr|byte(n))
	case n < 32 || n <= math.MaxUint8 && pad&1 == 0:
		dst = append(dst, msgcheck.Str8, byte(n))
	default:
		dst = append(dst, msgcheck.Str16, byte(n>>8), byte(n))
	}
	dst = append(dst, h.Run...)
	dst = appendUint(dst, h.Epoch)
	dst = appendUint(dst, h.Step)
	if pad&2 != 0 && id.Phase < 128 {
		dst = append(dst, msgcheck.Uint16, 0, byte(id.Phase))
	} else {
		dst = appendUint(dst, uint64(id.Phase))
	}
	dst = appendUint(dst, uint64(id.Hop))
	dst = appendUint(dst, uint64(id.Segment))
	dst = appendUint(dst, uint64(id.Part))
	dst = appendUint(dst, uint64(sender))
	dst = appendUint(dst, uint64(w))
	dst = append(dst, msgcheck.Uint32, 0, 0, 0, 0) // the crc, sealed later
	switch {
	case nb <= math.MaxUint8:
		dst = append(dst, msgcheck.Bin8, byte(nb))
	case nb <= math.MaxUint16:
		dst = append(dst, msgcheck.Bin16, byte(nb>>8), byte(nb))
	default:
		dst = append(dst, msgcheck.Bin32, byte(nb>>24), byte(nb>>16), byte(nb>>8), byte(nb))
	}
	o := len(dst)
	if cap(dst)-o >= nb {
		dst = dst[:o+nb]
	} else {
		dst = append(dst, make([]byte, nb)...)
	}
	return dst, dst[o : o+nb : o+nb]
}

// sealMessage writes the CRC-32C of floats, the float bytes of msg (as
// appendHeader returned them, filled), into msg's crc field.
func sealMessage(msg, floats []byte) { sealMessageWith(msg, floats, checksum(floats)) }

// sealMessageWith writes crc, known to be the CRC-32C of floats, into msg's
// crc field.
func sealMessageWith(msg, floats []byte, crc uint32) {
	at := len(msg) - len(floats) - binHdrLen(len(floats)) - 4
	binary.BigEndian.PutUint32(msg[at:], crc)
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
		return append(dst, msgcheck.Uint8, byte(v))
	case v <= math.MaxUint16:
		return append(dst, msgcheck.Uint16, byte(v>>8), byte(v))
	case v <= math.MaxUint32:
		return append(dst, msgcheck.Uint32, byte(v>>24), byte(v>>16), byte(v>>8), byte(v))
	}
	return append(dst, msgcheck.Uint64, byte(v>>56), byte(v>>48), byte(v>>40), byte(v>>32), byte(v>>24), byte(v>>16), byte(v>>8), byte(v))
}

// decodeEnvelope parses b into e. Slices in e alias b. Any msgpack encoding
// of the fields is accepted (an array of any width, non-negative ints of any
// width for uints, str or bin for the run id); anything else, a crc beyond
// 32 bits, or trailing bytes, wraps ErrMalformed. The crc is not checked
// here (the receiver checks it before it applies the data).
func decodeEnvelope(b []byte, e *envelope) error {
	n, b, err := msgcheck.ReadArray(b)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	if n != envelopeFields {
		return fmt.Errorf("%w: an array of %d, not %d", ErrMalformed, n, envelopeFields)
	}
	if e.run, b, err = msgcheck.ReadBytes(b); err != nil {
		return fmt.Errorf("%w: run: %w", ErrMalformed, err)
	}
	for _, f := range [...]struct {
		p    *uint64
		name string
	}{{&e.epoch, "epoch"}, {&e.step, "step"}, {&e.phase, "phase"}, {&e.hop, "hop"}, {&e.segment, "segment"}, {&e.part, "part"}, {&e.sender, "sender"}, {&e.wire, "wire"}, {&e.crc, "crc"}} {
		if *f.p, b, err = msgcheck.ReadUint(b); err != nil {
			return fmt.Errorf("%w: %s: %w", ErrMalformed, f.name, err)
		}
	}
	if e.crc > math.MaxUint32 {
		return fmt.Errorf("%w: crc %d is wider than 32 bits", ErrMalformed, e.crc)
	}
	if e.data, b, err = msgcheck.ReadBytes(b); err != nil {
		return fmt.Errorf("%w: data: %w", ErrMalformed, err)
	}
	if len(b) != 0 {
		return fmt.Errorf("%w: %d trailing bytes", ErrMalformed, len(b))
	}
	return nil
}

// AppendFloats appends x to dst as little-endian float32s, the ring's
// encoding of floats (one copy on a little-endian machine). Package cluster
// sends the reduced segments to the coordinator in it.
func AppendFloats(dst []byte, x []float32) []byte {
	n := len(dst)
	dst = slices.Grow(dst, 4*len(x))[:n+4*len(x)]
	putFloats(dst[n:], x)
	return dst
}

// ReadFloats sets dst to the little-endian float32s of b, the inverse of
// AppendFloats; len(b) must be at least 4*len(dst).
func ReadFloats(dst []float32, b []byte) { copyFloats(dst, b) }

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
