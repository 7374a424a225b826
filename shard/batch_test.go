package shard

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"testing"
)

// openSmall opens a small synthetic dataset: 2000 tokens, ctx 16, so 124
// windows, 12 of them held out.
func openSmall(t testing.TB, seed uint64) *Dataset {
	t.Helper()
	d, err := Open(Options{Ctx: 16, ValFraction: 0.1, Seed: seed, Tokens: 2000})
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func TestShardRange(t *testing.T) {
	tests := []struct {
		size, rank, n int
		lo, hi        int
	}{
		{10, 0, 3, 0, 4}, {10, 1, 3, 4, 7}, {10, 2, 3, 7, 10},
		{2, 0, 4, 0, 1}, {2, 1, 4, 1, 2}, {2, 2, 4, 2, 2}, {2, 3, 4, 2, 2},
		{0, 0, 1, 0, 0}, {7, 0, 1, 0, 7}, {16, 3, 4, 12, 16},
	}
	for _, tt := range tests {
		lo, hi := ShardRange(tt.size, tt.rank, tt.n)
		if lo != tt.lo || hi != tt.hi {
			t.Errorf("ShardRange(%d, %d, %d) = %d, %d; want %d, %d", tt.size, tt.rank, tt.n, lo, hi, tt.lo, tt.hi)
		}
	}
}

func TestShardPanics(t *testing.T) {
	for _, c := range [][3]int{{4, 0, 0}, {4, -1, 2}, {4, 2, 2}, {-1, 0, 1}} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("ShardRange(%d, %d, %d) did not panic", c[0], c[1], c[2])
				}
			}()
			ShardRange(c[0], c[1], c[2])
		}()
	}
}

// TestShardsPartitionBatch: for n = 1..9 and random G, the shards of every
// batch are contiguous, disjoint, cover it in order and differ in size by at
// most one.
func TestShardsPartitionBatch(t *testing.T) {
	d := openSmall(t, 1)
	r := newRNG(42, 0, 0)
	c := Cursor{}
	for trial := range 200 {
		G := 1 + r.intn(40)
		batch, next := d.NextBatch(c, G)
		if len(batch) != G {
			t.Fatalf("NextBatch(%+v, %d) has %d windows; want %d", c, G, len(batch), G)
		}
		for n := 1; n <= 9; n++ {
			var joined []int
			minSize, maxSize := G, 0
			for rank := range n {
				s := Shard(batch, rank, n)
				minSize, maxSize = min(minSize, len(s)), max(maxSize, len(s))
				joined = append(joined, s...)
				if cap(s) != len(s) {
					t.Errorf("trial %d: cap(Shard(batch, %d, %d)) = %d; want %d", trial, rank, n, cap(s), len(s))
				}
			}
			if !slices.Equal(joined, batch) {
				t.Fatalf("trial %d: shards of n=%d joined = %v; want %v", trial, n, joined, batch)
			}
			if maxSize-minSize > 1 {
				t.Errorf("trial %d: n=%d shard sizes %d..%d; want a spread of at most 1", trial, n, minSize, maxSize)
			}
		}
		c = next
	}
}

// stream returns the concatenation of batches of random sizes until it holds
// at least k windows, and the cursor after it.
func stream(d *Dataset, c Cursor, k int, r *rng) ([]int, Cursor) {
	var out []int
	for len(out) < k {
		out, c = d.AppendBatch(out, c, 1+r.intn(37))
	}
	return out, c
}

