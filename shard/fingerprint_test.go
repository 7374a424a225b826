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
	base := openFingerprint(t, Options{Source: "text:" + a, Ctx: 8, ValFraction: 0.1, Seed: 1})
	if d := base.Diff(openFingerprint(t, Options{Source: "text:" + b, Ctx: 8, ValFraction: 0.1, Seed: 1})); d != "" {
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
		if d := base.Diff(openFingerprint(t, tc.o)); !strings.Contains(d, tc.want) {
			t.Errorf("Diff = %q; want it to name %q", d, tc.want)
		}
	}
	os.WriteFile(b, []byte(strings.Repeat("abcdefgh", 199)+"abcdefgX"), 0o644)
	if d := base.Diff(openFingerprint(t, Options{Source: "text:" + b, Ctx: 8, ValFraction: 0.1, Seed: 1})); !strings.Contains(d, "sha256") {
		t.Errorf("a changed byte: Diff = %q; want sha256 named", d)
	}
	s1 := openFingerprint(t, Options{Source: "synthetic", Ctx: 8, Seed: 1, Tokens: 4096})
	s2 := openFingerprint(t, Options{Source: "synthetic", Ctx: 8, Seed: 1, Tokens: 4096})
	if d := s1.Diff(s2); d != "" || s1.SHA256 == "" {
		t.Errorf("two synthetic corpora of one seed: Diff %q, sha %q", d, s1.SHA256)
	}
}

// DiffAs labels each side's value, and when two synthetic corpora differ in
// their bytes alone it says what can make them differ.
func TestFingerprintDiffAs(t *testing.T) {
	a := openFingerprint(t, Options{Source: "synthetic", Ctx: 8, Seed: 1, Tokens: 4096})
	b := openFingerprint(t, Options{Source: "synthetic", Ctx: 16, Seed: 2, Tokens: 4096})
	d := a.DiffAs(b, "store", "want")
	for _, want := range []string{"sha256: store " + a.SHA256 + ", want " + b.SHA256, "ctx: store 8, want 16", "seed: store 1, want 2"} {
		if !strings.Contains(d, want) {
			t.Errorf("DiffAs = %q; want it to say %q", d, want)
		}
	}
	if d := a.Diff(b); !strings.Contains(d, "seed: 1, 2") || !strings.Contains(d, "sha256: "+a.SHA256+", "+b.SHA256) {
		t.Errorf("Diff = %q; want the values unlabelled, f's first", d)
	}
	// The seed is not recorded (as a teacher store keys its data): the
	// differing bytes are all there is to name, and what makes them differ.
	a.Seed, b.Seed, b.Ctx = 0, 0, 8
	if d := a.DiffAs(b, "store", "want"); !strings.Contains(d, "seed") || !strings.Contains(d, "modes") {
		t.Errorf("synthetic corpora of other seeds, seed not recorded: DiffAs = %q; want the seed and modes named as causes", d)
	}
	// The same seed, other modes.
	c := openFingerprint(t, Options{Source: "synthetic:modes=2", Ctx: 8, Seed: 1, Tokens: 4096})
	a.Seed = 1
	if d := a.Diff(c); !strings.Contains(d, "modes") || strings.Contains(d, "seed:") {
		t.Errorf("synthetic corpora of other modes: Diff = %q; want modes named", d)
	}
	// Text of other bytes: no synthetic settings to name.
	if d := (Fingerprint{Kind: "text", SHA256: "aa"}).Diff(Fingerprint{Kind: "text", SHA256: "bb"}); d != "sha256: aa, bb" {
		t.Errorf("text of other bytes: Diff = %q", d)
	}
}

// openFingerprint opens the dataset o names and returns its fingerprint.
func openFingerprint(t *testing.T, o Options) Fingerprint {
	t.Helper()
	d, err := Open(o)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	return d.Fingerprint()
}
