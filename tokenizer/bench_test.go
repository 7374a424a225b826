package tokenizer

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// corpus returns text without repetition: "repo" is every .go and .md
// file of the repository (source, comments, prose; about 0.8 MB), "stress"
// is testdata/stress.txt (random text over every character class, 64 KB).
func corpus(b *testing.B, kind string) []byte {
	b.Helper()
	if kind == "stress" {
		text, err := os.ReadFile("testdata/stress.txt")
		if err != nil {
			b.Fatal(err)
		}
		return text
	}
	var text []byte
	err := filepath.WalkDir("..", func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && strings.HasPrefix(d.Name(), ".") && path != ".." {
			return filepath.SkipDir
		}
		if ext := filepath.Ext(path); !d.IsDir() && (ext == ".go" || ext == ".md") {
			t, err := os.ReadFile(path)
			text = append(text, t...)
			return err
		}
		return nil
	})
	if err != nil {
		b.Fatal(err)
	}
	return text
}

// BenchmarkEncode: MB/s of text and tokens/s.
func BenchmarkEncode(b *testing.B) {
	for _, kind := range []string{"repo", "stress"} {
		b.Run(kind, func(b *testing.B) {
			tok := mustNew(b, NameGPT2)
			text := corpus(b, kind)
			b.SetBytes(int64(len(text)))
			var n int
			for b.Loop() {
				n = len(tok.Encode(text))
			}
			b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "tokens/s")
			b.ReportMetric(float64(len(text))/float64(n), "bytes/token")
		})
	}
}

func BenchmarkDecode(b *testing.B) {
	tok := mustNew(b, NameGPT2)
	text := corpus(b, "repo")
	ids := tok.Encode(text)
	b.SetBytes(int64(len(text)))
	for b.Loop() {
		if _, err := tok.Decode(ids); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(len(ids))*float64(b.N)/b.Elapsed().Seconds(), "tokens/s")
}

// BenchmarkNew: building gpt2's tables.
func BenchmarkNew(b *testing.B) {
	for b.Loop() {
		mustNew(b, NameGPT2)
	}
}
