package tokenizer

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/klring/klring/shard"
)

// cacheVersion is part of every cache entry's name and record. Change it
// when a tokenizer's encoding changes, so old entries are not used.
const cacheVersion = 1

// FileOptions says how EncodeFile caches and reports. The zero value caches
// nothing, logs nothing and reports no progress.
type FileOptions struct {
	// CacheDir holds the token cache ("" for none); it is created if
	// missing.
	CacheDir string
	// Log gets a line for each cache hit, miss, rebuild (with the reason an
	// entry was not used) and failed cache write; nil logs nothing.
	Log *slog.Logger
	// Progress, if not nil, is called with the bytes encoded so far and the
	// text's length (see EncodeProgress); once, with both equal, on a cache
	// hit.
	Progress func(done, total int64)
}

// Encoded is the encoding of a text file.
type Encoded struct {
	IDs    []int32 // the ids of the whole text, nothing added
	Bytes  int64   // the length of the text
	SHA256 string  // the text's SHA-256, hex
	// CachePath is the cache entry holding IDs: an llm.c token file, which
	// shard's tokens:PATH source maps. "" without a cache, for an empty
	// text, or if the entry could not be written.
	CachePath string
	Cached    bool // IDs were read from the cache
}

// cacheRecord is the JSON beside a cache entry's token file, written after
// it: an entry without its record, or whose record does not match, is not
// used.
type cacheRecord struct {
	Version      int    `json:"version"`
	Tokenizer    string `json:"tokenizer"`
	Vocab        int    `json:"vocab"`
	SourceSHA256 string `json:"source_sha256"`
	SourceBytes  int64  `json:"source_bytes"`
	Tokens       int    `json:"tokens"`
	FileSHA256   string `json:"file_sha256"` // of the token file
}

// fileSafe says whether a tokenizer's name can be part of a file name:
// lower-case letters, digits, '_', '-' and '.', not first.
func fileSafe(name string) bool {
	for i, c := range []byte(name) {
		if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || i > 0 && (c == '_' || c == '-' || c == '.')) {
			return false
		}
	}
	return name != ""
}

// EncodeFile returns the ids of the text file at path. With o.CacheDir it
// first looks for a cache entry keyed by the text's SHA-256 and the
// tokenizer's name; an entry is used only if its record names this text,
// tokenizer and vocabulary and the token file's SHA-256, header, count and
// ids all check out. Any other entry (corrupt, truncated, foreign) is
// ignored, the reason logged, and rebuilt. A new entry is written
// atomically (temporary file, fsync, rename), the token file before its
// record; failing to write it is logged, not an error. Encoding stops with
// ctx's error if ctx is done.
func EncodeFile(ctx context.Context, path string, tok Tokenizer, o FileOptions) (Encoded, error) {
	log := o.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	text, err := os.ReadFile(path)
	if err != nil {
		return Encoded{}, fmt.Errorf("tokenizing: %w", err)
	}
	sum := sha256.Sum256(text)
	enc := Encoded{Bytes: int64(len(text)), SHA256: hex.EncodeToString(sum[:])}
	var bin, rec string
	if o.CacheDir != "" {
		if !fileSafe(tok.Name()) {
			return Encoded{}, fmt.Errorf("tokenizing %s: tokenizer name %q cannot name a cache file: %w", path, tok.Name(), ErrCache)
		}
		if tok.Vocab() > shard.MaxVocab {
			return Encoded{}, fmt.Errorf("tokenizing %s: %s's vocabulary %d does not fit the uint16 token cache: %w", path, tok.Name(), tok.Vocab(), ErrCache)
		}
		base := filepath.Join(o.CacheDir, fmt.Sprintf("%s.%s.v%d", enc.SHA256, tok.Name(), cacheVersion))
		bin, rec = base+".bin", base+".json"
		ids, err := readCache(bin, rec, tok, enc)
		switch {
		case err == nil:
			log.Info("token cache hit", "text", path, "tokenizer", tok.Name(), "tokens", len(ids), "cache", bin)
			if o.Progress != nil {
				o.Progress(enc.Bytes, enc.Bytes)
			}
			enc.IDs, enc.CachePath, enc.Cached = ids, bin, true
			return enc, nil
		case errors.Is(err, os.ErrNotExist):
			log.Info("token cache miss: tokenizing", "text", path, "tokenizer", tok.Name(), "bytes", enc.Bytes, "cache", bin)
		default:
			log.Warn("token cache entry ignored, rebuilding it", "text", path, "tokenizer", tok.Name(), "cache", bin, "reason", err)
		}
	}
	if enc.IDs, err = EncodeProgress(ctx, tok, text, o.Progress); err != nil {
		return Encoded{}, fmt.Errorf("tokenizing %s: %w", path, err)
	}
	if o.CacheDir == "" {
		return enc, nil
	}
	if len(enc.IDs) == 0 {
		log.Info("empty text: nothing to cache", "text", path)
		return enc, nil
	}
	if err := writeCache(o.CacheDir, bin, rec, tok, enc); err != nil {
		log.Warn("token cache not written", "text", path, "cache", bin, "err", err)
		return enc, nil
	}
	enc.CachePath = bin
	return enc, nil
}

