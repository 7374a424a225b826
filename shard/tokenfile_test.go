package shard

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func ints(ids []int) []int32 {
	out := make([]int32, len(ids))
	for i, id := range ids {
		out[i] = int32(id)
	}
	return out
}

// TestWriteTokensLayout: the bytes are exactly nanoGPT's and llm.c's layouts
// (the same helpers TestFileSources builds files with).
func TestWriteTokensLayout(t *testing.T) {
	ids := []int{0, 1, 50256, 65535, 255, 256, 15496, 995}
	for _, tt := range []struct {
		f    TokenFormat
		want []byte
	}{
		{NanoGPT, u16(ids...)},
		{LLMC, llmc(llmcMagic, 1, int32(len(ids)), ids...)},
	} {
		var b bytes.Buffer
		if err := WriteTokens(&b, tt.f, ints(ids)); err != nil {
			t.Fatalf("WriteTokens(%s) = %v", tt.f, err)
		}
		if !bytes.Equal(b.Bytes(), tt.want) {
			t.Errorf("WriteTokens(%s): %d bytes %x...; want %d bytes %x...", tt.f, b.Len(), b.Bytes()[:16], len(tt.want), tt.want[:16])
		}
	}
}

// TestTokenFileRoundTrip writes ids in both formats and reads them back
// through the tokens:PATH source and ReadTokenFile.
func TestTokenFileRoundTrip(t *testing.T) {
	ids := ints(append(seq(1000, 50257), 50256, 0, 65535))
	dir := t.TempDir()
	for _, f := range []TokenFormat{NanoGPT, LLMC} {
		path := filepath.Join(dir, string(f)+".bin")
		if err := WriteTokenFile(path, f, ids); err != nil {
			t.Fatalf("WriteTokenFile(%s) = %v", f, err)
		}
		got, err := ReadTokenFile(path)
		if err != nil || !slices.Equal(got, ids) {
			t.Errorf("%s: ReadTokenFile = %d ids, %v; want the %d written", f, len(got), err, len(ids))
		}
		const T = 10
		d, err := Open(Options{Source: "tokens:" + path, Ctx: T})
		if err != nil {
			t.Fatalf("%s: Open = %v", f, err)
		}
		if d.NumTokens() != len(ids) || d.Vocab() != 65536 {
			t.Errorf("%s: NumTokens, Vocab = %d, %d; want %d, 65536", f, d.NumTokens(), d.Vocab(), len(ids))
		}
		win := make([]int32, T+1)
		for w := range d.NumWindows() {
			d.Window(w, win)
			if !slices.Equal(win, ids[w*T:w*T+T+1]) {
				t.Fatalf("%s: Window(%d) = %v; want %v", f, w, win, ids[w*T:w*T+T+1])
			}
		}
		d.Close()
		if st, err := os.Stat(path); err != nil || st.Mode().Perm() != 0o644 {
			t.Errorf("%s: mode %v, %v; want 0644", f, st.Mode(), err)
		}
	}
	// Overwriting replaces the file.
	path := filepath.Join(dir, "llmc.bin")
	if err := WriteTokenFile(path, LLMC, ids[:5]); err != nil {
		t.Fatal(err)
	}
	if got, err := ReadTokenFile(path); err != nil || !slices.Equal(got, ids[:5]) {
		t.Errorf("after overwriting: %v, %v; want %v", got, err, ids[:5])
	}
	assertOnly(t, dir, "llmc.bin", "nanogpt.bin")
}

// assertOnly fails unless dir holds exactly names (no temporary files).
func assertOnly(t *testing.T, dir string, names ...string) {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var have []string
	for _, e := range ents {
		have = append(have, e.Name())
	}
	if !slices.Equal(have, names) {
		t.Errorf("folder holds %v; want %v", have, names)
	}
}

func TestWriteTokenFileErrors(t *testing.T) {
	dir := t.TempDir()
	magic := []int32{55432, 308, 7} // llm.c's magic as two uint16
	tests := []struct {
		name   string
		f      TokenFormat
		ids    []int32
		target error
		msg    string
	}{
		{"empty", LLMC, nil, ErrEmpty, "no tokens"},
		{"empty nanogpt", NanoGPT, []int32{}, ErrEmpty, "no tokens"},
		{"too big", NanoGPT, []int32{1, 2, 65536}, ErrTokenRange, "token 65536 at position 2"},
		{"negative", LLMC, []int32{-1}, ErrTokenRange, "token -1 at position 0"},
		{"magic", NanoGPT, magic, ErrAmbiguous, "55432, 308"},
		{"format", "raw", []int32{1}, ErrOptions, `"raw"`},
	}
	for _, tt := range tests {
		path := filepath.Join(dir, "out.bin")
		err := WriteTokenFile(path, tt.f, tt.ids)
		if !errors.Is(err, tt.target) || !strings.Contains(err.Error(), tt.msg) || !strings.Contains(err.Error(), path) {
			t.Errorf("%s: WriteTokenFile = %v; want %v naming %q and the path", tt.name, err, tt.target, tt.msg)
		}
	}
	assertOnly(t, dir)
	// The magic is fine with a header, and reads back.
	path := filepath.Join(dir, "magic.bin")
	if err := WriteTokenFile(path, LLMC, magic); err != nil {
		t.Fatal(err)
	}
	if got, err := ReadTokenFile(path); err != nil || !slices.Equal(got, magic) {
		t.Errorf("llm.c file starting with the magic's ids: %v, %v", got, err)
	}
	// A folder that does not exist.
	if err := WriteTokenFile(filepath.Join(dir, "no", "such.bin"), LLMC, magic); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("WriteTokenFile into a missing folder = %v; want os.ErrNotExist", err)
	}
	// A failing writer leaves the old file in place and no temporary file.
	if err := writeFileAtomic(path, func(w io.Writer) error {
		w.Write([]byte("partial"))
		return errors.New("disk full")
	}); err == nil || !strings.Contains(err.Error(), "disk full") {
		t.Errorf("writeFileAtomic with a failing writer = %v", err)
	}
	if got, err := ReadTokenFile(path); err != nil || !slices.Equal(got, magic) {
		t.Errorf("after a failed write: %v, %v; want the old file", got, err)
	}
	assertOnly(t, dir, "magic.bin")
}

func TestParseTokens(t *testing.T) {
	for _, tt := range []struct {
		name   string
		b      []byte
		target error
	}{
		{"empty", nil, ErrEmpty},
		{"odd", []byte{1, 0, 2}, ErrOddSize},
		{"header, no tokens", llmc(llmcMagic, 1, 0), ErrEmpty},
		{"count", llmc(llmcMagic, 1, 3, 1, 2), ErrHeader},
		{"version", llmc(llmcMagic, 2, 1, 1), ErrHeader},
		{"magic", llmc(0, 1, 2, 7, 9), ErrHeader},
	} {
		if ids, err := ParseTokens(tt.b); !errors.Is(err, tt.target) {
			t.Errorf("%s: ParseTokens = %v, %v; want %v", tt.name, ids, err, tt.target)
		}
	}
	if _, err := ReadTokenFile(filepath.Join(t.TempDir(), "missing")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("ReadTokenFile(missing) = %v; want os.ErrNotExist", err)
	}
	for _, s := range []string{"nanogpt", "llmc"} {
		if f, err := ParseTokenFormat(s); err != nil || string(f) != s {
			t.Errorf("ParseTokenFormat(%q) = %q, %v", s, f, err)
		}
	}
}
