package shard

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestFingerprintNamesEveryDifference(t *testing.T) {
	dir := t.TempDir()
	a := filepath.Join(dir, "a.txt")
	b := filepath.Join(dir, "b.txt")
	os.WriteFile(a, []byte(strings.Repeat("abcdefgh", 200)), 0o644)
	os.WriteFile(b, []byte(strings.Repeat("abcdefgh", 200)), 0o644)
	open := func(o Options) Fingerprint {
		t.Helper()
		d, err := Open(o)
		if err != nil {
			t.Fatal(err)
		}
		defer d.Close()
		return d.Fingerprint()
	}
	base := open(Options{Source: "text:" + a, Ctx: 8, ValFraction: 0.1, Seed: 1})
	if d := base.Diff(open(Options{Source: "text:" + b, Ctx: 8, ValFraction: 0.1, Seed: 1})); d != "" {
		t.Errorf("the same bytes under another name differ: %s", d)
	}
	for _, tc := range []struct {
		o    Options
		want string
	}{
		{Options{Source: "text:" + a, Ctx: 8, ValFraction: 0.1, Seed: 2}, "seed: 1, 2"},
		{Options{Source: "text:" + a, Ctx: 8, ValFraction: 0.2, Seed: 1}, "val_fraction: 0.1, 0.2"},
		{Options{Source: "text:" + a, Ctx: 16, ValFraction: 0.1, Seed: 1}, "ctx: 8, 16"},
	} {
		if d := base.Diff(open(tc.o)); !strings.Contains(d, tc.want) {
			t.Errorf("Diff = %q; want it to name %q", d, tc.want)
		}
	}
	os.WriteFile(b, []byte(strings.Repeat("abcdefgh", 199)+"abcdefgX"), 0o644)
	if d := base.Diff(open(Options{Source: "text:" + b, Ctx: 8, ValFraction: 0.1, Seed: 1})); !strings.Contains(d, "sha256") {
		t.Errorf("a changed byte: Diff = %q; want sha256 named", d)
	}
	s1 := open(Options{Source: "synthetic", Ctx: 8, Seed: 1, Tokens: 4096})
	s2 := open(Options{Source: "synthetic", Ctx: 8, Seed: 1, Tokens: 4096})
	if d := s1.Diff(s2); d != "" || s1.SHA256 == "" {
		t.Errorf("two synthetic corpora of one seed: Diff %q, sha %q", d, s1.SHA256)
	}
}
