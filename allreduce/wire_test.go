package allreduce

import (
	"bytes"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"math"
	"testing"

	"github.com/vmihailenco/msgpack/v5"
)

// wireEnvelope is the envelope as msgpack/v5 sees it.
type wireEnvelope struct {
	_msgpack struct{} `msgpack:",as_array"`
	Run      string
	Epoch    uint64
	Step     uint64
	Phase    uint8
	Hop      uint32
	Segment  uint32
	Part     uint32
	Sender   uint32
	Wire     uint8
	CRC      uint32
	Data     []byte
}

func floatBytes(x []float32) []byte {
	b := make([]byte, 4*len(x))
	for i, v := range x {
		u := math.Float32bits(v)
		b[4*i], b[4*i+1], b[4*i+2], b[4*i+3] = byte(u), byte(u>>8), byte(u>>16), byte(u>>24)
	}
	return b
}

func TestMessageMsgpackRoundTrip(t *testing.T) {
	long := "r-0123456789abcdef0123456789abcdef0123456789abcdef0123456789ab" // 62 bytes
	for _, tc := range []struct {
		h      Header
		id     PartID
		sender int
		n      int
	}{
		{Header{"", 0, 0}, PartID{}, 0, 0},
		{Header{"run", 1, 2}, PartID{ReduceScatter, 3, 4, 5}, 6, 3},
		{Header{long, 1 << 40, math.MaxUint64}, PartID{AllGather, 200, 70000, 1 << 30}, 255, 70},
		{Header{"x", 128, 65535}, PartID{AllGather, 127, 128, 256}, 65536, 20000},
		{Header{"ab", 1, 1}, PartID{}, 0, 1},
		{Header{"abc", 1, 1}, PartID{}, 0, 1},
		{Header{"abcd", 1, 1}, PartID{}, 0, 1},
		{Header{long[:33], 1, 1}, PartID{}, 0, 100},
		{Header{long[:34], 1, 1}, PartID{}, 0, 100},
		{Header{long[:35], 1, 1}, PartID{}, 0, 100},
		{Header{long[:36], 1, 1}, PartID{}, 0, 100},
	} {
		x := make([]float32, tc.n)
		for i := range x {
			x[i] = float32(i)*1.5 - 7
		}
		msg := AppendMessage(nil, tc.h, tc.id, tc.sender, x)
		if max := EnvelopeOverhead + 4*tc.n; len(msg) > max {
			t.Errorf("len(AppendMessage(%v)) = %d; want <= %d", tc.h, len(msg), max)
		}
		if off := len(msg) - 4*tc.n; off%4 != 0 {
			t.Errorf("AppendMessage(%v, %v): floats start at byte %d; want a multiple of 4", tc.h, tc.id, off)
		}
		// Library decodes ours.
		var w wireEnvelope
		if err := msgpack.Unmarshal(msg, &w); err != nil {
			t.Fatalf("msgpack.Unmarshal(AppendMessage(%v, %v)) = %v", tc.h, tc.id, err)
		}
		want := wireEnvelope{Run: tc.h.Run, Epoch: tc.h.Epoch, Step: tc.h.Step, Phase: uint8(tc.id.Phase), Hop: uint32(tc.id.Hop),
			Segment: uint32(tc.id.Segment), Part: uint32(tc.id.Part), Sender: uint32(tc.sender), CRC: crc32.Checksum(floatBytes(x), crc32.MakeTable(crc32.Castagnoli)), Data: floatBytes(x)}
		if w.Run != want.Run || w.Epoch != want.Epoch || w.Step != want.Step || w.Phase != want.Phase || w.Hop != want.Hop ||
			w.Segment != want.Segment || w.Part != want.Part || w.Sender != want.Sender || w.CRC != want.CRC || !bytes.Equal(w.Data, want.Data) {
			t.Errorf("msgpack.Unmarshal(AppendMessage(...)) = %+v; want %+v", w, want)
		}
		// We decode the library's.
		lib, err := msgpack.Marshal(&want)
		if err != nil {
			t.Fatal(err)
		}
		for _, b := range [][]byte{msg, lib} {
			var e envelope
			if err := decodeEnvelope(b, &e); err != nil {
				t.Fatalf("decodeEnvelope(%x) = %v", b[:min(len(b), 40)], err)
			}
			if string(e.run) != tc.h.Run || e.epoch != tc.h.Epoch || e.step != tc.h.Step || e.phase != uint64(tc.id.Phase) ||
				e.hop != uint64(tc.id.Hop) || e.segment != uint64(tc.id.Segment) || e.part != uint64(tc.id.Part) ||
				e.sender != uint64(tc.sender) || e.crc != uint64(want.CRC) || !bytes.Equal(e.data, want.Data) {
				t.Errorf("decodeEnvelope(%x...) = %+v; want %+v", b[:min(len(b), 40)], e, want)
			}
		}
	}
}

