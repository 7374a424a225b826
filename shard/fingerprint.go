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
// value", joined by "; "; it is "" when they are equal. The caller says
// which side is which (as "(the coordinator's, this worker's)"); DiffAs
// labels every value instead.
func (f Fingerprint) Diff(g Fingerprint) string { return f.DiffAs(g, "", "") }

// DiffAs is Diff with every value labelled by its side's name, as
// "seed: store 1, want 2" for DiffAs(g, "store", "want"). Two synthetic
// corpora that differ in their bytes alone were made with other settings
// that the fingerprint keeps only in the SHA-256 (classes, successors,
// modes, and the seed when it is not recorded), and the SHA-256 entry says
// so.
func (f Fingerprint) DiffAs(g Fingerprint, fName, gName string) string {
	if fName != "" {
		fName += " "
	}
	if gName != "" {
		gName += " "
	}
	var d []string
	add := func(name string, a, b any) {
		if a != b {
			d = append(d, fmt.Sprintf("%s: %s%v, %s%v", name, fName, a, gName, b))
		}
	}
	add("kind", f.Kind, g.Kind)
	add("bytes", f.Bytes, g.Bytes)
	add("sha256", f.SHA256, g.SHA256)
	if f.Kind == "synthetic" && g.Kind == "synthetic" && f.SHA256 != g.SHA256 &&
		f.Bytes == g.Bytes && f.Tokens == g.Tokens && f.Vocab == g.Vocab && f.Seed == g.Seed {
		why := "another seed or other classes, successors or modes"
		if f.Seed != 0 {
			why = "other classes, successors or modes"
		}
		d[len(d)-1] += " (synthetic corpora of " + why + ")"
	}
	add("tokens", f.Tokens, g.Tokens)
	add("vocab", f.Vocab, g.Vocab)
	add("ctx", f.Ctx, g.Ctx)
	add("seed", f.Seed, g.Seed)
	add("val_fraction", f.ValFraction, g.ValFraction)
	return strings.Join(d, "; ")
}
