package allreducetest

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/klring/klring/allreduce"
)

// roundBF16 rounds v to bfloat16 (8 significant bits, ties to even,
// bfloat16's subnormals, overflow to infinity, NaN to the quiet NaN of v's
// sign) in float64 arithmetic: an implementation independent of
// allreduce.BF16's bit trick.
func roundBF16(v float32) float32 {
	switch {
	case v != v:
		return math.Float32frombits(math.Float32bits(v)&0x80000000 | 0x7fc00000)
	case math.IsInf(float64(v), 0) || v == 0:
		return v
	}
	f := float64(v)
	_, exp := math.Frexp(f)                // f = frac 2^exp, |frac| in [0.5, 1)
	ulp := math.Ldexp(1, max(exp-8, -133)) // 8 significant bits; below 2^-126 (subnormals) steps of 2^-133
	q := math.RoundToEven(f/ulp) * ulp
	if math.Abs(q) > float64(math.Float32frombits(0x7f7f0000)) {
		return float32(math.Inf(int(math.Copysign(1, f))))
	}
	return float32(q)
}

// refBF16 computes independently what a bf16 ring of len(data) ranks
// returns, segment by segment along its chain of ranks (segment k starts at
// rank k, is rounded before every send and by its owner, rank k-1), with
// the last tail floats summed in float32, and each rank's residual.
func refBF16(data [][]float32, partFloats, tail int) (want []float32, res [][]float32) {
	n, L := len(data), len(data[0])
	plan := allreduce.NewPlan(L, n, partFloats)
	exact := L - min(tail, L)
	want = make([]float32, L)
	res = make([][]float32, n)
	for r := range res {
		res[r] = make([]float32, L)
	}
	resid := func(v, r float32) float32 {
		d := v - r
		if math.IsNaN(float64(d)) || math.IsInf(float64(d), 0) {
			return 0
		}
		return d
	}
	for k := range n {
		for j := range plan.Parts(k) {
			off, m := plan.Part(k, j)
			for i := off; i < off+m; i++ {
				v := data[k][i]
				s := v
				if i < exact {
					s = roundBF16(v)
					res[k][i] = resid(v, s)
				}
				for j := 1; j < n; j++ {
					r := (k + j) % n
					v = data[r][i] + s // a rank adds what it receives to its own
					s = v
					if i < exact {
						s = roundBF16(v)
						res[r][i] = resid(v, s)
					}
				}
				want[i] = s
			}
		}
	}
	return want, res
}

