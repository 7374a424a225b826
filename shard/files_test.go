package shard

import (
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"testing"
)

func writeFile(t *testing.T, name string, b []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func u16(ids ...int) []byte {
	b := make([]byte, 2*len(ids))
	for i, id := range ids {
		binary.LittleEndian.PutUint16(b[2*i:], uint16(id))
	}
	return b
}

// llmc returns an llm.c token file: header (magic, version, count) + tokens.
func llmc(magic, version, count int32, ids ...int) []byte {
	h := make([]byte, llmcHeaderBytes)
	binary.LittleEndian.PutUint32(h[0:], uint32(magic))
	binary.LittleEndian.PutUint32(h[4:], uint32(version))
	binary.LittleEndian.PutUint32(h[8:], uint32(count))
	return append(h, u16(ids...)...)
}

func seq(n, mod int) []int {
	out := make([]int, n)
	for i := range out {
		out[i] = (i*7 + 3) % mod
	}
	return out
}

func TestFileSources(t *testing.T) {
	text := []byte("the quick brown fox jumps over the lazy dog")
	ids := append(seq(100, 50257), 50256)
	tests := []struct {
		name   string
		file   []byte
		kind   string
		o      Options
		vocab  int
		tokens []int
	}{
		{"text", text, "text", Options{Ctx: 4}, 256, nil},
		{"text vocab 128", text, "text", Options{Ctx: 4, Vocab: 128}, 128, nil},
		{"nanoGPT", u16(ids...), "tokens", Options{Ctx: 10}, slices.Max(ids) + 1, ids},
		{"nanoGPT vocab", u16(ids...), "tokens", Options{Ctx: 10, Vocab: 50304}, 50304, ids},
		{"llm.c", llmc(llmcMagic, 1, int32(len(ids)), ids...), "tokens", Options{Ctx: 10}, slices.Max(ids) + 1, ids},
	}
	for _, tt := range tests {
		p := writeFile(t, "f", tt.file)
		tt.o.Source = tt.kind + ":" + p
		d, err := Open(tt.o)
		if err != nil {
			t.Fatalf("%s: Open = %v", tt.name, err)
		}
		want := tt.tokens
		if want == nil {
			for _, b := range text {
				want = append(want, int(b))
			}
		}
		if d.Vocab() != tt.vocab || d.NumTokens() != len(want) {
			t.Errorf("%s: Vocab, NumTokens = %d, %d; want %d, %d", tt.name, d.Vocab(), d.NumTokens(), tt.vocab, len(want))
		}
		T := tt.o.Ctx
		if wantWin := (len(want) - 1) / T; d.NumWindows() != wantWin {
			t.Errorf("%s: NumWindows() = %d; want %d", tt.name, d.NumWindows(), wantWin)
		}
		win := make([]int32, T+1)
		for id := range d.NumWindows() {
			d.Window(id, win)
			for i, x := range win {
				if int(x) != want[id*T+i] {
					t.Fatalf("%s: Window(%d)[%d] = %d; want %d", tt.name, id, i, x, want[id*T+i])
				}
			}
		}
		if d.HasTruth() || d.TruthK() != 0 || d.EntropyFloor(d.AllWindows()) != -1 {
			t.Errorf("%s: a file source claims a truth", tt.name)
		}
		if _, ok := d.Stats(); ok {
			t.Errorf("%s: Stats() ok for a file", tt.name)
		}
		if err := d.Close(); err != nil {
			t.Errorf("%s: Close() = %v", tt.name, err)
		}
	}
}

func TestBadFiles(t *testing.T) {
	tests := []struct {
		name   string
		kind   string
		file   []byte
		o      Options
		target error
	}{
		{"empty text", "text", nil, Options{Ctx: 4}, ErrEmpty},
		{"empty tokens", "tokens", nil, Options{Ctx: 4}, ErrEmpty},
		{"odd byte count", "tokens", []byte{1, 0, 2, 0, 3}, Options{Ctx: 1}, ErrOddSize},
		{"id at vocab", "tokens", u16(1, 2, 3, 100, 4), Options{Ctx: 2, Vocab: 100}, ErrTokenRange},
		{"byte at vocab", "text", []byte("abc\x80d"), Options{Ctx: 2, Vocab: 128}, ErrTokenRange},
		{"truncated header", "tokens", llmc(llmcMagic, 1, 3, 1, 2, 3)[:500], Options{Ctx: 1}, ErrHeader},
		{"header only magic", "tokens", llmc(llmcMagic, 1, 0)[:4], Options{Ctx: 1}, ErrHeader},
		{"wrong version", "tokens", llmc(llmcMagic, 2, 3, 1, 2, 3), Options{Ctx: 1}, ErrHeader},
		{"count too big", "tokens", llmc(llmcMagic, 1, 9, 1, 2, 3), Options{Ctx: 1}, ErrHeader},
		{"count too small", "tokens", llmc(llmcMagic, 1, 2, 1, 2, 3), Options{Ctx: 1}, ErrHeader},
		{"negative count", "tokens", llmc(llmcMagic, 1, -3, 1, 2, 3), Options{Ctx: 1}, ErrHeader},
		{"odd after header", "tokens", append(llmc(llmcMagic, 1, 3, 1, 2, 3), 7), Options{Ctx: 1}, ErrOddSize},
		{"header, no tokens", "tokens", llmc(llmcMagic, 1, 0), Options{Ctx: 1}, ErrEmpty},
		{"llm.c id at vocab", "tokens", llmc(llmcMagic, 1, 3, 1, 60000, 3), Options{Ctx: 1, Vocab: 50257}, ErrTokenRange},
		{"shorter than a window", "tokens", u16(1, 2, 3), Options{Ctx: 3}, ErrTooShort},
		{"text shorter than a window", "text", []byte("abcd"), Options{Ctx: 4}, ErrTooShort},
		{"all held out", "text", []byte("abcd"), Options{Ctx: 2, ValFraction: 0.4}, ErrNoTrain},
	}
	for _, tt := range tests {
		p := writeFile(t, "bad", tt.file)
		tt.o.Source = tt.kind + ":" + p
		d, err := Open(tt.o)
		if !errors.Is(err, tt.target) {
			t.Errorf("%s: Open = %v, %v; want %v", tt.name, d, err, tt.target)
		} else {
			t.Logf("%s: %v", tt.name, err)
		}
	}
	if _, err := Open(Options{Source: "tokens:" + filepath.Join(t.TempDir(), "missing"), Ctx: 4}); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Open(missing file) = %v; want os.ErrNotExist", err)
	}
	if _, err := Open(Options{Source: "text:" + t.TempDir(), Ctx: 4}); err == nil {
		t.Errorf("Open(a directory) succeeded")
	}
}

