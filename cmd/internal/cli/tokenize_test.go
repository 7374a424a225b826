package cli

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/klring/klring/shard"
	"github.com/klring/klring/tokenizer"
)

// tokenize runs `coordinator tokenize args...` and returns its standard
// output and error streams.
func tokenize(t *testing.T, args ...string) (string, string, error) {
	t.Helper()
	c := Coordinator()
	var out, errOut bytes.Buffer
	c.SetOut(&out)
	c.SetErr(&errOut)
	c.SetArgs(append([]string{"tokenize"}, args...))
	err := c.ExecuteContext(context.Background())
	return out.String(), errOut.String(), err
}

const tokenizeText = "Hello world, and caf\u00e9 \U0001F600!\n\n  It's 2024: don't stop.\n"

func TestTokenize(t *testing.T) {
	dir := t.TempDir()
	in := filepath.Join(dir, "input.txt")
	if err := os.WriteFile(in, []byte(tokenizeText), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		tok, format string
		size        func(n int) int64
	}{
		{"gpt2", "", func(n int) int64 { return 1024 + 2*int64(n) }}, // llmc by default
		{"gpt2", "nanogpt", func(n int) int64 { return 2 * int64(n) }},
		{"bytes", "llmc", func(n int) int64 { return 1024 + 2*int64(n) }},
	} {
		outPath := filepath.Join(dir, tt.tok+tt.format+".bin")
		args := []string{"--data", "text:" + in, "--tokenizer", tt.tok, "--out", outPath}
		if tt.format != "" {
			args = append(args, "--format", tt.format)
		}
		stdout, _, err := tokenize(t, args...)
		if err != nil {
			t.Fatalf("tokenize %v = %v", args, err)
		}
		tok, err := tokenizer.New(tt.tok)
		if err != nil {
			t.Fatal(err)
		}
		want := tok.Encode([]byte(tokenizeText))
		if tt.tok == "gpt2" && !slices.Equal(want[:3], []int32{15496, 995, 11}) {
			t.Fatalf("gpt2 ids start %v; want Hello world, = [15496 995 11]", want[:3])
		}
		got, err := shard.ReadTokenFile(outPath)
		if err != nil || !slices.Equal(got, want) {
			t.Errorf("%s %s: the file holds %v, %v; want %v", tt.tok, tt.format, got, err, want)
		}
		d, err := shard.Open(shard.Options{Source: "tokens:" + outPath, Ctx: 4, Vocab: tok.Vocab()})
		if err != nil {
			t.Fatalf("%s %s: shard.Open = %v", tt.tok, tt.format, err)
		}
		if d.NumTokens() != len(want) {
			t.Errorf("%s %s: shard reads %d tokens; want %d", tt.tok, tt.format, d.NumTokens(), len(want))
		}
		d.Close()
		st, _ := os.Stat(outPath)
		if st.Size() != tt.size(len(want)) {
			t.Errorf("%s %s: %d bytes; want %d", tt.tok, tt.format, st.Size(), tt.size(len(want)))
		}
		for _, s := range []string{
			fmt.Sprintf("tokens        %d\n", len(want)),
			fmt.Sprintf("bytes         %d\n", len(tokenizeText)),
			fmt.Sprintf("bytes/token   %.3f\n", float64(len(tokenizeText))/float64(len(want))),
			outPath,
		} {
			if !strings.Contains(stdout, s) {
				t.Errorf("%s %s: summary %q lacks %q", tt.tok, tt.format, stdout, s)
			}
		}
	}
}

// TestTokenizeProgress: off a terminal, progress is log lines, the last at
// the end of the text.
func TestTokenizeProgress(t *testing.T) {
	dir := t.TempDir()
	in := filepath.Join(dir, "big.txt")
	text := strings.Repeat("The quick brown fox jumps over the lazy dog. ", 20000) // 900 KB
	if err := os.WriteFile(in, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	_, stderr, err := tokenize(t, "--data", "text:"+in, "--out", filepath.Join(dir, "big.bin"))
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Count(stderr, "msg=tokenizing")
	if lines < 3 || !strings.Contains(stderr, fmt.Sprintf("bytes=%d of=%d", len(text), len(text))) {
		t.Errorf("progress log:\n%s\nwant several lines, the last at %d bytes", stderr, len(text))
	}
}

func TestTokenizeBadInput(t *testing.T) {
	dir := t.TempDir()
	in := filepath.Join(dir, "input.txt")
	os.WriteFile(in, []byte(tokenizeText), 0o644)
	empty := filepath.Join(dir, "empty.txt")
	os.WriteFile(empty, nil, 0o644)
	out := filepath.Join(dir, "out.bin")
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"--out", out}, `--data "": want text:PATH`},
		{[]string{"--data", "tokens:" + in, "--out", out}, "want text:PATH"},
		{[]string{"--data", "synthetic", "--out", out}, "want text:PATH"},
		{[]string{"--data", "text:", "--out", out}, "want text:PATH"},
		{[]string{"--data", "text:" + in}, "--out is required"},
		{[]string{"--data", "text:" + in, "--out", out, "--tokenizer", "gpt3"}, `--tokenizer: tokenizer "gpt3", want one of bytes, gpt2`},
		{[]string{"--data", "text:" + in, "--out", out, "--format", "raw"}, `--format: token file format "raw", want nanogpt or llmc`},
		{[]string{"--data", "text:" + filepath.Join(dir, "missing.txt"), "--out", out}, "missing.txt: no such file"},
		{[]string{"--data", "text:" + empty, "--out", out}, "empty.txt is empty"},
		{[]string{"--data", "text:" + in, "--out", in}, "is the text itself"},
		{[]string{"--data", "text:" + in, "--out", filepath.Join(dir, "no", "out.bin")}, "no such file"},
		{[]string{"--data", "text:" + in, "--out", out, "extra"}, `unknown command "extra"`},
	}
	for _, tt := range tests {
		_, _, err := tokenize(t, tt.args...)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("tokenize %v = %v; want an error containing %q", tt.args, err, tt.want)
		}
	}
	if _, err := os.Stat(out); !os.IsNotExist(err) {
		t.Errorf("a failed tokenize left %s (%v)", out, err)
	}
	if b, _ := os.ReadFile(in); string(b) != tokenizeText {
		t.Errorf("the input changed")
	}
}

