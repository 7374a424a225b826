package tokenizer

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/klring/klring/shard"
)

// counting wraps a tokenizer and counts Encode calls (it is no Cutter, so
// EncodeProgress calls Encode once).
type counting struct {
	Tokenizer
	calls int
}

func (c *counting) Encode(text []byte) []int32 { c.calls++; return c.Tokenizer.Encode(text) }

func logTo(buf *bytes.Buffer) *slog.Logger { return slog.New(slog.NewTextHandler(buf, nil)) }

func writeText(t *testing.T, dir, name, text string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

const sample = "The quick brown fox jumps over the lazy dog. Caf\u00e9 \U0001F600\n\n  It's 42.\n"

func TestEncodeFileNoCache(t *testing.T) {
	tok := mustNew(t, NameGPT2)
	path := writeText(t, t.TempDir(), "a.txt", sample)
	enc, err := EncodeFile(context.Background(), path, tok, FileOptions{})
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256([]byte(sample))
	if !slices.Equal(enc.IDs, tok.Encode([]byte(sample))) || enc.Bytes != int64(len(sample)) ||
		enc.SHA256 != hex.EncodeToString(sum[:]) || enc.CachePath != "" || enc.Cached {
		t.Errorf("EncodeFile = %+v", enc)
	}
	if _, err := EncodeFile(context.Background(), path+".missing", tok, FileOptions{}); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("EncodeFile(missing) = %v; want os.ErrNotExist", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := EncodeFile(ctx, path, tok, FileOptions{}); !errors.Is(err, context.Canceled) {
		t.Errorf("EncodeFile(cancelled) = %v; want context.Canceled", err)
	}
}

func TestEncodeFileCache(t *testing.T) {
	dir := t.TempDir()
	cache := filepath.Join(dir, "cache", "tokens") // created on demand
	path := writeText(t, dir, "a.txt", sample)
	tok := &counting{Tokenizer: mustNew(t, NameGPT2)}
	want := tok.Tokenizer.Encode([]byte(sample))
	var log bytes.Buffer

	first, err := EncodeFile(context.Background(), path, tok, FileOptions{CacheDir: cache, Log: logTo(&log)})
	if err != nil {
		t.Fatal(err)
	}
	if first.Cached || tok.calls != 1 || !slices.Equal(first.IDs, want) || first.CachePath == "" {
		t.Fatalf("first EncodeFile = %+v after %d Encode calls; want encoded once, an entry written", first, tok.calls)
	}
	if !strings.Contains(log.String(), "token cache miss") {
		t.Errorf("log %q; want a cache miss", log.String())
	}
	// The entry is an llm.c token file shard reads.
	d, err := shard.Open(shard.Options{Source: "tokens:" + first.CachePath, Ctx: 4, Vocab: tok.Vocab()})
	if err != nil {
		t.Fatal(err)
	}
	if d.NumTokens() != len(want) {
		t.Errorf("the entry holds %d tokens; want %d", d.NumTokens(), len(want))
	}
	d.Close()

	log.Reset()
	var reports [][2]int64
	second, err := EncodeFile(context.Background(), path, tok, FileOptions{CacheDir: cache, Log: logTo(&log),
		Progress: func(done, total int64) { reports = append(reports, [2]int64{done, total}) }})
	if err != nil {
		t.Fatal(err)
	}
	if !second.Cached || tok.calls != 1 || !slices.Equal(second.IDs, want) || second.CachePath != first.CachePath {
		t.Errorf("second EncodeFile = %+v after %d Encode calls; want the cache, no encoding", second, tok.calls)
	}
	if n := int64(len(sample)); !slices.Equal(reports, [][2]int64{{n, n}}) {
		t.Errorf("progress on a hit: %v; want one report of %d, %d", reports, n, n)
	}
	if !strings.Contains(log.String(), "token cache hit") {
		t.Errorf("log %q; want a cache hit", log.String())
	}

	// Another tokenizer and another text get entries of their own.
	bt := &counting{Tokenizer: mustNew(t, NameBytes)}
	if enc, err := EncodeFile(context.Background(), path, bt, FileOptions{CacheDir: cache}); err != nil || enc.Cached || bt.calls != 1 || len(enc.IDs) != len(sample) {
		t.Errorf("bytes tokenizer on the same text: %+v, %v after %d calls; want its own entry", enc, err, bt.calls)
	}
	other := writeText(t, dir, "b.txt", sample+"more")
	if enc, err := EncodeFile(context.Background(), other, tok, FileOptions{CacheDir: cache}); err != nil || enc.Cached || tok.calls != 2 {
		t.Errorf("another text: Cached %v, %v after %d calls; want a miss", enc.Cached, err, tok.calls)
	}
	ents, _ := os.ReadDir(cache)
	if len(ents) != 6 {
		t.Errorf("cache holds %d files; want 6 (3 entries of 2 files, no temporary files)", len(ents))
	}
}

// TestEncodeFileBadCache: every damaged entry is ignored with its reason
// logged, the text encoded again, and the entry rebuilt.
func TestEncodeFileBadCache(t *testing.T) {
	gpt := mustNew(t, NameGPT2)
	ids := gpt.Encode([]byte(sample))
	tests := []struct {
		name   string
		damage func(t *testing.T, bin, rec string)
		reason string
	}{
		{"truncated token file", func(t *testing.T, bin, rec string) { truncate(t, bin, 3) }, "SHA-256"},
		{"flipped byte", func(t *testing.T, bin, rec string) { flip(t, bin, 1030) }, "SHA-256"},
		{"token file missing", func(t *testing.T, bin, rec string) { os.Remove(bin) }, "no such file"},
		{"record not JSON", func(t *testing.T, bin, rec string) { os.WriteFile(rec, []byte("{"), 0o644) }, "record"},
		{"record of another tokenizer", func(t *testing.T, bin, rec string) {
			editRecord(t, rec, func(r *cacheRecord) { r.Tokenizer = "bytes" })
		}, "record"},
		{"record of another version", func(t *testing.T, bin, rec string) {
			editRecord(t, rec, func(r *cacheRecord) { r.Version = 0 })
		}, "record"},
		{"record with an unknown field", func(t *testing.T, bin, rec string) {
			b, _ := os.ReadFile(rec)
			os.WriteFile(rec, append([]byte(`{"extra":1,`), b[1:]...), 0o644)
		}, "unknown field"},
		{"count off by one", func(t *testing.T, bin, rec string) {
			editRecord(t, rec, func(r *cacheRecord) { r.Tokens++ })
		}, "the record says"},
		{"id outside the vocabulary", func(t *testing.T, bin, rec string) {
			bad := slices.Clone(ids)
			bad[2] = 60000
			if err := shard.WriteTokenFile(bin, shard.LLMC, bad); err != nil {
				t.Fatal(err)
			}
			b, _ := os.ReadFile(bin)
			sum := sha256.Sum256(b)
			editRecord(t, rec, func(r *cacheRecord) { r.FileSHA256 = hex.EncodeToString(sum[:]) })
		}, "token 60000 at position 2"},
		{"bad header", func(t *testing.T, bin, rec string) {
			b, _ := os.ReadFile(bin)
			b[4] = 2 // version
			os.WriteFile(bin, b, 0o644)
			sum := sha256.Sum256(b)
			editRecord(t, rec, func(r *cacheRecord) { r.FileSHA256 = hex.EncodeToString(sum[:]) })
		}, "version"},
	}
	for _, tt := range tests {
		dir := t.TempDir()
		path := writeText(t, dir, "a.txt", sample)
		tok := &counting{Tokenizer: gpt}
		o := FileOptions{CacheDir: filepath.Join(dir, "cache")}
		enc, err := EncodeFile(context.Background(), path, tok, o)
		if err != nil {
			t.Fatal(err)
		}
		tt.damage(t, enc.CachePath, strings.TrimSuffix(enc.CachePath, ".bin")+".json")
		var log bytes.Buffer
		o.Log = logTo(&log)
		again, err := EncodeFile(context.Background(), path, tok, o)
		if err != nil || again.Cached || tok.calls != 2 || !slices.Equal(again.IDs, ids) {
			t.Errorf("%s: EncodeFile = Cached %v, %v after %d calls; want the text encoded again", tt.name, again.Cached, err, tok.calls)
		}
		if l := log.String(); !strings.Contains(l, "token cache entry ignored") || !strings.Contains(l, tt.reason) {
			t.Errorf("%s: log %q; want the entry ignored because of %q", tt.name, l, tt.reason)
		}
		if third, err := EncodeFile(context.Background(), path, tok, o); err != nil || !third.Cached || !slices.Equal(third.IDs, ids) {
			t.Errorf("%s: after the rebuild: Cached %v, %v; want a hit", tt.name, third.Cached, err)
		}
	}
}

func TestEncodeFileCacheEdges(t *testing.T) {
	dir := t.TempDir()
	tok := mustNew(t, NameGPT2)
	// An empty text: no ids, nothing cached.
	empty := writeText(t, dir, "empty.txt", "")
	cache := filepath.Join(dir, "cache")
	if enc, err := EncodeFile(context.Background(), empty, tok, FileOptions{CacheDir: cache}); err != nil || enc.IDs == nil || len(enc.IDs) != 0 || enc.CachePath != "" {
		t.Errorf("EncodeFile(empty) = %+v, %v; want no ids, no entry", enc, err)
	}
	// A cache that cannot be written: the ids, a warning, no entry.
	blocked := writeText(t, dir, "blocked", "a file where the cache folder should be")
	path := writeText(t, dir, "a.txt", sample)
	var log bytes.Buffer
	enc, err := EncodeFile(context.Background(), path, tok, FileOptions{CacheDir: blocked, Log: logTo(&log)})
	if err != nil || enc.CachePath != "" || len(enc.IDs) == 0 {
		t.Errorf("EncodeFile with an unwritable cache = %+v, %v; want the ids and no entry", enc, err)
	}
	if !strings.Contains(log.String(), "token cache not written") {
		t.Errorf("log %q; want a warning", log.String())
	}
}

func truncate(t *testing.T, path string, by int64) {
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(path, st.Size()-by); err != nil {
		t.Fatal(err)
	}
}

func flip(t *testing.T, path string, at int) {
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	b[at] ^= 1
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

func editRecord(t *testing.T, path string, edit func(*cacheRecord)) {
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var r cacheRecord
	if err := json.Unmarshal(b, &r); err != nil {
		t.Fatal(err)
	}
	edit(&r)
	if b, err = json.Marshal(r); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}