// TestLargeFileNotOnHeap opens a 256 MiB token file: it is mapped, so the
// heap grows by the window lists only (4 bytes per window, 3 lists).
func TestLargeFileNotOnHeap(t *testing.T) {
	const size = 256 << 20
	p := filepath.Join(t.TempDir(), "big.bin")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	// Sparse: zeros except a marker at the end.
	if _, err := f.WriteAt(u16(12345), size-2); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	const ctx = 1024
	d, err := Open(Options{Source: "tokens:" + p, Ctx: ctx, ValFraction: 0.01})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	b, _ := d.NextBatch(Cursor{}, 8)
	runtime.ReadMemStats(&after)
	grew := int64(after.TotalAlloc - before.TotalAlloc)
	windows := int64(d.NumWindows())
	if limit := 3*4*windows + 1<<20; grew > limit {
		t.Errorf("opening a %d MiB file allocated %d bytes; want at most %d", size>>20, grew, limit)
	}
	t.Logf("a %d MiB token file: %d windows, %d bytes allocated", size>>20, windows, grew)
	if d.Vocab() != 12346 {
		t.Errorf("Vocab() = %d; want 12346 (largest id + 1)", d.Vocab())
	}
	win := make([]int32, ctx+1)
	d.Window(d.NumWindows()-1, win)
	if last := (size/2 - 1) - (d.NumWindows()-1)*ctx; last <= ctx && win[last] != 12345 {
		t.Errorf("last window's token %d = %d; want 12345", last, win[last])
	}
	if len(b) != 8 || slices.ContainsFunc(b, d.IsHeldOut) {
		t.Errorf("NextBatch = %v; want 8 training windows", b)
	}
}