func TestDecodeRejects(t *testing.T) {
	good := AppendMessage(nil, Header{"run", 1, 2}, PartID{AllGather, 1, 2, 3}, 4, []float32{1, 2})
	for _, tc := range []struct {
		name string
		b    []byte
	}{
		{"empty", nil},
		{"map", []byte{0x80}},
		{"array of 10 (the envelope without a crc)", append([]byte{0x9a}, good[1:]...)},
		{"array16 of 65535", append([]byte{0xdc, 0xff, 0xff}, good[1:]...)},
		{"truncated", good[:len(good)-1]},
		{"trailing", append(append([]byte(nil), good...), 0)},
		{"str32 of 4 GiB", []byte{0x9b, 0xdb, 0xff, 0xff, 0xff, 0xff, 'a'}},
		{"bin32 of 2 GiB", []byte{0x9b, 0xa0, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0xc6, 0x7f, 0xff, 0xff, 0xff, 0}},
		{"negative int", []byte{0x9b, 0xa0, 0xd0, 0xff, 1, 1, 1, 1, 1, 1, 1, 0, 0xc4, 0}},
		{"negative fixint", []byte{0x9b, 0xa0, 0xff, 1, 1, 1, 1, 1, 1, 1, 0, 0xc4, 0}},
		{"float epoch", []byte{0x9b, 0xa0, 0xca, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 0, 0xc4, 0}},
		{"nil run", []byte{0x9b, 0xc0, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0xc4, 0}},
		{"negative wire", []byte{0x9b, 0xa0, 1, 1, 1, 1, 1, 1, 1, 0xff, 0, 0xc4, 0}},
		{"crc of 33 bits", []byte{0x9b, 0xa0, 1, 1, 1, 1, 1, 1, 1, 1, 0xcf, 0, 0, 0, 1, 0, 0, 0, 0, 0xc4, 0}},
	} {
		var e envelope
		if err := decodeEnvelope(tc.b, &e); !errors.Is(err, ErrMalformed) {
			t.Errorf("decodeEnvelope(%s) = %v; want %v", tc.name, err, ErrMalformed)
		}
	}
}

func TestDecodeAllocatesNothing(t *testing.T) {
	msg := AppendMessage(nil, Header{"run", 1, 2}, PartID{AllGather, 1, 2, 3}, 4, make([]float32, 1000))
	var e envelope
	if a := testing.AllocsPerRun(100, func() { _ = decodeEnvelope(msg, &e) }); a != 0 {
		t.Errorf("decodeEnvelope allocates %v times per call; want 0", a)
	}
	buf := make([]byte, 0, len(msg))
	x := make([]float32, 1000)
	if a := testing.AllocsPerRun(100, func() { buf = AppendMessage(buf[:0], Header{"run", 1, 2}, PartID{}, 4, x) }); a != 0 {
		t.Errorf("AppendMessage into a large enough buffer allocates %v times per call; want 0", a)
	}
}

