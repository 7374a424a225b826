package allreducetest

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/klring/klring/allreduce"
)

// buckets runs the same vectors through AllReduce and through
// AllReduceBuckets, on the f32 and the bf16 wire (with an exact tail and
// residuals): every rank's vector, owned parts and residual are the same
// bits. In the bucketed runs each rank's vector starts as NaN and a
// goroutine of its own writes the rank's input into it bucket by bucket,
// in an order of the rank's (from the end, from the start, at random),
// marking each bucket ready as it goes while the ring runs; ranks use
// different bucket sizes, one of them a single bucket.
func (s *suite) buckets(t *testing.T) {
	for _, tc := range []struct {
		n, L, chunk int
		wire        allreduce.Wire
	}{{2, 3001, 1024, allreduce.WireF32}, {4, 20011, 4096, allreduce.WireF32}, {3, 12345, 4096, allreduce.WireBF16}, {5, 9000, 1024, allreduce.WireBF16}, {1, 500, 1024, allreduce.WireF32}} {
		name := fmt.Sprintf("n=%d len=%d wire=%v", tc.n, tc.L, tc.wire)
		rng := rand.New(rand.NewPCG(uint64(tc.n), uint64(tc.L)))
		in := make([][]float32, tc.n)
		for r := range in {
			in[r] = make([]float32, tc.L)
			for i := range in[r] {
				in[r][i] = float32(rng.NormFloat64() * math.Exp(3*rng.NormFloat64()))
			}
			in[r][tc.L-1] = float32(100 * (r + 1)) // a token count, in the exact tail
		}
		opts := testOptions()
		opts.ChunkBytes, opts.Wire = tc.chunk, tc.wire
		if tc.wire == allreduce.WireBF16 {
			opts.ExactTail = 2
		}
		rg := s.open(t, fmt.Sprintf("buckets%d%v", tc.n, tc.wire), tc.n)
		want := s.bucketRun(t, rg, in, opts, nil, 1)
		plan := allreduce.NewPlan(tc.L, tc.n, opts.PartFloats())
		row := 4 * tc.n * plan.Stripe // bytes of a row
		sizes := []int{row, 3*row + 5, 0, 2 * row, row}
		got := s.bucketRun(t, rg, in, opts, sizes[:tc.n], 2)
		if o := opts; tc.n > 1 {
			o.BucketBytes = row
			if c := o.Buckets(tc.L, tc.n).Count(); c < 4 {
				t.Fatalf("%s: %d buckets of a row; the case wants several (%+v)", name, c, plan)
			}
		}
		for r := range tc.n {
			for i := range tc.L {
				if math.Float32bits(got.data[r][i]) != math.Float32bits(want.data[r][i]) {
					t.Fatalf("%s: rank %d [%d] = %v bucketed, %v unbucketed", name, r, i, got.data[r][i], want.data[r][i])
				}
				if got.resid != nil && math.Float32bits(got.resid[r][i]) != math.Float32bits(want.resid[r][i]) {
					t.Fatalf("%s: rank %d residual [%d] = %v bucketed, %v unbucketed", name, r, i, got.resid[r][i], want.resid[r][i])
				}
			}
		}
		checkIdentical(t, name, got.data)
		checkOwned(t, name+" bucketed", got.res, want.data[0])
		checkOwned(t, name+" unbucketed", want.res, want.data[0])
	}
}

// bucketRun is the outcome of one all-reduce of every rank.
type bucketRun struct {
	data, resid [][]float32
	res         []result
}

