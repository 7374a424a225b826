package engine

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"github.com/klring/klring/shard"
	"github.com/klring/klring/tokenizer"
)

// DataRequest says which data to open: shard's options, and the tokenizer
// that turns a text source into tokens ("" or bytes: a token per byte).
type DataRequest struct {
	shard.Options
	Tokenizer string
}

// OpenData opens a job's data. A text file under a tokenizer other than
// bytes is tokenized first, through the token cache in cacheDir (a
// tokens: source then maps the cached ids); token files under a tokenizer
// are checked against its vocabulary.
func OpenData(ctx context.Context, r DataRequest, cacheDir string, log *slog.Logger) (*shard.Dataset, error) {
	name := r.Tokenizer
	if name == "" {
		name = tokenizer.NameBytes
	}
	o := r.Options
	path, isText := strings.CutPrefix(o.Source, "text:")
	if name == tokenizer.NameBytes || strings.HasPrefix(o.Source, "synthetic") || o.Source == "" {
		return shard.Open(o)
	}
	tok, err := tokenizer.New(name)
	if err != nil {
		return nil, err
	}
	o.Vocab = tok.Vocab()
	if !isText {
		return shard.Open(o)
	}
	if cacheDir == "" {
		cacheDir = DefaultCacheDir()
	}
	last := int64(-1)
	enc, err := tokenizer.EncodeFile(ctx, path, tok, tokenizer.FileOptions{CacheDir: cacheDir, Log: log,
		Progress: func(done, total int64) {
			if pct := done * 10 / max(total, 1); pct != last && total > 16<<20 {
				last = pct
				log.Info("tokenizing", "file", path, "done_pct", pct*10)
			}
		}})
	if err != nil {
		return nil, err
	}
	if enc.CachePath == "" {
		// No cache entry (an empty text, or the cache could not be
		// written): the ids go to a file of their own.
		f, err := os.CreateTemp("", "klring-tokens-*.bin")
		if err != nil {
			return nil, fmt.Errorf("tokenizing %s: %w", path, err)
		}
		f.Close()
		if err := shard.WriteTokenFile(f.Name(), shard.LLMC, enc.IDs); err != nil {
			return nil, fmt.Errorf("tokenizing %s: %w", path, err)
		}
		enc.CachePath = f.Name()
	}
	o.Source = "tokens:" + enc.CachePath
	d, err := shard.Open(o)
	if err != nil {
		return nil, fmt.Errorf("text:%s as %s tokens: %w", path, name, err)
	}
	return d, nil
}

// DefaultCacheDir is where tokenized texts are kept when no folder is
// given: the user's cache folder.
func DefaultCacheDir() string {
	if d, err := os.UserCacheDir(); err == nil {
		return filepath.Join(d, "klring", "tokens")
	}
	return filepath.Join(os.TempDir(), "klring-tokens")
}
