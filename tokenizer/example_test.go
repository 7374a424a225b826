package tokenizer_test

import (
	"context"
	"fmt"
	"math"
	"os"
	"path/filepath"

	"github.com/klring/klring/tokenizer"
)

func ExampleNew() {
	tok, err := tokenizer.New("gpt2")
	if err != nil {
		panic(err)
	}
	ids := tok.Encode([]byte("Hello world"))
	text, err := tok.Decode(ids)
	if err != nil {
		panic(err)
	}
	fmt.Println(tok.Name(), tok.Vocab(), ids, string(text))

	_, err = tok.Decode([]int32{15496, 50300})
	fmt.Println(err)
	// Output:
	// gpt2 50257 [15496 995] Hello world
	// token 50300 at position 1 is not in gpt2's vocabulary [0, 50257): tokenizer: token id outside the vocabulary
}

// A sampled sequence may end inside a UTF-8 character: decoding is
// byte-exact, token by token.
func ExampleTokenizer_Decode() {
	tok, _ := tokenizer.New("gpt2")
	ids := tok.Encode([]byte("\U0001F600!"))
	for _, id := range ids {
		b, _ := tok.Decode([]int32{id})
		fmt.Printf("%d %q %d\n", id, b, tok.TokenBytes(id))
	}
	// Output:
	// 47249 "\xf0\x9f\x98" 3
	// 222 "\x80" 1
	// 0 "!" 1
}

// Bits per byte: the targets' cross-entropy in bits over the bytes they
// stand for, comparable across tokenizers.
func Example_bitsPerByte() {
	tok, _ := tokenizer.New("gpt2")
	ids := tok.Encode([]byte("The quick brown fox jumps over the lazy dog."))
	targets := ids[1:] // the next-token targets of one window
	n, err := tokenizer.CountBytes(tok, targets)
	if err != nil {
		panic(err)
	}
	lossSum := 3.0 * float64(len(targets)) // nats: a mean loss of 3 nats/token
	fmt.Printf("%d targets, %d bytes, %.3f bits/byte\n", len(targets), n, lossSum/math.Ln2/float64(n))
	// Output:
	// 9 targets, 41 bytes, 0.950 bits/byte
}

// Tokenize a text file once; a restart reads the ids from the cache.
func ExampleEncodeFile() {
	dir, _ := os.MkdirTemp("", "example")
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "input.txt")
	os.WriteFile(path, []byte("First Citizen:\nBefore we proceed any further, hear me speak.\n"), 0o644)

	tok, _ := tokenizer.New("gpt2")
	o := tokenizer.FileOptions{CacheDir: filepath.Join(dir, "cache")}
	for range 2 {
		enc, err := tokenizer.EncodeFile(context.Background(), path, tok, o)
		if err != nil {
			panic(err)
		}
		fmt.Println(len(enc.IDs), "tokens from", enc.Bytes, "bytes, cached:", enc.Cached)
	}
	// Output:
	// 15 tokens from 61 bytes, cached: false
	// 15 tokens from 61 bytes, cached: true
}
