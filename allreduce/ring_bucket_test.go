package allreduce

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
	"time"
)

// bucketSim drives n Ring schedules whose vectors become ready bucket by
// bucket, in orders and interleavings chosen by a seeded generator (no
// clock): messages carry float32 payloads, applied as the Reducer applies
// them, and each rank's vector is NaN until its bucket is made ready, so
// that a part applied before its bucket poisons the result.
type bucketSim struct {
	rings []*Ring
	in    [][]float32 // each rank's input
	data  [][]float32
	links [][]simMsg // links[r]: FIFO into rank r
	held  []map[PartID][]float32
	order [][]int // the buckets each rank has yet to make ready, in order
	rng   *rand.Rand
}

type simMsg struct {
	id PartID
	x  []float32
}

func newBucketSim(in [][]float32, partFloats, bucketFloats int, rng *rand.Rand) *bucketSim {
	n, L := len(in), len(in[0])
	plan := NewPlan(L, n, partFloats)
	s := &bucketSim{in: in, rng: rng, links: make([][]simMsg, n)}
	for r := range n {
		bk := plan.Buckets(bucketFloats)
		g := new(Ring)
		g.ResetBuckets(r, bk)
		s.rings = append(s.rings, g)
		d := make([]float32, L)
		for i := range d {
			d[i] = float32(math.NaN())
		}
		s.data = append(s.data, d)
		s.held = append(s.held, map[PartID][]float32{})
		// Rank 0 from the end, rank 1 from the start, the others at random.
		ord := make([]int, bk.Count())
		for i := range ord {
			switch r {
			case 0:
				ord[i] = len(ord) - 1 - i
			case 1:
				ord[i] = i
			}
		}
		if r > 1 {
			ord = rng.Perm(len(ord))
		}
		s.order = append(s.order, ord)
	}
	return s
}

func (s *bucketSim) send(from int, id PartID, x []float32) {
	to := s.rings[from].Right()
	s.links[to] = append(s.links[to], simMsg{id, append([]float32(nil), x...)})
}

func (s *bucketSim) deliver(t *testing.T, r int, m simMsg) {
	g := s.rings[r]
	st, err := g.Deliver(m.id)
	if err != nil {
		t.Fatalf("rank %d: Deliver(%v) = %v", r, m.id, err)
	}
	if st.Hold {
		s.held[r][m.id] = m.x
		return
	}
	off, n := g.Plan().Part(m.id.Segment, m.id.Part)
	x := s.data[r][off : off+n]
	out := x
	switch {
	case st.Add && !st.Owned:
		out = make([]float32, n)
		for i := range x {
			out[i] = x[i] + m.x[i]
		}
	case st.Add:
		for i := range x {
			x[i] += m.x[i]
		}
	default:
		copy(x, m.x)
	}
	if st.Send {
		s.send(r, st.Next, out)
	}
}

func (s *bucketSim) ready(t *testing.T, r int) {
	g := s.rings[r]
	b := s.order[r][0]
	s.order[r] = s.order[r][1:]
	off, n := g.Buckets().Range(b)
	copy(s.data[r][off:off+n], s.in[r][off:off+n])
	sends, held, err := g.Ready(b, nil, nil)
	if err != nil {
		t.Fatalf("rank %d: Ready(%d) = %v", r, b, err)
	}
	if _, _, err := g.Ready(b, nil, nil); err == nil {
		t.Fatalf("rank %d: Ready(%d) twice = nil; want an error", r, b)
	}
	for _, id := range sends {
		po, pn := g.Plan().Part(id.Segment, id.Part)
		s.send(r, id, s.data[r][po:po+pn])
	}
	for _, id := range held {
		m := simMsg{id, s.held[r][id]}
		delete(s.held[r], id)
		s.deliver(t, r, m)
	}
}

// run makes buckets ready and delivers messages, one event at a time,
// choosing at random among the ranks that can do something.
func (s *bucketSim) run(t *testing.T) {
	for {
		var can []int // 2r: rank r makes a bucket ready; 2r+1: it receives
		for r := range s.rings {
			if len(s.order[r]) > 0 {
				can = append(can, 2*r)
			}
			if len(s.links[r]) > 0 {
				can = append(can, 2*r+1)
			}
		}
		if len(can) == 0 {
			break
		}
		e := can[s.rng.IntN(len(can))]
		r := e / 2
		if e%2 == 0 {
			s.ready(t, r)
			continue
		}
		m := s.links[r][0]
		s.links[r] = s.links[r][1:]
		s.deliver(t, r, m)
	}
	for r, g := range s.rings {
		if !g.Done() || len(s.held[r]) > 0 {
			t.Fatalf("rank %d: done %v with %d parts held; want done, none held", r, g.Done(), len(s.held[r]))
		}
	}
}