// bf16 runs the bf16 wire with an exact tail and error-feedback residuals:
// every rank ends bit-identical, equal to the rounded sums computed
// independently (refBF16), the owners' parts are those sums, every rank's
// residual is the one expected, and the parts sent are about half the bytes
// of the f32 wire's.
func (s *suite) bf16(t *testing.T) {
	for _, tc := range []struct{ n, L, tail, chunk int }{{2, 1001, 2, 4096}, {3, 12345, 2, 4096}, {4, 4099, 0, 1024}, {5, 777, 9, 256}, {8, 20001, 2, 4096}} {
		name := fmt.Sprintf("n=%d len=%d tail=%d", tc.n, tc.L, tc.tail)
		rng := rand.New(rand.NewPCG(uint64(tc.n), uint64(tc.L)))
		special := []float32{float32(math.NaN()), float32(math.Inf(1)), float32(math.Inf(-1)), 3.39e38, -3.3961e38, 1e-40, -0.0,
			math.Float32frombits(0x3f808000), math.Float32frombits(0x3f818000), math.Float32frombits(0x3f808001)} // ties to even, down and up; just above a tie
		data := make([][]float32, tc.n)
		for r := range tc.n {
			data[r] = make([]float32, tc.L)
			for i := range data[r] {
				data[r][i] = float32(rng.NormFloat64() * math.Exp(4*rng.NormFloat64()))
				if i%101 == 7 && r == i%tc.n {
					data[r][i] = special[(i/101)%len(special)]
				}
			}
			if tc.L >= 2 {
				data[r][tc.L-1] = float32(1000*r + 4099) // a token count: exact in the tail
			}
		}
		in := make([][]float32, tc.n)
		for r := range data {
			in[r] = append([]float32(nil), data[r]...)
		}
		opts := testOptions()
		opts.ChunkBytes, opts.Wire, opts.ExactTail = tc.chunk, allreduce.WireBF16, tc.tail
		want, wantRes := refBF16(in, opts.PartFloats(), tc.tail)

		rg := s.open(t, fmt.Sprintf("bf16n%d", tc.n), tc.n)
		reducers := newReducers(tc.n)
		resid := make([][]float32, tc.n)
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		res := make([]result, tc.n)
		// Each rank has its own Residual: run the ranks with per-rank options.
		errs := make(chan error, tc.n)
		for rank := range tc.n {
			resid[rank] = make([]float32, tc.L)
			for i := range resid[rank] {
				resid[rank][i] = 42 // overwritten, all of it
			}
			o := opts
			o.Residual = resid[rank]
			go func() {
				tr, err := rg.mbs[rank].Begin(allreduce.Header{Run: "run-bf16", Epoch: 2, Step: 5}, rg.members, rank)
				if err != nil {
					errs <- err
					return
				}
				res[rank].owned = map[int][]float32{}
				res[rank].err = reducers[rank].AllReduce(ctx, tr, allreduce.Header{Run: "run-bf16", Epoch: 2, Step: 5}, rank, tc.n, data[rank], o, func(off int, seg []float32) {
					res[rank].owned[off] = append([]float32(nil), seg...)
				})
				errs <- nil
			}()
		}
		for range tc.n {
			if err := <-errs; err != nil {
				t.Fatalf("%s: Begin: %v", name, err)
			}
		}
		cancel()
		for r, x := range res {
			if x.err != nil {
				t.Fatalf("%s: AllReduce(rank %d) = %v; want nil", name, r, x.err)
			}
		}
		checkIdentical(t, name, data)
		checkOwned(t, name, res, want)
		for i := range want {
			if math.Float32bits(data[0][i]) != math.Float32bits(want[i]) {
				t.Fatalf("%s: [%d] = %v (%08x); the rounded sum is %v (%08x)", name, i, data[0][i], math.Float32bits(data[0][i]), want[i], math.Float32bits(want[i]))
			}
		}
		for r := range resid {
			for i := range resid[r] {
				if math.Float32bits(resid[r][i]) != math.Float32bits(wantRes[r][i]) {
					t.Fatalf("%s: rank %d residual[%d] = %v; want %v", name, r, i, resid[r][i], wantRes[r][i])
				}
			}
		}

		// The same vectors on the f32 wire: about twice the bytes.
		rg32 := s.open(t, fmt.Sprintf("f32n%d", tc.n), tc.n)
		reducers32 := newReducers(tc.n)
		ctx, cancel = context.WithTimeout(context.Background(), time.Minute)
		o32 := opts
		o32.Wire, o32.ExactTail = allreduce.WireF32, 0
		res32 := rg32.run(ctx, reducers32, allreduce.Header{Run: "run-f32", Epoch: 2, Step: 5}, in, o32, hooks{})
		cancel()
		var b16, b32 uint64
		for r := range tc.n {
			if res32[r].err != nil {
				t.Fatalf("%s: f32 AllReduce(rank %d) = %v", name, r, res32[r].err)
			}
			b16 += reducers[r].Stats().SentBytes
			b32 += reducers32[r].Stats().SentBytes
		}
		// Envelopes (up to EnvelopeOverhead bytes a part) weigh on small
		// chunks: the ratio is checked where parts are large.
		if ratio := float64(b16) / float64(b32); tc.chunk >= 1024 && (ratio > 0.55 || ratio < 0.45) {
			t.Errorf("%s: the bf16 wire sent %d bytes, the f32 wire %d (ratio %.3f); want about half", name, b16, b32, ratio)
		}
		t.Logf("%s: bytes sent, bf16 %d, f32 %d (%.3f)", name, b16, b32, float64(b16)/float64(b32))
	}
}

// mixedWires runs a ring whose rank 1 is on the f32 wire and the others on
// bf16: no rank applies a part of the other wire; every rank aborts, and the
// ranks that hear rank 1 name the wire in their error.
func (s *suite) mixedWires(t *testing.T) {
	const n, L = 3, 600
	rg := s.open(t, "mixed", n)
	data, _ := intData(n, L, 1)
	reducers := newReducers(n)
	opts := testOptions()
	opts.Deadline = 300 * time.Millisecond
	res := make([]result, n)
	done := make(chan struct{}, n)
	h := allreduce.Header{Run: "run-mixed", Epoch: 1, Step: 1}
	for rank := range n {
		o := opts
		if rank != 1 {
			o.Wire = allreduce.WireBF16
		}
		go func() {
			defer func() { done <- struct{}{} }()
			tr, err := rg.mbs[rank].Begin(h, rg.members, rank)
			if err != nil {
				res[rank].err = err
				return
			}
			res[rank].err = reducers[rank].AllReduce(context.Background(), tr, h, rank, n, data[rank], o, nil)
		}()
	}
	for range n {
		<-done
	}
	for r, x := range res {
		var ae *allreduce.AbortError
		if !errors.As(x.err, &ae) {
			t.Fatalf("rank %d: AllReduce = %v; want an *AbortError", r, x.err)
		}
		if r == 2 {
			if ae.WrongWire == 0 || !strings.Contains(ae.Error(), "another wire than this rank's bf16") {
				t.Errorf("rank 2 (right of the f32 rank): %v; want the parts of another wire counted and named", ae)
			}
		}
		if st := reducers[r].Stats(); st.Applied != 0 && r != 0 {
			// Rank 0 receives from rank 2 (bf16) and may apply its parts;
			// ranks 1 and 2 hear the other wire only.
			t.Errorf("rank %d applied %d parts of another wire", r, st.Applied)
		}
	}
}