// TestEpochsVisitEveryTrainingWindowOnce: each epoch's stretch of the stream
// is a permutation of the training windows; held-out windows never appear;
// consecutive epochs differ in order.
func TestEpochsVisitEveryTrainingWindowOnce(t *testing.T) {
	for _, seed := range []uint64{0, 1, 7} {
		d := openSmall(t, seed)
		n := d.NumTrain()
		if d.NumVal() == 0 || n+d.NumVal() != d.NumWindows() {
			t.Fatalf("seed %d: %d train + %d val; want both > 0 summing to %d", seed, n, d.NumVal(), d.NumWindows())
		}
		r := newRNG(seed, 9, 9)
		s, _ := stream(d, Cursor{}, 4*n, &r)
		train := d.TrainWindows()
		for e := range 4 {
			ep := slices.Clone(s[e*n : (e+1)*n])
			for _, id := range ep {
				if d.IsHeldOut(id) {
					t.Fatalf("seed %d epoch %d: held-out window %d trained on", seed, e, id)
				}
			}
			if e > 0 && slices.Equal(ep, s[(e-1)*n:e*n]) {
				t.Errorf("seed %d: epoch %d has the order of epoch %d", seed, e, e-1)
			}
			slices.Sort(ep)
			if !slices.Equal(ep, train) {
				t.Fatalf("seed %d: epoch %d sorted = %v; want the training windows %v", seed, e, ep, train)
			}
		}
		val := d.ValWindows()
		if len(val) != d.NumVal() {
			t.Errorf("len(ValWindows()) = %d; want %d", len(val), d.NumVal())
		}
		for _, id := range val {
			if slices.Contains(train, id) {
				t.Errorf("window %d both held out and trained", id)
			}
		}
	}
}

// TestBatchesIndependentOfSizes: the stream does not depend on how it is cut
// into batches, nor on how a batch is cut among ranks, so changing the
// number of ranks in the middle of an epoch changes no step's windows.
func TestBatchesIndependentOfSizes(t *testing.T) {
	d := openSmall(t, 3)
	const G = 13
	var ref [][]int
	c := Cursor{}
	for range 30 {
		var b []int
		b, c = d.NextBatch(c, G)
		ref = append(ref, b)
	}
	r := newRNG(5, 5, 5)
	c = Cursor{}
	for step := range ref {
		n := 1 + r.intn(9) // a different world size at every step
		var got []int
		for rank := range n {
			// Each rank computes the batch from the cursor on its own.
			b, _ := d.NextBatch(c, G)
			got = append(got, Shard(b, rank, n)...)
		}
		if !slices.Equal(got, ref[step]) {
			t.Fatalf("step %d with %d ranks covers %v; want %v", step, n, got, ref[step])
		}
		_, c = d.NextBatch(c, G)
	}
	// Cutting the stream into other batch sizes gives the same stream.
	flat := slices.Concat(ref...)
	s, _ := stream(d, Cursor{}, len(flat), &r)
	if !slices.Equal(s[:len(flat)], flat) {
		t.Errorf("stream cut into random batch sizes differs from the stream of batches of %d", G)
	}
}

func TestCursorRestoresStream(t *testing.T) {
	d := openSmall(t, 11)
	c := Cursor{}
	for range 17 {
		_, c = d.NextBatch(c, 10)
	}
	buf, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	if want := fmt.Sprintf(`{"epoch":%d,"pos":%d}`, c.Epoch, c.Pos); string(buf) != want {
		t.Errorf("json.Marshal(%+v) = %s; want %s", c, buf, want)
	}
	if c.Epoch == 0 {
		t.Fatalf("cursor %+v still in epoch 0; the test wants a wrapped stream", c)
	}
	var back Cursor
	if err := json.Unmarshal(buf, &back); err != nil || back != c {
		t.Fatalf("json round trip of %+v = %+v, %v", c, back, err)
	}
	// A fresh dataset (another process would do the same) continues identically.
	d2 := openSmall(t, 11)
	for range 20 {
		b1, n1 := d.NextBatch(c, 10)
		b2, n2 := d2.NextBatch(back, 10)
		if !slices.Equal(b1, b2) || n1 != n2 {
			t.Fatalf("restored stream: %v %+v; want %v %+v", b2, n2, b1, n1)
		}
		c, back = n1, n2
	}
	if err := json.Unmarshal([]byte(`{"epoch":-1,"pos":0}`), &back); err == nil {
		t.Errorf("json.Unmarshal of a negative epoch succeeded")
	}
}

