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