// FuzzDecode checks that no input makes the decoder panic or read past its
// input, and that whatever it accepts msgpack/v5 reads the same way.
func FuzzDecode(f *testing.F) {
	f.Add(AppendMessage(nil, Header{"run", 1, 2}, PartID{AllGather, 1, 2, 3}, 4, []float32{1, 2}))
	f.Add(AppendMessage(nil, Header{"", 1 << 33, 300}, PartID{}, 70000, nil))
	f.Add(AppendMessageWire(nil, Header{"run", 1, 2}, PartID{ReduceScatter, 0, 1, 0}, 1, WireBF16, []float32{1, 2, 3}, 2))
	f.Add(AppendMessageWire(nil, Header{"r", 3, 4}, PartID{AllGather, 1, 0, 2}, 2, WireBF16, []float32{float32(math.NaN()), float32(math.Inf(-1)), 3e38}, 3))
	// Parts a receiver of the fuzz body's plan accepts: the vector's last
	// stripe (part 2 of segment 1) with its exact tail on the bf16 wire; a
	// whole part on f32.
	f.Add(AppendMessageWire(nil, Header{"run", 1, 2}, PartID{ReduceScatter, 1, 1, 2}, 3, WireBF16, make([]float32, 100), 98))
	f.Add(AppendMessage(nil, Header{"run", 1, 2}, PartID{AllGather, 2, 0, 1}, 0, make([]float32, 100)))
	f.Add([]byte{0x9b, 0xdb, 0xff, 0xff, 0xff, 0xff})
	f.Add([]byte{0xdc, 0, 11, 0xa0, 1, 1, 1, 1, 1, 1, 1, 1, 0xd2, 0, 0, 0, 0, 0xc4, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		var e envelope
		if err := decodeEnvelope(b, &e); err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("decodeEnvelope(%x) = %v; want ErrMalformed", b, err)
			}
			return
		}
		if len(e.data) > len(b) || len(e.run) > len(b) {
			t.Fatalf("decodeEnvelope(%x): fields longer than the input", b)
		}
		var w struct {
			_msgpack struct{} `msgpack:",as_array"`
			Run      []byte
			Epoch    uint64
			Step     uint64
			Phase    uint64
			Hop      uint64
			Segment  uint64
			Part     uint64
			Sender   uint64
			Wire     uint64
			CRC      uint64
			Data     []byte
		}
		if err := msgpack.Unmarshal(b, &w); err != nil {
			t.Fatalf("decodeEnvelope(%x) accepted what msgpack.Unmarshal rejects: %v", b, err)
		}
		if !bytes.Equal(w.Run, e.run) || w.Epoch != e.epoch || w.Step != e.step || w.Phase != e.phase || w.Hop != e.hop ||
			w.Segment != e.segment || w.Part != e.part || w.Sender != e.sender || w.Wire != e.wire || w.CRC != e.crc || !bytes.Equal(w.Data, e.data) {
			t.Fatalf("decodeEnvelope(%x) = %+v; msgpack.Unmarshal = %+v", b, e, w)
		}
		// What a receiver of each wire does with it: its own run, attempt
		// and left neighbour, so that only the part, the wire and the length
		// decide. A part it accepts has exactly the bytes its wire gives
		// that part, and decoding, adding and re-encoding it cannot panic.
		const L, n, pf, tail = 1000, 4, 100, 2
		plan := NewPlan(L, n, pf)
		h := Header{Run: string(e.run), Epoch: e.epoch, Step: e.step}
		left := int(min(e.sender, n-1))
		for _, wire := range []Wire{WireF32, WireBF16} {
			var c counters
			id, off, m, nb, bad := accept(&e, h, left, plan, wire, L-tail, &c)
			if bad != nil {
				if bad == &c.wrongWire && e.wire == uint64(wire) {
					t.Fatalf("accept(%+v) on the %v wire: dropped as another wire", e, wire)
				}
				continue
			}
			if e.wire != uint64(wire) || len(e.data) != wireBytes(m, nb) || off < 0 || off+m > L || id.Segment >= n {
				t.Fatalf("accept(%+v) on the %v wire accepted %v at [%d, %d) with %d bfloat16 floats", e, wire, id, off, off+m, nb)
			}
			x := make([]float32, m)
			out := make([]byte, len(e.data))
			if wire == WireBF16 {
				copyBF16(x, e.data, nb)
				addBF16(x, e.data, nb, make([]float32, nb))
				sumBF16(out, x, e.data, nb, nil)
			} else {
				copyFloats(x, e.data)
				addFloats(x, e.data)
				sumFloats(out, x, e.data)
			}
		}
	})
}

