package cli

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/klring/klring/engine"
	"github.com/klring/klring/kernels"
	"github.com/klring/klring/lm"
	"github.com/klring/klring/teacherstore"
)

// run runs `coordinator args...` and returns its standard output and error
// streams.
func run(t *testing.T, args ...string) (string, string, error) {
	t.Helper()
	c := Coordinator()
	var out, errOut bytes.Buffer
	c.SetOut(&out)
	c.SetErr(&errOut)
	c.SetArgs(args)
	err := c.ExecuteContext(context.Background())
	return out.String(), errOut.String(), err
}

// tinyTeacher saves a small random GPT-2 (vocabulary 256, context 16) as a
// checkpoint folder.
func tinyTeacher(t *testing.T) string {
	t.Helper()
	m, err := lm.New(lm.Config{Vocab: 256, NEmbd: 16, NLayer: 1, NHead: 2, Ctx: 16}, kernels.NewPool(1))
	if err != nil {
		t.Fatal(err)
	}
	m.Init(1)
	dir := filepath.Join(t.TempDir(), "teacher")
	if err := lm.SaveCheckpoint(dir, m, nil); err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestTeacherDump(t *testing.T) {
	teacher := tinyTeacher(t)
	dir := t.TempDir()
	text := filepath.Join(dir, "a.txt")
	if err := os.WriteFile(text, bytes.Repeat([]byte("the teacher knows the next byte. "), 40), 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "t.topk")
	stdout, _, err := run(t, "teacher-dump", "--teacher", teacher, "--data", "text:"+text, "--top-k", "8", "--dtype", "float16",
		"--temperature", "2", "--out", out, "--batch", "3", "--threads", "1")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"82 of 16 tokens (1312 tokens)", "8 of 256, float16, temperature 2", "mean kept mass", "(36.0 in the records", "tokens/s"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("teacher-dump output lacks %q:\n%s", want, stdout)
		}
	}
	s, err := teacherstore.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	sha, _ := teacherstore.TeacherSHA256(teacher)
	if err := s.Check(teacherstore.Header{TeacherSHA256: sha, Vocab: 256, Ctx: 16, K: 8, Temperature: 2}); err != nil {
		t.Fatal(err)
	}
	// Again: the store is complete.
	stdout, _, err = run(t, "teacher-dump", "--teacher", teacher, "--data", "text:"+text, "--top-k", "8", "--dtype", "float16",
		"--temperature", "2", "--out", out)
	if err != nil || !strings.Contains(stdout, "already complete") {
		t.Fatalf("second teacher-dump: %v\n%s", err, stdout)
	}
	// Another k over the same output is refused, naming it.
	if _, _, err := run(t, "teacher-dump", "--teacher", teacher, "--data", "text:"+text, "--top-k", "4", "--dtype", "float16",
		"--temperature", "2", "--out", out); err == nil || !strings.Contains(err.Error(), "k: store 8, want 4") {
		t.Fatalf("teacher-dump with another k over a store: %v", err)
	}
}

func TestTeacherDumpBadInput(t *testing.T) {
	teacher := tinyTeacher(t)
	out := filepath.Join(t.TempDir(), "x.topk")
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--data", "synthetic", "--top-k", "4", "--out", out}, "--teacher is required"},
		{[]string{"--teacher", teacher, "--top-k", "4", "--out", out}, "--data is required"},
		{[]string{"--teacher", teacher, "--data", "synthetic", "--out", out}, "--top-k = 0"},
		{[]string{"--teacher", teacher, "--data", "synthetic", "--top-k", "4"}, "--out is required"},
		{[]string{"--teacher", teacher, "--data", "synthetic", "--top-k", "300", "--out", out}, "the teacher's vocabulary is 256"},
		{[]string{"--teacher", teacher, "--data", "synthetic", "--top-k", "4", "--out", out, "--dtype", "int8"}, `dtype "int8"`},
		{[]string{"--teacher", teacher, "--data", "synthetic", "--top-k", "4", "--out", out, "--ctx", "32"}, "--ctx = 32"},
		{[]string{"--teacher", teacher, "--data", "synthetic", "--top-k", "4", "--out", out, "--temperature", "0"}, "--temperature = 0"},
		{[]string{"--teacher", t.TempDir(), "--data", "synthetic", "--top-k", "4", "--out", out}, "--teacher"},
		{[]string{"--teacher", teacher, "--data", "synthetic", "--top-k", "4", "--out", out, "--ctx", "-5"}, "--ctx = -5"},
		{[]string{"--teacher", teacher, "--data", "synthetic", "--top-k", "4", "--out", out, "--batch", "0"}, "--batch = 0"},
		{[]string{"--teacher", teacher, "--data", "synthetic", "--top-k", "4", "--out", out, "--batch", "-3"}, "--batch = -3"},
		{[]string{"--teacher", teacher, "--data", "synthetic", "--top-k", "4", "--out", out, "--threads", "-1"}, "--threads = -1"},
		{[]string{"--teacher", teacher, "--data", "synthetic", "--top-k", "4", "--out", out, "--tokenizer", "gpt2"}, `--tokenizer "gpt2"`},
		{[]string{"--teacher", teacher, "--data", "synthetic", "--top-k", "4", "--out", out, "--tokenizer", "gpt3"}, `--tokenizer "gpt3": want one of`},
		{[]string{"--teacher", teacher, "--data", "synthetic:modes=2", "--top-k", "4", "--out", out, "--tokenizer", "gpt2"}, `--tokenizer "gpt2"`},
	} {
		_, _, err := run(t, append([]string{"teacher-dump"}, tc.args...)...)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("teacher-dump %v: error %v; want one saying %q", tc.args, err, tc.want)
		}
	}
	if _, err := os.Stat(out); err == nil {
		t.Error("a refused teacher-dump wrote its output")
	}
}

