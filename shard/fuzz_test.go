package shard

import (
	"errors"
	"testing"
)

// FuzzTokenFile: any bytes as a token file open cleanly or fail with one of
// the package's errors; never a panic.
func FuzzTokenFile(f *testing.F) {
	f.Add(u16(1, 2, 3, 4, 5), 2, 0)
	f.Add(llmc(llmcMagic, 1, 3, 1, 2, 3), 1, 0)
	f.Add(llmc(llmcMagic, 1, 3, 1, 2, 3)[:30], 1, 0)
	f.Add([]byte{1, 2, 3}, 1, 10)
	f.Fuzz(func(t *testing.T, b []byte, ctx, vocab int) {
		ctx = 1 + abs(ctx)%8
		vocab = abs(vocab) % (MaxVocab + 1)
		payload, err := tokenPayload(b)
		if err != nil {
			if !errors.Is(err, ErrHeader) && !errors.Is(err, ErrOddSize) && !errors.Is(err, ErrEmpty) {
				t.Fatalf("tokenPayload error %v is none of the package's", err)
			}
			return
		}
		if len(payload)%2 != 0 {
			t.Fatalf("tokenPayload returned %d bytes", len(payload))
		}
		if len(b) == 0 {
			return
		}
		p := writeFile(t, "fuzz.bin", b)
		d, err := Open(Options{Source: "tokens:" + p, Ctx: ctx, Vocab: vocab, ValFraction: 0.25})
		if err != nil {
			return
		}
		defer d.Close()
		win := make([]int32, ctx+1)
		for _, id := range d.AllWindows() {
			d.Window(id, win)
			for _, x := range win {
				if int(x) >= d.Vocab() {
					t.Fatalf("window %d holds %d, vocab %d", id, x, d.Vocab())
				}
			}
		}
		if b, _ := d.NextBatch(Cursor{}, 3); len(b) != 3 {
			t.Fatalf("NextBatch gave %d windows; want 3", len(b))
		}
	})
}

func abs(v int) int {
	if v < 0 {
		if v == -v {
			return 0
		}
		return -v
	}
	return v
}