// TestFloatsUnaligned checks the byte-by-byte path taken for float bytes
// that are not 4-byte aligned against the aligned one.
func TestFloatsUnaligned(t *testing.T) {
	x := []float32{1.5, -2, float32(math.Inf(1)), 3e-40, 7}
	raw := floatBytes(x)
	for _, shift := range []int{0, 1, 2, 3} {
		b := append(make([]byte, shift), raw...)[shift:]
		got := make([]float32, len(x))
		copyFloats(got, b)
		addFloats(got, b)
		out := append(make([]byte, 3-shift), make([]byte, len(raw))...)[3-shift:]
		sumFloats(out, x, b)
		sum := make([]float32, len(x))
		copyFloats(sum, out)
		for i := range x {
			if want := x[i] + x[i]; math.Float32bits(got[i]) != math.Float32bits(want) || math.Float32bits(sum[i]) != math.Float32bits(want) {
				t.Errorf("shift %d: copy+add [%d] = %v, sum = %v; want %v", shift, i, got[i], sum[i], want)
			}
		}
	}
}

// TestFloatKernels checks the unrolled aligned paths of sumFloats and
// addFloats against plain float32 additions, bit for bit, on lengths around
// the unrolling, with infinities, NaNs, signed zeros and subnormals.
func TestFloatKernels(t *testing.T) {
	special := []float32{0, float32(math.Copysign(0, -1)), 1e-45, -3e-39, float32(math.Inf(1)), float32(math.Inf(-1)), float32(math.NaN()), 3.4e38, 1.5, -7.25}
	for n := range 42 {
		x := make([]float32, n)
		y := make([]float32, n)
		for i := range n {
			x[i] = special[(3*i)%len(special)] * float32(i%5+1)
			y[i] = special[(7*i+1)%len(special)] - float32(i)
		}
		in := floatBytes(y)
		out := make([]byte, 4*n)
		sumFloats(out, x, in)
		got := make([]float32, n)
		copyFloats(got, out)
		acc := append([]float32(nil), x...)
		addFloats(acc, in)
		for i := range n {
			want := x[i] + y[i]
			if math.Float32bits(got[i]) != math.Float32bits(want) || math.Float32bits(acc[i]) != math.Float32bits(want) {
				t.Errorf("n=%d [%d]: sum %v (%08x), add %v (%08x); want %v (%08x)", n, i, got[i], math.Float32bits(got[i]), acc[i], math.Float32bits(acc[i]), want, math.Float32bits(want))
			}
		}
	}
}

func BenchmarkFloatKernels(b *testing.B) {
	const n = 1 << 18 // 1 MiB of floats, the default chunk
	x := make([]float32, n)
	in := make([]byte, 4*n)
	out := make([]byte, 4*n)
	b.Run("sum", func(b *testing.B) {
		b.SetBytes(4 * n)
		for b.Loop() {
			sumFloats(out, x, in)
		}
	})
	b.Run("add", func(b *testing.B) {
		b.SetBytes(4 * n)
		for b.Loop() {
			addFloats(x, in)
		}
	})
	b.Run("copy", func(b *testing.B) {
		b.SetBytes(4 * n)
		for b.Loop() {
			copyFloats(x, in)
		}
	})
}

