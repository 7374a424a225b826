package msgcheck

import (
	"bytes"
	"errors"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/vmihailenco/msgpack/v5"
)

type sample struct {
	Run     string            `msgpack:"run"`
	Members []string          `msgpack:"members"`
	Batch   []int32           `msgpack:"batch"`
	LR      float32           `msgpack:"lr"`
	Loss    float64           `msgpack:"loss"`
	Data    []byte            `msgpack:"data"`
	Neg     int64             `msgpack:"neg"`
	Big     uint64            `msgpack:"big"`
	Flag    bool              `msgpack:"flag"`
	Nil     *int              `msgpack:"nil"`
	Map     map[string]uint16 `msgpack:"map"`
	When    time.Time         `msgpack:"when"` // an extension
}

func valid(t testing.TB) [][]byte {
	t.Helper()
	var out [][]byte
	for _, v := range []any{
		0, 127, -1, -32, -33, 255, 65535, 1 << 20, int64(-1 << 40), uint64(math.MaxUint64), float32(1.5), math.Pi, true, false, nil,
		"", strings.Repeat("x", 31), strings.Repeat("y", 32), strings.Repeat("z", 300), strings.Repeat("w", 70000),
		[]byte{}, make([]byte, 255), make([]byte, 256), make([]byte, 70000),
		[]int{}, make([]int, 15), make([]int, 16), make([]int, 70000),
		map[string]int{}, map[string]int{"a": 1}, func() map[int]int {
			m := map[int]int{}
			for i := range 20 {
				m[i] = i
			}
			return m
		}(),
		time.Unix(1, 0), time.Unix(1<<40, 5), // fixext 4, ext 8 of 12 bytes
		sample{Run: "r", Members: []string{"a", "b"}, Batch: []int32{1, -2, 3}, LR: 0.5, Data: []byte{1, 2, 3}, Neg: -5, Big: 1 << 63,
			Map: map[string]uint16{"k": 65535}, When: time.Unix(7, 0)},
		[][]any{{1, "a", []any{map[string]any{"x": []int{1}}}}},
	} {
		b, err := msgpack.Marshal(v)
		if err != nil {
			t.Fatalf("msgpack.Marshal(%T) = %v", v, err)
		}
		out = append(out, b)
	}
	return out
}

func TestCheckAcceptsWhatMsgpackWrites(t *testing.T) {
	for _, b := range valid(t) {
		if err := Check(b); err != nil {
			t.Errorf("Check(%x...) = %v; want nil", b[:min(len(b), 24)], err)
		}
		if rest, err := Skip(append(b, 0xc0)); err != nil || !bytes.Equal(rest, []byte{0xc0}) {
			t.Errorf("Skip(%x... nil) = %x, %v; want the trailing nil", b[:min(len(b), 24)], rest, err)
		}
	}
}

func TestCheckRejects(t *testing.T) {
	nested := bytes.Repeat([]byte{FixArray | 1}, MaxDepth+1)
	for _, tc := range []struct {
		name string
		b    []byte
	}{
		{"empty", nil},
		{"never used", []byte{NeverUsed}},
		{"bin32 claiming 4 GiB", []byte{FixMap | 1, FixStr | 4, 'd', 'a', 't', 'a', Bin32, 0xff, 0xff, 0xff, 0xff}},
		{"array32 claiming 2^31 items", []byte{FixMap | 1, FixStr | 1, 'm', Array32, 0x7f, 0xff, 0xff, 0xff}},
		{"map16 claiming 65535 pairs", []byte{Map16, 0xff, 0xff}},
		{"map of 2 pairs in 3 bytes", []byte{FixMap | 2, 1, 2, 3}},
		{"str8 past the end", []byte{FixMap | 1, FixStr | 3, 'r', 'u', 'n', Str8, 0x20, 'x'}},
		{"fixstr past the end", []byte{FixStr | 5, 'a'}},
		{"ext32 past the end", []byte{Ext32, 0, 0, 0, 4, 1, 2}},
		{"fixext16 truncated", []byte{FixExt16, 1, 2, 3}},
		{"uint64 truncated", []byte{Uint64, 1, 2}},
		{"truncated length", []byte{Str16, 1}},
		{"trailing bytes", []byte{1, 2}},
		{"nested too deeply", append(nested, 1)},
	} {
		if err := Check(tc.b); !errors.Is(err, ErrMalformed) {
			t.Errorf("Check(%s) = %v; want %v", tc.name, err, ErrMalformed)
		}
	}
	if err := Check(append(nested[1:], 1)); err != nil {
		t.Errorf("Check(nested %d deep) = %v; want nil", MaxDepth, err)
	}
}