// TestTeacherDumpOtherData: a store of another synthetic corpus is refused
// with a message that says which SHA-256 is the store's and which the
// data's, and what makes synthetic corpora differ.
func TestTeacherDumpOtherData(t *testing.T) {
	teacher := tinyTeacher(t)
	out := filepath.Join(t.TempDir(), "s.topk")
	args := []string{"teacher-dump", "--teacher", teacher, "--data", "synthetic:tokens=200", "--top-k", "2", "--out", out, "--threads", "1"}
	if _, _, err := run(t, args...); err != nil {
		t.Fatal(err)
	}
	_, _, err := run(t, append(args, "--data.seed", "2")...)
	if err == nil || !strings.Contains(err.Error(), "data (sha256: store ") || !strings.Contains(err.Error(), ", want ") ||
		!strings.Contains(err.Error(), "seed") || !strings.Contains(err.Error(), "modes") {
		t.Fatalf("teacher-dump of another seed over a store: %v; want the store's and the wanted SHA-256 labelled, and the seed or modes named", err)
	}
}

// --temperature ±Inf (and NaN) is refused before the teacher or the data
// are loaded: with --teacher and --data that do not exist the error is
// still the flag's.
func TestTeacherDumpInfiniteTemperature(t *testing.T) {
	dir := t.TempDir()
	for _, temp := range []string{"+Inf", "-Inf", "inf", "NaN"} {
		_, _, err := run(t, "teacher-dump", "--teacher", filepath.Join(dir, "none"), "--data", "text:"+filepath.Join(dir, "none.txt"),
			"--top-k", "4", "--out", filepath.Join(dir, "x.topk"), "--temperature", temp)
		if err == nil || !strings.HasPrefix(err.Error(), "--temperature = ") || !strings.Contains(err.Error(), ": want a finite number > 0") {
			t.Errorf("teacher-dump --temperature %s: %v; want the flag refused up front", temp, err)
		}
	}
}

// A --tokenizer other than the one the teacher's checkpoint records is
// refused, naming both, and writes nothing; the same one, or none, is
// the teacher's.
func TestTeacherDumpTokenizerMismatch(t *testing.T) {
	dir := t.TempDir()
	text := filepath.Join(dir, "a.txt")
	if err := os.WriteFile(text, bytes.Repeat([]byte("the teacher knows the next byte. "), 10), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ recorded, given string }{{"gpt2", "bytes"}, {"bytes", "gpt2"}} {
		teacher := tinyTeacher(t)
		if err := engine.WriteTokenizerConfig(teacher, tc.recorded, 16); err != nil {
			t.Fatal(err)
		}
		out := filepath.Join(dir, tc.recorded+".topk")
		_, _, err := run(t, "teacher-dump", "--teacher", teacher, "--data", "text:"+text, "--tokenizer", tc.given, "--top-k", "4",
			"--out", out, "--threads", "1", "--data.cache_dir", filepath.Join(dir, "cache"))
		if err == nil || !strings.Contains(err.Error(), `--tokenizer "`+tc.given+`"`) || !strings.Contains(err.Error(), `trained with the "`+tc.recorded+`" tokenizer`) {
			t.Errorf("teacher-dump --tokenizer %s of a teacher recording %s: %v; want it refused naming both", tc.given, tc.recorded, err)
		}
		for _, p := range []string{out, teacherstore.PartialPath(out)} {
			if _, err := os.Stat(p); err == nil {
				t.Errorf("a refused teacher-dump wrote %s", p)
			}
		}
	}
	teacher := tinyTeacher(t)
	if err := engine.WriteTokenizerConfig(teacher, "bytes", 16); err != nil {
		t.Fatal(err)
	}
	for i, tok := range [][]string{{"--tokenizer", "bytes"}, nil} {
		args := append([]string{"teacher-dump", "--teacher", teacher, "--data", "text:" + text, "--top-k", "4",
			"--out", filepath.Join(dir, fmt.Sprintf("same%d.topk", i)), "--threads", "1"}, tok...)
		if _, _, err := run(t, args...); err != nil {
			t.Errorf("teacher-dump %v of a teacher recording bytes: %v", tok, err)
		}
	}
}

// Data of a larger vocabulary than the teacher's is refused naming the
// data as given (and its tokenizer), not the tokenizer's cache file.
func TestTeacherDumpDataVocabulary(t *testing.T) {
	teacher := tinyTeacher(t) // vocabulary 256, no tokenizer recorded
	dir := t.TempDir()
	text := filepath.Join(dir, "a.txt")
	if err := os.WriteFile(text, bytes.Repeat([]byte("the teacher knows the next token. "), 10), 0o644); err != nil {
		t.Fatal(err)
	}
	cache := filepath.Join(dir, "cache")
	_, _, err := run(t, "teacher-dump", "--teacher", teacher, "--data", "text:"+text, "--tokenizer", "gpt2", "--top-k", "4",
		"--out", filepath.Join(dir, "x.topk"), "--threads", "1", "--data.cache_dir", cache)
	want := "--data text:" + text + " with the gpt2 tokenizer "
	if err == nil || !strings.HasPrefix(err.Error(), want) || !strings.Contains(err.Error(), "vocabulary 50257, more than the teacher's 256") {
		t.Fatalf("teacher-dump of gpt2 tokens with a teacher of 256: %v; want it to start %q and name both vocabularies", err, want)
	}
	if strings.Count(err.Error(), cache) != strings.Count(err.Error(), "(tokens cached in "+cache) {
		t.Errorf("teacher-dump of gpt2 tokens with a teacher of 256: %v; the cache file is named other than in parentheses", err)
	}
}