// readCache returns the ids of a cache entry, or why it cannot be used
// (os.ErrNotExist if its record is missing).
func readCache(bin, rec string, tok Tokenizer, want Encoded) ([]int32, error) {
	rb, err := os.ReadFile(rec)
	if err != nil {
		return nil, err
	}
	var r cacheRecord
	dec := json.NewDecoder(bytes.NewReader(rb))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&r); err != nil {
		return nil, fmt.Errorf("record %s: %w: %w", rec, err, ErrCache)
	}
	wantRec := cacheRecord{cacheVersion, tok.Name(), tok.Vocab(), want.SHA256, want.Bytes, r.Tokens, r.FileSHA256}
	if r != wantRec {
		return nil, fmt.Errorf("record %s is %+v, want %+v: %w", rec, r, wantRec, ErrCache)
	}
	b, err := os.ReadFile(bin)
	if err != nil {
		return nil, fmt.Errorf("token file of record %s: %v: %w", rec, err, ErrCache) // not os.ErrNotExist: the entry is damaged
	}
	if sum := sha256.Sum256(b); hex.EncodeToString(sum[:]) != r.FileSHA256 {
		return nil, fmt.Errorf("%s: SHA-256 %x, the record says %s: %w", bin, sum, r.FileSHA256, ErrCache)
	}
	ids, err := shard.ParseTokens(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w: %w", bin, err, ErrCache)
	}
	if len(ids) != r.Tokens {
		return nil, fmt.Errorf("%s: %d tokens, the record says %d: %w", bin, len(ids), r.Tokens, ErrCache)
	}
	for i, id := range ids {
		if int(id) >= r.Vocab {
			return nil, fmt.Errorf("%s: token %d at position %d, vocabulary %d: %w", bin, id, i, r.Vocab, ErrCache)
		}
	}
	return ids, nil
}

func writeCache(dir, bin, rec string, tok Tokenizer, enc Encoded) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	var file bytes.Buffer
	if err := shard.WriteTokens(&file, shard.LLMC, enc.IDs); err != nil {
		return err
	}
	sum := sha256.Sum256(file.Bytes())
	r, err := json.MarshalIndent(cacheRecord{
		Version: cacheVersion, Tokenizer: tok.Name(), Vocab: tok.Vocab(),
		SourceSHA256: enc.SHA256, SourceBytes: enc.Bytes,
		Tokens: len(enc.IDs), FileSHA256: hex.EncodeToString(sum[:]),
	}, "", "  ")
	if err != nil {
		return err
	}
	if err := writeAtomic(bin, file.Bytes()); err != nil {
		return err
	}
	return writeAtomic(rec, append(r, '\n'))
}

// writeAtomic writes b to path through a temporary file in its folder:
// synced, renamed over path, the folder synced. On error path is untouched
// and the temporary file removed.
func writeAtomic(path string, b []byte) (err error) {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	if _, err = f.Write(b); err != nil {
		return err
	}
	if err = f.Chmod(0o644); err != nil {
		return err
	}
	if err = f.Sync(); err != nil {
		return err
	}
	if err = f.Close(); err != nil {
		return err
	}
	if err = os.Rename(f.Name(), path); err != nil {
		return err
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