func TestCursorEdges(t *testing.T) {
	d := openSmall(t, 2)
	n := uint64(d.NumTrain())
	if err := d.CheckCursor(Cursor{Epoch: 3, Pos: n}); err != nil {
		t.Errorf("CheckCursor(pos = epoch length) = %v; want nil", err)
	}
	if err := d.CheckCursor(Cursor{Pos: n + 1}); !errors.Is(err, ErrCursor) {
		t.Errorf("CheckCursor(pos past the epoch) = %v; want ErrCursor", err)
	}
	// A cursor at the end of an epoch is the start of the next one.
	b1, c1 := d.NextBatch(Cursor{Epoch: 2, Pos: n}, 5)
	b2, c2 := d.NextBatch(Cursor{Epoch: 3}, 5)
	if !slices.Equal(b1, b2) || c1 != c2 {
		t.Errorf("NextBatch at the end of epoch 2 = %v %+v; want the start of epoch 3 %v %+v", b1, c1, b2, c2)
	}
	// A batch larger than an epoch spans epochs.
	b, c := d.NextBatch(Cursor{}, int(2*n+3))
	if len(b) != int(2*n+3) || c != (Cursor{Epoch: 2, Pos: 3}) {
		t.Errorf("NextBatch(0, 2n+3) = %d windows, %+v; want %d, {2 3}", len(b), c, 2*n+3)
	}
	// The last batch of an epoch wraps into the next epoch's order.
	b, c = d.NextBatch(Cursor{Pos: n - 2}, 5)
	next, _ := d.NextBatch(Cursor{Epoch: 1}, 3)
	if !slices.Equal(b[2:], next) || c != (Cursor{Epoch: 1, Pos: 3}) {
		t.Errorf("wrapping batch = %v %+v; want its tail %v from epoch 1 and {1 3}", b, c, next)
	}
	defer func() {
		if recover() == nil {
			t.Errorf("NextBatch(G = 0) did not panic")
		}
	}()
	d.NextBatch(Cursor{}, 0)
}

// TestConcurrentUse: the cluster layer's workers read windows and truth while
// the coordinator draws batches (run under -race).
func TestConcurrentUse(t *testing.T) {
	d := openSmall(t, 4)
	want, _ := d.NextBatch(Cursor{Epoch: 5}, 200)
	done := make(chan []int)
	for g := range 4 {
		go func() {
			win := make([]int32, d.Ctx()+1)
			ids := make([]int32, d.Ctx()*d.TruthK())
			probs := make([]float32, d.Ctx()*d.TruthK())
			var got []int
			c := Cursor{Epoch: uint64(g)} // touch other epochs' orders too
			for range 30 {
				_, c = d.NextBatch(c, 7)
			}
			c = Cursor{Epoch: 5}
			for range 20 {
				var b []int
				b, c = d.NextBatch(c, 10)
				for _, id := range b {
					d.Window(id, win)
					d.Truth(id, ids, probs)
				}
				got = append(got, b...)
			}
			done <- got
		}()
	}
	for range 4 {
		if got := <-done; !slices.Equal(got, want) {
			t.Errorf("concurrent stream of epoch 5 = %v; want %v", got, want)
		}
	}
}

func TestNoAllocations(t *testing.T) {
	d := openSmall(t, 6)
	win := make([]int32, d.Ctx()+1)
	ids := make([]int32, d.Ctx()*d.TruthK())
	probs := make([]float32, d.Ctx()*d.TruthK())
	batch := make([]int, 0, 16)
	c := Cursor{}
	d.NextBatch(c, 1) // compute epoch 0's order
	allocs := testing.AllocsPerRun(100, func() {
		batch, _ = d.AppendBatch(batch[:0], c, 16)
		d.Window(batch[0], win)
		d.Truth(batch[0], ids, probs)
	})
	if allocs != 0 {
		t.Errorf("AppendBatch + Window + Truth allocate %v times per call; want 0", allocs)
	}
}
