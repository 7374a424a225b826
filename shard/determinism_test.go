package shard

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"flag"
	"fmt"
	"math"
	"os"
	"os/exec"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite testdata/stream.golden")

// streamDigests hashes, for a few sources, everything a run depends on: the
// corpus, the truth rows, the held-out windows and the first 700 batches
// (more than one epoch of the small sources).
func streamDigests(t testing.TB) string {
	var out strings.Builder
	for _, o := range []Options{
		{Ctx: 128, ValFraction: 0.05, Seed: 1},
		{Ctx: 32, ValFraction: 0.1, Seed: 77, Vocab: 300, Classes: 3, Successors: 5, Tokens: 30000},
	} {
		d, err := Open(o)
		if err != nil {
			t.Fatal(err)
		}
		h := sha256.New()
		put := func(v uint64) { h.Write(binary.LittleEndian.AppendUint64(nil, v)) }
		h.Write(d.data)
		K, T := d.TruthK(), d.Ctx()
		ids := make([]int32, T*K)
		probs := make([]float32, T*K)
		for id := range min(d.NumWindows(), 50) {
			d.Truth(id, ids, probs)
			for i := range ids {
				put(uint64(ids[i]))
				put(uint64(math.Float32bits(probs[i])))
			}
		}
		for _, id := range d.ValWindows() {
			put(uint64(id))
		}
		var c Cursor
		var b []int
		for range 700 {
			b, c = d.AppendBatch(b[:0], c, 16)
			for _, id := range b {
				put(uint64(id))
			}
		}
		put(c.Epoch)
		put(c.Pos)
		fmt.Fprintf(&out, "%+v %s\n", o, hex.EncodeToString(h.Sum(nil)))
	}
	return out.String()
}

// TestDeterminismAcrossProcesses runs this test binary again as a child
// process and compares the child's digests with this process's, and both
// with the digests committed in testdata (run with -update to rewrite them
// after an intended change of the stream).
func TestDeterminismAcrossProcesses(t *testing.T) {
	if os.Getenv("SHARD_PRINT_DIGESTS") == "1" {
		fmt.Print("DIGESTS\n" + streamDigests(t))
		return
	}
	here := streamDigests(t)
	cmd := exec.Command(os.Args[0], "-test.run=^TestDeterminismAcrossProcesses$", "-test.count=1")
	cmd.Env = append(os.Environ(), "SHARD_PRINT_DIGESTS=1")
	outb, err := cmd.Output()
	if err != nil {
		t.Fatalf("child process: %v\n%s", err, outb)
	}
	child, ok := strings.CutPrefix(string(outb), "DIGESTS\n")
	if !ok {
		t.Fatalf("child process printed %q; want DIGESTS first", outb)
	}
	child = child[:min(len(child), len(here))] // the test framework's PASS follows
	if child != here {
		t.Errorf("child process digests:\n%s\nthis process:\n%s", child, here)
	}
	const golden = "testdata/stream.golden"
	if *update {
		if err := os.WriteFile(golden, []byte(here), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	if here != string(want) {
		t.Errorf("digests:\n%s\nwant (from %s):\n%s", here, golden, want)
	}
}
