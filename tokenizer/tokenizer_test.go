package tokenizer

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"unicode/utf8"

	tiktoken "github.com/tiktoken-go/tokenizer"
)

func mustNew(t testing.TB, name string) Tokenizer {
	t.Helper()
	tok, err := New(name)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// TestKnownGPT2Encodings: ids published with tiktoken's own tests
// (test_simple, test_simple_repeated, test_encode_empty) and the
// nanoGPT/HF-documented "Hello, world!", and ids from the independent
// reference encoder in testdata/gpt2_reference.py.
func TestKnownGPT2Encodings(t *testing.T) {
	tok := mustNew(t, NameGPT2)
	tests := []struct {
		text string
		want []int32
	}{
		{"", []int32{}},
		{"Hello world", []int32{15496, 995}},
		{"hello world", []int32{31373, 995}},
		{"Hello, world!", []int32{15496, 11, 995, 0}},
		{"0", []int32{15}},
		{"00", []int32{405}},
		{"000", []int32{830}},
		{"0000", []int32{2388}},
		{"00000", []int32{20483}},
		{"000000", []int32{10535}},
		{"0000000", []int32{24598}},
		{"00000000", []int32{8269}},
		{"000000000", []int32{10535, 830}},
		{"0000000000", []int32{8269, 405}},
		{"00000000000", []int32{8269, 830}},
		{"000000000000", []int32{8269, 2388}},
		{"0000000000000", []int32{8269, 20483}},
		{"00000000000000", []int32{8269, 10535}},
		{"000000000000000", []int32{8269, 24598}},
		{"0000000000000000", []int32{25645}},
		{"00000000000000000", []int32{8269, 10535, 830}},
		// From testdata/gpt2_reference.py.
		{"The quick brown fox jumps over the lazy dog.", []int32{464, 2068, 7586, 21831, 18045, 625, 262, 16931, 3290, 13}},
		{"hello <|endoftext|>", []int32{31373, 1279, 91, 437, 1659, 5239, 91, 29}}, // no special tokens: it is text
		{"\n\nHello", []int32{198, 198, 15496}},
		{"Hello\n\n", []int32{15496, 628}},
		{" \t x", []int32{220, 197, 2124}},
		{"a  b", []int32{64, 220, 275}},
		{"   ", []int32{220, 220, 220}},
		{"don't stop", []int32{9099, 470, 2245}},
		{"I'LL", []int32{40, 6, 3069}},
		{"caf\u00e9", []int32{66, 1878, 2634}},
		{"cafe\u0301", []int32{66, 8635, 136, 223}}, // a combining mark is not a letter
		{"\u4f60\u597d", []int32{19526, 254, 25001, 121}},
		{"\U0001F600", []int32{47249, 222}},
		{"x\u00a0y", []int32{87, 1849, 88}},
		{"a\u3000 b", []int32{64, 5099, 222, 275}},
	}
	for _, tt := range tests {
		if got := tok.Encode([]byte(tt.text)); !slices.Equal(got, tt.want) {
			t.Errorf("Encode(%q) = %v; want %v", tt.text, got, tt.want)
		}
		if got, err := tok.Decode(tt.want); err != nil || string(got) != tt.text {
			t.Errorf("Decode(%v) = %q, %v; want %q", tt.want, got, err, tt.text)
		}
	}
}

func readU16(t *testing.T, path string) []int32 {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	ids := make([]int32, len(b)/2)
	for i := range ids {
		ids[i] = int32(binary.LittleEndian.Uint16(b[2*i:]))
	}
	return ids
}

func firstDiff(a, b []int32) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

// TestGolden encodes testdata/stress.txt (edge cases of GPT-2's pattern and
// random text over every character class it tells apart) and compares with
// the ids of the independent reference encoder (testdata/README.md).
func TestGolden(t *testing.T) {
	tok := mustNew(t, NameGPT2)
	text, err := os.ReadFile("testdata/stress.txt")
	if err != nil {
		t.Fatal(err)
	}
	want := readU16(t, "testdata/stress.gpt2.u16")
	got := tok.Encode(text)
	if !slices.Equal(got, want) {
		i := firstDiff(got, want)
		t.Fatalf("Encode(stress.txt): %d ids, want %d; first difference at id %d: got %v, want %v",
			len(got), len(want), i, got[i:min(i+8, len(got))], want[i:min(i+8, len(want))])
	}
}

// TestAgreesWithTiktokenGo: a second oracle with an independent pattern
// matcher (regexp2), on valid UTF-8, where the two must agree.
func TestAgreesWithTiktokenGo(t *testing.T) {
	tok := mustNew(t, NameGPT2)
	lib, err := tiktoken.Get(tiktoken.R50kBase)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range append([]string{"testdata/stress.txt"}, docFiles(t)...) {
		text, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		ids, _, err := lib.Encode(string(text))
		if err != nil {
			t.Fatal(err)
		}
		want := make([]int32, len(ids))
		for i, id := range ids {
			want[i] = int32(id)
		}
		if got := tok.Encode(text); !slices.Equal(got, want) {
			i := firstDiff(got, want)
			t.Errorf("%s: Encode differs from tiktoken-go at id %d: got %v, want %v", name, i, got[i:min(i+8, len(got))], want[i:min(i+8, len(want))])
		}
	}
}

// docFiles returns the repository's documentation: README.md, docs/*.md and
// every doc.go.
func docFiles(t testing.TB) []string {
	t.Helper()
	files, err := filepath.Glob("../docs/*.md")
	if err != nil {
		t.Fatal(err)
	}
	files = append(files, "../README.md")
	err = filepath.WalkDir("..", func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (strings.HasPrefix(d.Name(), ".") && path != ".." || d.Name() == "testdata") {
			return filepath.SkipDir
		}
		if d.Name() == "doc.go" {
			files = append(files, path)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	var docGo int
	for _, f := range files {
		if strings.HasSuffix(f, "doc.go") {
			docGo++
		}
	}
	if len(files) < 5 || docGo < 3 {
		t.Fatalf("found only %v: the test must run in the repository's tokenizer folder", files)
	}
	return files
}

func TestRoundTripDocs(t *testing.T) {
	for _, name := range Names() {
		tok := mustNew(t, name)
		for _, f := range docFiles(t) {
			text, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			ids := tok.Encode(text)
			got, err := tok.Decode(ids)
			if err != nil || !bytes.Equal(got, text) {
				t.Errorf("%s: Decode(Encode(%s)) differs from the file (err %v)", name, f, err)
			}
			if n, err := CountBytes(tok, ids); err != nil || n != int64(len(text)) {
				t.Errorf("%s: CountBytes(Encode(%s)) = %d, %v; want %d", name, f, n, err, len(text))
			}
			if name == NameGPT2 && len(ids)*2 > len(text) {
				t.Errorf("gpt2: %s: %d ids for %d bytes; BPE should need fewer than 1 per 2 bytes", f, len(ids), len(text))
			}
		}
	}
}

// TestEdgeCases: Unicode, whitespace, invalid UTF-8 and empty input round
// trip byte for byte, and every id is in the vocabulary.
func TestEdgeCases(t *testing.T) {
	cases := []string{
		"", " ", "  ", "\n", "\r\n", "\t", "\x00", "\x00\x01\x7f", "'", "''", "'s", "'S", "'ll'", "x'",
		"a\u00a0\u00a0b", "\u3000", "\u2028\u2029", "\u0085", "\x1c\x1d\x1e\x1f", " \n \n ",
		"\ufeffBOM", "\u200bzero\u200bwidth", "e\u0301\u0301\u0301", "\U0001F468\u200d\U0001F469\u200d\U0001F467",
		"\ufffd", "\xef\xbf\xbd", // U+FFFD itself
		"\xff", "\xfe\xff", "a\xffb", "\xc3", "caf\xc3", "\xe2\x82", "\xe2\x82 x", "\xf0\x9f\x98", " \x80\x80\x80 ",
		"\xed\xa0\x80", "\xc0\xaf", "\xf8\x88\x80\x80\x80", // a surrogate, an overlong '/', a 5-byte form
		strings.Repeat(" ", 1000), strings.Repeat("\n", 1000), strings.Repeat("a", 5000), strings.Repeat("'s", 500),
		strings.Repeat("\xff", 300), strings.Repeat("\U0001F600", 300), strings.Repeat("ab ", 2000),
	}
	for _, name := range Names() {
		tok := mustNew(t, name)
		for _, c := range cases {
			ids := tok.Encode([]byte(c))
			if ids == nil {
				t.Errorf("%s: Encode(%q) = nil; want a non-nil slice", name, c)
			}
			for i, id := range ids {
				if id < 0 || int(id) >= tok.Vocab() {
					t.Fatalf("%s: Encode(%q)[%d] = %d, outside [0, %d)", name, c, i, id, tok.Vocab())
				}
			}
			got, err := tok.Decode(ids)
			if err != nil || string(got) != c {
				t.Errorf("%s: Decode(Encode(%q)) = %q, %v", name, c, got, err)
			}
		}
	}
}

// TestInvalidUTF8 pins how bytes that are not UTF-8 encode: each is a
// character of its own, neither letter, number nor space, so it joins the
// run of punctuation around it and cuts a run of letters.
func TestInvalidUTF8(t *testing.T) {
	tok := mustNew(t, NameGPT2)
	enc := func(s string) []int32 { return tok.Encode([]byte(s)) }
	cat := func(parts ...string) []int32 {
		var ids []int32
		for _, p := range parts {
			ids = append(ids, enc(p)...)
		}
		return ids
	}
	tests := []struct {
		text string
		want []int32
	}{
		{"a\xffb", cat("a", "\xff", "b")},
		{"ab\xc3", cat("ab", "\xc3")},
		{"x \xff!", cat("x", " \xff!")},
		{"\xe2\x82 x", cat("\xe2\x82", " x")},
	}
	for _, tt := range tests {
		if got := enc(tt.text); !slices.Equal(got, tt.want) {
			t.Errorf("Encode(%q) = %v; want %v", tt.text, got, tt.want)
		}
	}
	// A lone byte is its byte token.
	if got := enc("\xff"); len(got) != 1 || tok.TokenBytes(got[0]) != 1 {
		t.Errorf("Encode(\"\\xff\") = %v; want one byte token", got)
	}
}

// TestDecodeSplitsCharacters: a sampled sequence may stop inside a UTF-8
// character; decoding is byte-exact, token by token.
func TestDecodeSplitsCharacters(t *testing.T) {
	tok := mustNew(t, NameGPT2)
	text := "\U0001F600 \u4f60\u597d caf\u00e9"
	ids := tok.Encode([]byte(text))
	var joined []byte
	partial := false
	for _, id := range ids {
		b, err := tok.Decode([]int32{id})
		if err != nil {
			t.Fatal(err)
		}
		if len(b) != tok.TokenBytes(id) {
			t.Errorf("len(Decode([%d])) = %d; TokenBytes = %d", id, len(b), tok.TokenBytes(id))
		}
		partial = partial || !utf8.Valid(b)
		joined = append(joined, b...)
	}
	if string(joined) != text {
		t.Errorf("token by token: %q; want %q", joined, text)
	}
	if !partial {
		t.Errorf("no token of %v holds part of a character; the test needs one", ids)
	}
	// Every id decodes, to TokenBytes(id) bytes.
	all := make([]int32, tok.Vocab())
	for i := range all {
		all[i] = int32(i)
	}
	b, err := tok.Decode(all)
	if err != nil {
		t.Fatal(err)
	}
	if n, _ := CountBytes(tok, all); n != int64(len(b)) {
		t.Errorf("CountBytes(every id) = %d; len(Decode(every id)) = %d", n, len(b))
	}
}

func TestOutOfRange(t *testing.T) {
	for _, tt := range []struct {
		name string
		ids  []int32
		bad  string
	}{
		{NameGPT2, []int32{15496, 995, 50257}, "token 50257 at position 2"},
		{NameGPT2, []int32{-1}, "token -1 at position 0"},
		{NameBytes, []int32{104, 105, 256}, "token 256 at position 2"},
		{NameBytes, []int32{-5, 1}, "token -5 at position 0"},
	} {
		tok := mustNew(t, tt.name)
		_, err := tok.Decode(tt.ids)
		if !errors.Is(err, ErrTokenRange) || !strings.Contains(err.Error(), tt.bad) {
			t.Errorf("%s: Decode(%v) = %v; want ErrTokenRange naming %q", tt.name, tt.ids, err, tt.bad)
		}
		if _, err := CountBytes(tok, tt.ids); !errors.Is(err, ErrTokenRange) || !strings.Contains(err.Error(), tt.bad) {
			t.Errorf("%s: CountBytes(%v) = %v; want ErrTokenRange naming %q", tt.name, tt.ids, err, tt.bad)
		}
		for _, id := range tt.ids {
			if b := tok.TokenBytes(id); (id < 0 || int(id) >= tok.Vocab()) != (b == -1) {
				t.Errorf("%s: TokenBytes(%d) = %d; want -1 exactly outside [0, %d)", tt.name, id, b, tok.Vocab())
			}
		}
	}
}

func TestNew(t *testing.T) {
	for _, tt := range []struct {
		name  string
		vocab int
	}{{NameBytes, 256}, {NameGPT2, 50257}} {
		tok := mustNew(t, tt.name)
		if tok.Name() != tt.name || tok.Vocab() != tt.vocab {
			t.Errorf("New(%q): Name, Vocab = %q, %d; want %q, %d", tt.name, tok.Name(), tok.Vocab(), tt.name, tt.vocab)
		}
		if _, ok := tok.(Cutter); !ok {
			t.Errorf("New(%q) is not a Cutter", tt.name)
		}
	}
	for _, bad := range []string{"", "GPT2", "r50k_base", "bytes "} {
		if _, err := New(bad); !errors.Is(err, ErrUnknown) || !strings.Contains(err.Error(), "bytes, gpt2") {
			t.Errorf("New(%q) = %v; want ErrUnknown listing the names", bad, err)
		}
	}
}

func TestBytesTokenizer(t *testing.T) {
	tok := mustNew(t, NameBytes)
	text := []byte("h\xe9\x00\xff")
	if got := tok.Encode(text); !slices.Equal(got, []int32{'h', 0xe9, 0, 0xff}) {
		t.Errorf("Encode(%q) = %v", text, got)
	}
	for id := range int32(256) {
		if tok.TokenBytes(id) != 1 {
			t.Fatalf("TokenBytes(%d) = %d; want 1", id, tok.TokenBytes(id))
		}
	}
}

// stressTexts returns texts for the property tests: the golden file, the
// documentation, and seeded random bytes (invalid UTF-8 included).
func stressTexts(t *testing.T) [][]byte {
	t.Helper()
	var texts [][]byte
	for _, f := range append([]string{"testdata/stress.txt"}, docFiles(t)...) {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		texts = append(texts, b)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	alphabet := []string{"a", "b", "Z", "1", "9", " ", " ", "\n", "\t", "'", "s", "ll", ".", "!", "\u00e9", "\u4e00", "\u00a0", "\u3000", "\xff", "\xe2\x82", "\U0001F600", "\u0301"}
	for range 20 {
		var b []byte
		for range rng.IntN(3000) {
			b = append(b, alphabet[rng.IntN(len(alphabet))]...)
		}
		texts = append(texts, b)
	}
	return texts
}

func TestCutPanicsOutsideText(t *testing.T) {
	for _, name := range Names() {
		for _, from := range []int{-1, 4} {
			func() {
				defer func() {
					if r := recover(); r == nil || !strings.Contains(fmt.Sprint(r), "tokenizer: Cut from") {
						t.Errorf("%s: Cut(\"abc\", %d) recovered %v; want a panic", name, from, r)
					}
				}()
				mustNew(t, name).(Cutter).Cut([]byte("abc"), from)
			}()
		}
	}
}

// TestCut: cutting where Cut says changes nothing, at every position asked.
func TestCut(t *testing.T) {
	for _, name := range Names() {
		tok := mustNew(t, name)
		cut := tok.(Cutter)
		for ti, text := range stressTexts(t) {
			whole := tok.Encode(text)
			cuts := 0
			step := max(1, len(text)/150)
			for from := 0; from <= len(text); from += step {
				p := cut.Cut(text, from)
				if p < from || p > len(text) {
					t.Fatalf("%s: text %d: Cut(%d) = %d, outside [%d, %d]", name, ti, from, p, from, len(text))
				}
				if p < len(text) {
					cuts++
				}
				got := append(tok.Encode(text[:p]), tok.Encode(text[p:])...)
				if !slices.Equal(got, whole) {
					i := firstDiff(got, whole)
					t.Fatalf("%s: text %d: cut at %d (from %d) changes id %d: %q | %q", name, ti, p, from, i,
						text[max(0, p-10):p], text[p:min(len(text), p+10)])
				}
			}
			if len(text) > 1000 && cuts < 100 {
				t.Errorf("%s: text %d: only %d of about 150 requests found a place to cut", name, ti, cuts)
			}
		}
	}
}

func TestEncodeProgress(t *testing.T) {
	ctx := context.Background()
	for _, name := range Names() {
		tok := mustNew(t, name)
		for _, text := range stressTexts(t)[:3] {
			whole := tok.Encode(text)
			for _, chunk := range []int{1, 7, 100, 4096, 1 << 30} {
				var reports []int64
				got, err := encodeChunked(ctx, tok, text, chunk, func(done, total int64) {
					if total != int64(len(text)) {
						t.Fatalf("progress total %d; want %d", total, len(text))
					}
					reports = append(reports, done)
				})
				if err != nil || !slices.Equal(got, whole) {
					t.Fatalf("%s: chunk %d: encodeChunked differs from Encode (err %v)", name, chunk, err)
				}
				if !slices.IsSorted(reports) || len(reports) == 0 || reports[len(reports)-1] != int64(len(text)) {
					t.Errorf("%s: chunk %d: progress %v; want ascending, ending at %d", name, chunk, reports, len(text))
				}
				if want := min(len(text)/chunk, 10); len(reports) < want {
					t.Errorf("%s: chunk %d: %d progress reports; want at least %d", name, chunk, len(reports), want)
				}
			}
		}
	}
	// Empty text: no ids, no error.
	if ids, err := EncodeProgress(ctx, mustNew(t, NameGPT2), nil, nil); err != nil || ids == nil || len(ids) != 0 {
		t.Errorf("EncodeProgress(empty) = %v, %v; want [], nil", ids, err)
	}
	// A done context stops it.
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := EncodeProgress(cctx, mustNew(t, NameGPT2), []byte("some text"), nil); !errors.Is(err, context.Canceled) {
		t.Errorf("EncodeProgress(cancelled) = %v; want context.Canceled", err)
	}
}

// TestMergeHeapEqualsScan: the two merge paths give the same parts.
func TestMergeHeapEqualsScan(t *testing.T) {
	g := mustNew(t, NameGPT2).(*gpt2)
	rng := rand.New(rand.NewPCG(3, 4))
	words := []string{"the", "ing", "tion", "a", "b", "aa", "00", "0", "=", "ab", "er", "\xe4\xb8", "\x80", "re", "st"}
	var sc scratch
	for range 3000 {
		var piece []byte
		for len(piece) < 2+rng.IntN(heapMin-2) {
			piece = append(piece, words[rng.IntN(len(words))]...)
		}
		piece = piece[:min(len(piece), heapMin-1)]
		scan := g.merge(nil, piece, &sc)
		heap := g.mergeHeap(nil, piece, &sc)
		if !slices.Equal(scan, heap) {
			t.Fatalf("piece %q: scan %v, heap %v", piece, scan, heap)
		}
	}
}

func TestConcurrentUse(t *testing.T) {
	tok := mustNew(t, NameGPT2)
	text, err := os.ReadFile("testdata/stress.txt")
	if err != nil {
		t.Fatal(err)
	}
	want := tok.Encode(text)
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			if got := tok.Encode(text); !slices.Equal(got, want) {
				t.Error("concurrent Encode differs")
			}
		})
	}
	wg.Wait()
}

func FuzzRoundTrip(f *testing.F) {
	for _, s := range []string{"", "Hello world", "a\xffb", "'s'll", "  \n\n x", "\U0001F600\u00a0"} {
		f.Add([]byte(s))
	}
	tok := mustNew(f, NameGPT2)
	f.Fuzz(func(t *testing.T, text []byte) {
		ids := tok.Encode(text)
		got, err := tok.Decode(ids)
		if err != nil || !bytes.Equal(got, text) {
			t.Fatalf("Decode(Encode(%q)) = %q, %v", text, got, err)
		}
		if p := tok.(Cutter).Cut(text, len(text)/2); !slices.Equal(append(tok.Encode(text[:p]), tok.Encode(text[p:])...), ids) {
			t.Fatalf("cut at %d of %q changes the encoding", p, text)
		}
	})
}