func TestReaders(t *testing.T) {
	long := strings.Repeat("r", 300)
	for _, tc := range []struct {
		v    any
		want string
	}{{"", ""}, {"abc", "abc"}, {long, long}, {[]byte("bin"), "bin"}, {make([]byte, 70000), string(make([]byte, 70000))}} {
		b, _ := msgpack.Marshal(tc.v)
		v, rest, err := ReadBytes(append(b, 7))
		if err != nil || string(v) != tc.want || !bytes.Equal(rest, []byte{7}) || cap(v) != len(v) {
			t.Errorf("ReadBytes(%T of %d) = %d bytes (cap %d), rest %x, %v; want %d bytes, rest 07", tc.v, len(tc.want), len(v), cap(v), rest, err, len(tc.want))
		}
	}
	for _, want := range []uint64{0, 127, 128, 255, 256, 65535, 65536, math.MaxUint32, math.MaxUint32 + 1, math.MaxUint64} {
		b, _ := msgpack.Marshal(want)
		if v, rest, err := ReadUint(b); err != nil || v != want || len(rest) != 0 {
			t.Errorf("ReadUint(%x) = %d, %x, %v; want %d", b, v, rest, err, want)
		}
	}
	for _, s := range []int64{0, 5, 127, 1 << 40} {
		for _, b := range [][]byte{{Int8, byte(s)}, {Int16, 0, byte(s)}, {Int32, 0, 0, 0, byte(s)}} {
			if s > 127 {
				continue
			}
			if v, _, err := ReadUint(b); err != nil || v != uint64(s) {
				t.Errorf("ReadUint(%x) = %d, %v; want %d", b, v, err, s)
			}
		}
	}
	for _, b := range [][]byte{nil, {Int8, 0xff}, {0xff}, {Int64, 0x80, 0, 0, 0, 0, 0, 0, 0}, {Float32, 0, 0, 0, 0}, {Uint32, 1}, {Nil}} {
		if _, _, err := ReadUint(b); !errors.Is(err, ErrMalformed) {
			t.Errorf("ReadUint(%x) = %v; want %v", b, err, ErrMalformed)
		}
	}
	for _, b := range [][]byte{nil, {Str32, 0xff, 0xff, 0xff, 0xff, 'a'}, {Bin32, 0x7f, 0xff, 0xff, 0xff}, {Bin8}, {FixStr | 2, 'a'}, {1}} {
		if _, _, err := ReadBytes(b); !errors.Is(err, ErrMalformed) {
			t.Errorf("ReadBytes(%x) = %v; want %v", b, err, ErrMalformed)
		}
	}
	for _, tc := range []struct {
		b    []byte
		n    int
		fail bool
	}{{[]byte{FixArray | 2, 1, 2}, 2, false}, {[]byte{Array16, 0, 2, 1, 2}, 2, false}, {[]byte{Array32, 0, 0, 0, 1, 1}, 1, false},
		{[]byte{Array32, 0xff, 0xff, 0xff, 0xff}, 0, true}, {[]byte{FixArray | 3, 1}, 0, true}, {[]byte{FixMap}, 0, true}, {nil, 0, true}} {
		n, _, err := ReadArray(tc.b)
		if tc.fail != (err != nil) || n != tc.n {
			t.Errorf("ReadArray(%x) = %d, %v; want %d, failure %v", tc.b, n, err, tc.n, tc.fail)
		}
	}
}

func TestCheckAllocatesNothing(t *testing.T) {
	bs := valid(t)
	if a := testing.AllocsPerRun(20, func() {
		for _, b := range bs {
			_ = Check(b)
		}
	}); a != 0 {
		t.Errorf("Check allocates %v times per pass; want 0", a)
	}
}

// FuzzCheck: no input makes Check panic, and whatever it accepts msgpack/v5
// skips as one whole value; an input that claims more than it holds is
// rejected.
func FuzzCheck(f *testing.F) {
	for _, b := range valid(f) {
		f.Add(b)
	}
	f.Add([]byte{Bin32, 0xff, 0xff, 0xff, 0xff})
	f.Add([]byte{Map16, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, b []byte) {
		err := Check(b)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("Check(%x) = %v; want an error wrapping ErrMalformed", b, err)
			}
			return
		}
		d := msgpack.NewDecoder(bytes.NewReader(b))
		if err := d.Skip(); err != nil {
			t.Fatalf("Check(%x) accepted what msgpack.Decoder.Skip rejects: %v", b, err)
		}
		if d.Buffered().(*bytes.Reader).Len() != 0 {
			t.Fatalf("Check(%x) accepted a value msgpack reads as shorter", b)
		}
		var v any
		_ = msgpack.Unmarshal(b, &v) // must not panic or exhaust memory
	})
}
