package shard_test

import (
	"fmt"

	"github.com/klring/klring/shard"
)

// A global batch of 10 windows split among 3 ranks, and the step retried
// among 2 after a rank died: the same windows, split differently.
func Example() {
	d, err := shard.Open(shard.Options{Ctx: 128, ValFraction: 0.05, Seed: 1})
	if err != nil {
		panic(err)
	}
	fmt.Println("vocab", d.Vocab(), "windows", d.NumWindows(), "train", d.NumTrain(), "held out", d.NumVal())

	var c shard.Cursor
	batch, next := d.NextBatch(c, 10)
	for r := range 3 {
		fmt.Println("rank", r, "of 3:", len(shard.Shard(batch, r, 3)), "windows")
	}
	for r := range 2 {
		fmt.Println("rank", r, "of 2:", len(shard.Shard(batch, r, 2)), "windows")
	}
	fmt.Printf("next cursor %+v\n", next)
	// Output:
	// vocab 64 windows 8191 train 7781 held out 410
	// rank 0 of 3: 4 windows
	// rank 1 of 3: 3 windows
	// rank 2 of 3: 3 windows
	// rank 0 of 2: 5 windows
	// rank 1 of 2: 5 windows
	// next cursor {Epoch:0 Pos:10}
}

// Soft targets of the synthetic source: each target position has K sparse
// (id, probability) entries.
func ExampleDataset_Truth() {
	d, err := shard.Open(shard.Options{Ctx: 4, Tokens: 1000, Vocab: 16, Classes: 2, Successors: 2})
	if err != nil {
		panic(err)
	}
	K := d.TruthK()
	ids := make([]int32, d.Ctx()*K)
	probs := make([]float32, d.Ctx()*K)
	d.Truth(0, ids, probs)
	var sum float32
	for _, p := range probs[K : 2*K] {
		sum += p
	}
	fmt.Println("K", K, "row 1 sums to", sum)
	// Output:
	// K 4 row 1 sums to 1
}
