package tokenizer

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"flag"
	"os"
	"strconv"
	"testing"
)

var writeTiktoken = flag.String("write-tiktoken", "", "write gpt2's vocabulary as a .tiktoken file to this path (for testdata/gpt2_reference.py)")

// r50kSHA256 is the SHA-256 of OpenAI's r50k_base.tiktoken, the file tiktoken
// loads for GPT-2 (and checks against this hash since tiktoken 0.7): one line
// "base64(token bytes) rank" per mergeable token, in rank order.
const r50kSHA256 = "306cd27f03c1a714eca7108e03d66b7dc042abe8c258b44c199a7ed9838dd930"

// TestVocabularyIsOpenAIs serializes the embedded vocabulary as a .tiktoken
// file and compares its hash with the published one: every one of the 50256
// mergeable tokens has the bytes and the rank of GPT-2's.
func TestVocabularyIsOpenAIs(t *testing.T) {
	tok, err := New(NameGPT2)
	if err != nil {
		t.Fatal(err)
	}
	g := tok.(*gpt2)
	var file []byte
	for id := range int32(gpt2EndOfText) {
		b := g.data[g.off[id]:g.off[id+1]]
		file = base64.StdEncoding.AppendEncode(file, b)
		file = append(file, ' ')
		file = strconv.AppendInt(file, int64(id), 10)
		file = append(file, '\n')
		if got := g.ranks[string(b)]; got != id {
			t.Fatalf("rank of token %d's bytes %q = %d", id, b, got)
		}
	}
	sum := sha256.Sum256(file)
	if got := hex.EncodeToString(sum[:]); got != r50kSHA256 {
		t.Errorf("SHA-256 of the vocabulary as r50k_base.tiktoken = %s; want %s", got, r50kSHA256)
	}
	if len(g.ranks) != gpt2EndOfText {
		t.Errorf("%d mergeable tokens; want %d", len(g.ranks), gpt2EndOfText)
	}
	if got, err := tok.Decode([]int32{gpt2EndOfText}); err != nil || string(got) != endOfText {
		t.Errorf("Decode([50256]) = %q, %v; want %q", got, err, endOfText)
	}
	if *writeTiktoken != "" {
		if err := os.WriteFile(*writeTiktoken, file, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}