// BenchmarkChecksum is the CRC-32C every ring part costs its sender and
// its receiver, on a part of the default chunk.
func BenchmarkChecksum(b *testing.B) {
	p := make([]byte, 1<<20)
	b.SetBytes(int64(len(p)))
	for b.Loop() {
		checksum(p)
	}
}

// TestAcceptWireAndLength checks that a receiver drops, and counts, a part
// of the other wire, and a part of its wire whose bytes do not fit the
// part's floats.
func TestAcceptWireAndLength(t *testing.T) {
	const L, n, pf, tail = 1000, 4, 100, 2
	plan := NewPlan(L, n, pf)
	h := Header{"run", 1, 2}
	id := PartID{ReduceScatter, 1, 1, 2} // stripe 9, floats [900, 1000): 98 rounded, 2 exact
	for _, tc := range []struct {
		name string
		msg  []byte
		wire Wire
		want string
	}{
		{"bf16 part, bf16 receiver", AppendMessageWire(nil, h, id, 3, WireBF16, make([]float32, 100), 98), WireBF16, ""},
		{"f32 part, f32 receiver", AppendMessage(nil, h, id, 3, make([]float32, 100)), WireF32, ""},
		{"bf16 part, f32 receiver", AppendMessageWire(nil, h, id, 3, WireBF16, make([]float32, 100), 98), WireF32, "wrongWire"},
		{"f32 part, bf16 receiver", AppendMessage(nil, h, id, 3, make([]float32, 100)), WireBF16, "wrongWire"},
		{"bf16 part without the exact tail", AppendMessageWire(nil, h, id, 3, WireBF16, make([]float32, 100), 100), WireBF16, "badLength"},
		{"bf16 part one float short", AppendMessageWire(nil, h, id, 3, WireBF16, make([]float32, 99), 97), WireBF16, "badLength"},
		{"bf16 part of f32's length", AppendMessageWire(nil, h, id, 3, WireBF16, make([]float32, 100), 0), WireBF16, "badLength"},
	} {
		var e envelope
		if err := decodeEnvelope(tc.msg, &e); err != nil {
			t.Fatal(err)
		}
		var c counters
		_, _, _, _, bad := accept(&e, h, 3, plan, tc.wire, L-tail, &c)
		var got string
		switch bad {
		case nil:
		case &c.wrongWire:
			got = "wrongWire"
		case &c.badLength:
			got = "badLength"
		default:
			got = "another reason"
		}
		if got != tc.want {
			t.Errorf("%s: dropped as %q; want %q", tc.name, got, tc.want)
		}
	}
}

// TestAppendReadFloats: AppendFloats writes every float's little-endian bits
// after what dst held, and ReadFloats reads them back bit for bit from any
// alignment (the special values included).
func TestAppendReadFloats(t *testing.T) {
	x := []float32{1, -0, float32(math.Inf(-1)), math.Float32frombits(0x7fc00123), math.SmallestNonzeroFloat32, 3.25e-7, -65504}
	b := AppendFloats([]byte{7}, x)
	if len(b) != 1+4*len(x) || b[0] != 7 {
		t.Fatalf("appended %d bytes after %v", len(b)-1, b[:1])
	}
	for i, v := range x {
		if got := binary.LittleEndian.Uint32(b[1+4*i:]); got != math.Float32bits(v) {
			t.Errorf("float %d: bytes %08x, want %08x", i, got, math.Float32bits(v))
		}
	}
	got := make([]float32, len(x))
	ReadFloats(got, b[1:]) // unaligned
	for i := range x {
		if math.Float32bits(got[i]) != math.Float32bits(x[i]) {
			t.Errorf("float %d read back as %08x, want %08x", i, math.Float32bits(got[i]), math.Float32bits(x[i]))
		}
	}
}
