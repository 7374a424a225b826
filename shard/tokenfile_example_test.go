package shard_test

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/klring/klring/shard"
)

// Write GPT-2 ids as llm.c's token file and train on it as tokens:PATH.
func ExampleWriteTokenFile() {
	dir, err := os.MkdirTemp("", "tokens")
	if err != nil {
		panic(err)
	}
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "train.bin")
	ids := []int32{15496, 995, 11, 15496, 995, 0} // "Hello world, Hello world!"
	if err := shard.WriteTokenFile(path, shard.LLMC, ids); err != nil {
		panic(err)
	}
	st, _ := os.Stat(path)
	fmt.Println("bytes:", st.Size()) // 1024 of header, 2 per id

	d, err := shard.Open(shard.Options{Source: "tokens:" + path, Ctx: 2, Vocab: 50257})
	if err != nil {
		panic(err)
	}
	defer d.Close()
	win := make([]int32, 3)
	d.Window(1, win)
	fmt.Println("tokens:", d.NumTokens(), "window 1:", win)
	// Output:
	// bytes: 1036
	// tokens: 6 window 1: [11 15496 995]
}
