package shard

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strings"
)

// Fingerprint identifies what a dataset's windows are: two datasets with
// the same fingerprint have the same windows, the same held-out split and
// the same epoch orders. It leaves out the file's path, so the same file
// under another name or on another machine matches.
type Fingerprint struct {
	Kind        string  `json:"kind" msgpack:"kind"`     // synthetic, text or tokens
	Bytes       int64   `json:"bytes" msgpack:"bytes"`   // of the data (the file's, or the synthetic corpus's)
	SHA256      string  `json:"sha256" msgpack:"sha256"` // of the same bytes
	Tokens      int     `json:"tokens" msgpack:"tokens"`
	Vocab       int     `json:"vocab" msgpack:"vocab"`
	Ctx         int     `json:"ctx" msgpack:"ctx"`
	Seed        uint64  `json:"seed" msgpack:"seed"`
	ValFraction float64 `json:"val_fraction" msgpack:"val_fraction"`
}

// Fingerprint is the dataset's fingerprint, computed when it was opened.
func (d *Dataset) Fingerprint() Fingerprint { return d.fp }

func (d *Dataset) fingerprint(k kind, o Options) Fingerprint {
	sum := sha256.Sum256(d.data)
	return Fingerprint{Kind: [...]string{"synthetic", "text", "tokens"}[k], Bytes: int64(len(d.data)),
		SHA256: hex.EncodeToString(sum[:]), Tokens: d.NumTokens(), Vocab: d.vocab, Ctx: d.ctx, Seed: o.Seed, ValFraction: o.ValFraction}
}

// Diff names every field in which f and g differ, as "name: f's value, g's
// value", joined by "; "; it is "" when they are equal.
func (f Fingerprint) Diff(g Fingerprint) string {
	var d []string
	add := func(name string, a, b any) {
		if a != b {
			d = append(d, fmt.Sprintf("%s: %v, %v", name, a, b))
		}
	}
	add("kind", f.Kind, g.Kind)
	add("bytes", f.Bytes, g.Bytes)
	add("sha256", f.SHA256, g.SHA256)
	add("tokens", f.Tokens, g.Tokens)
	add("vocab", f.Vocab, g.Vocab)
	add("ctx", f.Ctx, g.Ctx)
	add("seed", f.Seed, g.Seed)
	add("val_fraction", f.ValFraction, g.ValFraction)
	return strings.Join(d, "; ")
}