// TestRingBucketsAnyOrder: whatever the buckets, the order in which each
// rank makes them ready and how that interleaves with the ring's traffic,
// every rank ends with the bits of the unbucketed all-reduce.
func TestRingBucketsAnyOrder(t *testing.T) {
	for _, tc := range []struct{ n, L, part, bucket int }{
		{2, 1000, 16, 40}, {3, 5000, 300, 1000}, {4, 20000, 1 << 20, 3000}, {5, 777, 7, 1}, {4, 3, 1, 1}, {8, 10007, 64, 4096},
	} {
		rng := rand.New(rand.NewPCG(uint64(tc.n), uint64(tc.L)))
		in := make([][]float32, tc.n)
		for r := range in {
			in[r] = make([]float32, tc.L)
			for i := range in[r] {
				in[r][i] = float32(rng.NormFloat64() * math.Exp(3*rng.NormFloat64()))
			}
		}
		ref := newBucketSim(in, tc.part, 0, rng)
		ref.run(t)
		for seed := range 4 {
			name := fmt.Sprintf("n=%d len=%d part=%d bucket=%d seed=%d", tc.n, tc.L, tc.part, tc.bucket, seed)
			s := newBucketSim(in, tc.part, tc.bucket, rand.New(rand.NewPCG(uint64(seed), 9)))
			if c := s.rings[0].Buckets().Count(); c < 2 && tc.L > tc.n*s.rings[0].Plan().Stripe {
				t.Fatalf("%s: %d bucket(s); the case wants several", name, c)
			}
			s.run(t)
			for r := range tc.n {
				for i := range tc.L {
					if math.Float32bits(s.data[r][i]) != math.Float32bits(ref.data[0][i]) {
						t.Fatalf("%s: rank %d [%d] = %v; unbucketed %v", name, r, i, s.data[r][i], ref.data[0][i])
					}
				}
			}
		}
	}
}

// TestRingHoldsAndRejects: a part of a bucket not ready is held, a second
// copy of it is a duplicate, an all-gather part of a bucket not ready is
// out of order, and Ready rejects a bucket out of range.
func TestRingHoldsAndRejects(t *testing.T) {
	plan := NewPlan(4000, 4, 256) // stripes of 256 floats: 16 stripes, 4 rows
	g := new(Ring)
	g.ResetBuckets(1, plan.Buckets(4*256)) // a bucket a row
	if g.Buckets().Count() != 4 || len(g.Start(nil)) != 0 {
		t.Fatalf("%d buckets, Start %v; want 4 buckets, nothing to send", g.Buckets().Count(), g.Start(nil))
	}
	id := PartID{ReduceScatter, 0, 0, 2} // from rank 0, row 2
	if st, err := g.Deliver(id); err != nil || !st.Hold {
		t.Fatalf("Deliver(%v) = %+v, %v; want held", id, st, err)
	}
	if _, err := g.Deliver(id); err == nil {
		t.Fatalf("Deliver(%v) twice = nil; want ErrDuplicate", id)
	}
	if g.Awaits(PartID{AllGather, 0, 1, 0}) {
		t.Fatalf("an all-gather part of the rank's own segment before its bucket is ready was awaited")
	}
	if _, _, err := g.Ready(4, nil, nil); err == nil {
		t.Fatalf("Ready(4) of 4 buckets = nil; want ErrBadBucket")
	}
	sends, held, err := g.Ready(2, nil, nil)
	if err != nil || len(sends) != 1 || sends[0] != (PartID{ReduceScatter, 0, 1, 2}) || len(held) != 1 || held[0] != id {
		t.Fatalf("Ready(2) = %v, %v, %v; want [its part 2], [%v]", sends, held, err, id)
	}
	if st, err := g.Deliver(id); err != nil || st.Hold || !st.Add || !st.Send {
		t.Fatalf("Deliver(%v) after Ready = %+v, %v; want applied and sent on", id, st, err)
	}
	if g.Received() != 1 {
		t.Fatalf("Received() = %d; want 1", g.Received())
	}
}

// oneMessage hands back msg on the first Recv, then waits for the end of
// the context.
type oneMessage struct{ msg []byte }

func (t *oneMessage) Send(context.Context, int, []byte) error { return nil }
func (t *oneMessage) Recv(ctx context.Context) ([]byte, error) {
	if m := t.msg; m != nil {
		t.msg = nil
		return m, nil
	}
	<-ctx.Done()
	return nil, ctx.Err()
}

// TestBucketsEndWithTheirContext: a bucketed all-reduce whose context ends
// while it applies a message (here, in the owned callback) returns an
// AbortError wrapping the context's error: its receiving goroutine has
// stopped with the context (the call used to wait for it forever).
func TestBucketsEndWithTheirContext(t *testing.T) {
	const L = 4000
	h := Header{Run: "r", Epoch: 1, Step: 1}
	opts := Options{ChunkBytes: 1024, BucketBytes: 1}
	plan := NewPlan(L, 2, opts.PartFloats())
	_, m := plan.Part(1, 0)
	msg := AppendMessage(nil, h, PartID{ReduceScatter, 0, 1, 0}, 1, make([]float32, m)) // rank 0 owns segment 1
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	ready := make(chan int, 1)
	ready <- 0
	err := NewReducer().AllReduceBuckets(ctx, &oneMessage{msg}, h, 0, 2, make([]float32, L), opts, ready, func(int, []float32) { cancel() })
	var ae *AbortError
	if !errors.As(err, &ae) || !errors.Is(err, context.Canceled) {
		t.Fatalf("AllReduceBuckets = %v; want an AbortError wrapping context.Canceled", err)
	}
}