// bucketRun runs in through rg as step step: with AllReduce when sizes is
// nil, else with AllReduceBuckets, rank r's buckets of sizes[r] bytes.
func (s *suite) bucketRun(t *testing.T, rg *ring, in [][]float32, opts allreduce.Options, sizes []int, step uint64) bucketRun {
	n, L := len(in), len(in[0])
	out := bucketRun{data: make([][]float32, n), res: make([]result, n)}
	if opts.Wire == allreduce.WireBF16 {
		out.resid = make([][]float32, n)
	}
	h := allreduce.Header{Run: "run-buckets", Epoch: 1, Step: step}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var wg sync.WaitGroup
	for rank := range n {
		o := opts
		if out.resid != nil {
			out.resid[rank] = make([]float32, L)
			o.Residual = out.resid[rank]
		}
		d := make([]float32, L)
		out.data[rank] = d
		res := &out.res[rank]
		res.owned = map[int][]float32{}
		owned := func(off int, seg []float32) { res.owned[off] = append([]float32(nil), seg...) }
		tr, err := rg.mbs[rank].Begin(h, rg.members, rank)
		if err != nil {
			t.Fatalf("Begin: %v", err)
		}
		if sizes == nil {
			copy(d, in[rank])
			wg.Go(func() { res.err = allreduce.NewReducer().AllReduce(ctx, tr, h, rank, n, d, o, owned) })
			continue
		}
		for i := range d {
			d[i] = float32(math.NaN())
		}
		o.BucketBytes = sizes[rank]
		bk := o.Buckets(L, n)
		order := make([]int, bk.Count())
		for i := range order {
			order[i] = len(order) - 1 - i // from the end, as backward makes them
		}
		switch rank % 3 {
		case 1:
			for i := range order {
				order[i] = i
			}
		case 2:
			order = rand.New(rand.NewPCG(uint64(rank), step)).Perm(len(order))
		}
		ready := make(chan int)
		wg.Go(func() { res.err = allreduce.NewReducer().AllReduceBuckets(ctx, tr, h, rank, n, d, o, ready, owned) })
		wg.Go(func() {
			for _, b := range order {
				off, m := bk.Range(b)
				copy(d[off:off+m], in[rank][off:off+m])
				runtime.Gosched()
				select {
				case ready <- b:
				case <-ctx.Done():
					return
				}
			}
		})
	}
	wg.Wait()
	for r, x := range out.res {
		if x.err != nil {
			t.Fatalf("rank %d: %v", r, x.err)
		}
	}
	return out
}

// bucketsMisuse: a bucket index out of range, and ready closed before every
// bucket, end the call with an AbortError naming what was wrong.
func (s *suite) bucketsMisuse(t *testing.T) {
	const n, L = 2, 3000
	rg := s.open(t, "bucketsmisuse", n)
	opts := testOptions()
	opts.BucketBytes = 1
	for step, tc := range []struct {
		name  string
		feed  func(ready chan<- int)
		want0 error
	}{
		{"out of range", func(ready chan<- int) { ready <- 1 << 20 }, allreduce.ErrBadBucket},
		{"closed", func(ready chan<- int) { ready <- 0; close(ready) }, allreduce.ErrNotReady},
	} {
		h := allreduce.Header{Run: "run-misuse", Epoch: 1, Step: uint64(step)}
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		var wg sync.WaitGroup
		errs := make([]error, n)
		for rank := range n {
			tr, err := rg.mbs[rank].Begin(h, rg.members, rank)
			if err != nil {
				t.Fatal(err)
			}
			ready := make(chan int, 4)
			if rank == 0 {
				tc.feed(ready)
			} else {
				close(ready)
			}
			wg.Go(func() {
				errs[rank] = allreduce.NewReducer().AllReduceBuckets(ctx, tr, h, rank, n, make([]float32, L), opts, ready, nil)
			})
		}
		wg.Wait()
		cancel()
		var ae *allreduce.AbortError
		if !errors.As(errs[0], &ae) || !errors.Is(errs[0], tc.want0) {
			t.Errorf("%s: rank 0: %v; want an AbortError wrapping %v", tc.name, errs[0], tc.want0)
		}
		if !errors.Is(errs[1], allreduce.ErrNotReady) {
			t.Errorf("%s: rank 1: %v; want ErrNotReady", tc.name, errs[1])
		}
	}
}