// TestTokenizeExistingOut: an existing --out is replaced only when it is an
// llm.c token file, or with --force; anything else (a checkpoint's weights,
// a headerless file) is refused and left as it was.
func TestTokenizeExistingOut(t *testing.T) {
	dir := t.TempDir()
	in := filepath.Join(dir, "input.txt")
	if err := os.WriteFile(in, []byte(tokenizeText), 0o644); err != nil {
		t.Fatal(err)
	}
	want, err := tokenizer.New("gpt2")
	if err != nil {
		t.Fatal(err)
	}
	ids := want.Encode([]byte(tokenizeText))
	weights := []byte("{\"__metadata__\":{}}not tokens at all")
	for _, tt := range []struct {
		name    string
		old     func(path string) error
		force   bool
		refused bool
	}{
		{"weights", func(p string) error { return os.WriteFile(p, weights, 0o644) }, false, true},
		{"empty", func(p string) error { return os.WriteFile(p, nil, 0o644) }, false, true},
		{"nanogpt", func(p string) error { return shard.WriteTokenFile(p, shard.NanoGPT, []int32{1, 2, 3}) }, false, true},
		{"llmc", func(p string) error { return shard.WriteTokenFile(p, shard.LLMC, []int32{1, 2, 3}) }, false, false},
		{"weights forced", func(p string) error { return os.WriteFile(p, weights, 0o644) }, true, false},
		{"nanogpt forced", func(p string) error { return shard.WriteTokenFile(p, shard.NanoGPT, []int32{1, 2, 3}) }, true, false},
	} {
		out := filepath.Join(dir, strings.ReplaceAll(tt.name, " ", "-")+".bin")
		if err := tt.old(out); err != nil {
			t.Fatal(err)
		}
		before, _ := os.ReadFile(out)
		args := []string{"--data", "text:" + in, "--out", out}
		if tt.force {
			args = append(args, "--force")
		}
		_, stderr, err := tokenize(t, args...)
		after, _ := os.ReadFile(out)
		if tt.refused {
			if err == nil || !strings.Contains(err.Error(), "--out "+out) || !strings.Contains(err.Error(), "--force") {
				t.Errorf("%s: tokenize over an existing file = %v; want an error naming --out %s and --force", tt.name, err, out)
			}
			if !bytes.Equal(after, before) {
				t.Errorf("%s: a refused tokenize changed %s", tt.name, out)
			}
			if strings.Contains(stderr, "msg=tokenizing") {
				t.Errorf("%s: refused only after tokenizing:\n%s", tt.name, stderr)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: tokenize = %v", tt.name, err)
			continue
		}
		if got, err := shard.ReadTokenFile(out); err != nil || !slices.Equal(got, ids) {
			t.Errorf("%s: %s holds %v, %v; want %v", tt.name, out, got, err, ids)
		}
	}
	// --force does not make the text its own output.
	if _, _, err := tokenize(t, "--data", "text:"+in, "--out", in, "--force"); err == nil || !strings.Contains(err.Error(), "is the text itself") {
		t.Errorf("tokenize --out the input --force = %v; want it refused", err)
	}
	// A folder is not a file to replace.
	if _, _, err := tokenize(t, "--data", "text:"+in, "--out", dir, "--force"); err == nil || !strings.Contains(err.Error(), "--out "+dir) {
		t.Errorf("tokenize --out a folder = %v; want an error naming --out", err)
	}
}

// TestTokenizeOutFolder: a folder of --out that is missing, not a folder or
// not writable is reported before the text is tokenized, naming --out and
// not the temporary file.
func TestTokenizeOutFolder(t *testing.T) {
	dir := t.TempDir()
	in := filepath.Join(dir, "input.txt")
	if err := os.WriteFile(in, []byte(tokenizeText), 0o644); err != nil {
		t.Fatal(err)
	}
	ro := filepath.Join(dir, "ro")
	if err := os.Mkdir(ro, 0o555); err != nil {
		t.Fatal(err)
	}
	cases := []struct{ out, want string }{
		{filepath.Join(dir, "no", "out.bin"), "no such file"},
		{filepath.Join(in, "out.bin"), "not a folder"},
	}
	// Root writes in a read-only folder anyway.
	if f, err := os.CreateTemp(ro, "probe"); err == nil {
		f.Close()
		os.Remove(f.Name())
	} else {
		cases = append(cases, struct{ out, want string }{filepath.Join(ro, "out.bin"), "permission denied"})
	}
	for _, tc := range cases {
		_, stderr, err := tokenize(t, "--data", "text:"+in, "--out", tc.out)
		if err == nil || !strings.Contains(err.Error(), "--out "+tc.out) || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), ".tmp-") {
			t.Errorf("tokenize --out %s = %v; want an error naming --out and saying %q", tc.out, err, tc.want)
		}
		if strings.Contains(stderr, "msg=tokenizing") {
			t.Errorf("--out %s: refused only after tokenizing:\n%s", tc.out, stderr)
		}
	}
	if ents, _ := os.ReadDir(ro); len(ents) != 0 {
		t.Errorf("the read-only folder holds %d files", len(ents))
	}
}
