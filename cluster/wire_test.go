package cluster

import (
	"errors"
	"testing"
)

func TestDecodeRejectsLyingLengths(t *testing.T) {
	tests := []struct {
		name string
		in   []byte
	}{
		{"empty", nil},
		{"bin32 claiming 4 GiB", []byte{0x81, 0xa4, 'd', 'a', 't', 'a', 0xc6, 0xff, 0xff, 0xff, 0xff}},
		{"array32 claiming 2^31 items", []byte{0x81, 0xa7, 'm', 'e', 'm', 'b', 'e', 'r', 's', 0xdd, 0x7f, 0xff, 0xff, 0xff}},
		{"map16 claiming 65535 pairs", []byte{0xde, 0xff, 0xff}},
		{"str8 past the end", []byte{0x81, 0xa3, 'r', 'u', 'n', 0xd9, 0x20, 'x'}},
		{"never-used byte", []byte{0xc1}},
		{"trailing bytes", append(mustEncodeB(plan{Run: "r"}), 0)},
	}
	for _, tt := range tests {
		var p plan
		if err := decode(tt.in, &p); !errors.Is(err, ErrMalformed) {
			t.Errorf("decode(%s) = %v; want ErrMalformed", tt.name, err)
		}
	}
}

func TestDecodeRoundTrip(t *testing.T) {
	in := plan{Run: "abc", Epoch: 3, Step: 9, Members: []string{"w0", "w1"}, Batch: []int32{4, 1, 7}, LR: 0.5, Commit: true, Base: 8}
	var out plan
	if err := decode(mustEncodeB(in), &out); err != nil {
		t.Fatal(err)
	}
	if out.Run != in.Run || out.Epoch != 3 || out.Step != 9 || len(out.Members) != 2 || out.Batch[2] != 7 || out.LR != 0.5 || !out.Commit || out.Base != 8 {
		t.Errorf("decode(encode(%+v)) = %+v", in, out)
	}
}

func mustEncodeB(v any) []byte {
	b, err := encode(v)
	if err != nil {
		panic(err)
	}
	return b
}

// FuzzDecode: no input makes the control-message decoder panic or allocate
// beyond what the input's own bytes can back.
func FuzzDecode(f *testing.F) {
	f.Add(mustEncodeB(plan{Run: "r", Members: []string{"a"}, Batch: []int32{1, 2}}))
	f.Add(mustEncodeB(done{Run: "r", Windows: []int32{3}}))
	f.Add(mustEncodeB(segment{Run: "r", Data: []byte{1, 2, 3, 4}}))
	f.Add(mustEncodeB(snapChunk{Run: "r", Data: make([]byte, 16)}))
	f.Add([]byte{0xc6, 0xff, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, b []byte) {
		var p plan
		_ = decode(b, &p)
		var d done
		_ = decode(b, &d)
		var s segment
		if decode(b, &s) == nil && len(s.Data) > len(b) {
			t.Fatalf("decoded %d data bytes from a %d-byte message", len(s.Data), len(b))
		}
		var c snapChunk
		_ = decode(b, &c)
	})
}
