package allreduce

import (
	"errors"
	"fmt"
	"testing"
)

// simNet drives n Ring schedules synchronously over FIFO links i -> i+1,
// applying the parts to integer vectors. drop says which messages are lost.
type simNet struct {
	rings []*Ring
	links [][]PartID // links[r]: queue into rank r
	data  [][]float64
	drop  func(from int, id PartID) bool
	trace []string
}

func newSimNet(n, length, partFloats int, drop func(int, PartID) bool) *simNet {
	s := &simNet{links: make([][]PartID, n), data: make([][]float64, n), drop: drop}
	plan := NewPlan(length, n, partFloats)
	for r := range n {
		s.rings = append(s.rings, NewRing(r, plan))
		s.data[r] = make([]float64, length)
		for i := range length {
			s.data[r][i] = float64(r + 1)
		}
	}
	return s
}

func (s *simNet) send(from int, id PartID) {
	if s.drop != nil && s.drop(from, id) {
		s.trace = append(s.trace, fmt.Sprintf("drop %d: %v", from, id))
		return
	}
	to := s.rings[from].Right()
	s.links[to] = append(s.links[to], id)
}

// run delivers messages round-robin until no link has any left.
func (s *simNet) run(t *testing.T) {
	for r, g := range s.rings {
		for _, id := range g.Start(nil) {
			s.send(r, id)
		}
	}
	for busy := true; busy; {
		busy = false
		for r, g := range s.rings {
			if len(s.links[r]) == 0 {
				continue
			}
			busy = true
			id := s.links[r][0]
			s.links[r] = s.links[r][1:]
			st, err := g.Deliver(id)
			if err != nil {
				t.Fatalf("rank %d: Deliver(%v) = %v", r, id, err)
			}
			off, m := g.Plan().Part(id.Segment, id.Part)
			left := g.Left()
			for i := off; i < off+m; i++ {
				if st.Add {
					s.data[r][i] += s.data[left][i] // left has not changed it since sending: FIFO and causality
				} else {
					s.data[r][i] = s.data[left][i]
				}
			}
			if st.Send {
				s.send(r, st.Next)
			}
		}
	}
}

func TestRingSchedule(t *testing.T) {
	for _, tc := range []struct{ n, length, part int }{
		{1, 5, 2}, {2, 1, 1}, {2, 2, 1}, {3, 2, 1}, {4, 3, 2}, {3, 10, 3}, {5, 101, 4}, {8, 1000, 7}, {8, 7, 100},
	} {
		s := newSimNet(tc.n, tc.length, tc.part, nil)
		s.run(t)
		want := float64(tc.n * (tc.n + 1) / 2)
		for r, g := range s.rings {
			if !g.Done() {
				miss, _ := g.Missing()
				t.Errorf("n=%d len=%d: rank %d not done, missing %v", tc.n, tc.length, r, miss)
			}
			for i, v := range s.data[r] {
				if v != want {
					t.Fatalf("n=%d len=%d part=%d: rank %d [%d] = %v; want %v", tc.n, tc.length, tc.part, r, i, v, want)
				}
			}
		}
	}
}

// TestRingDrop drops one message and checks that the receiver, and only the
// ranks downstream of it, end waiting for exactly that part (or one that
// depends on it).
func TestRingDrop(t *testing.T) {
	for _, tc := range []struct {
		name     string
		n        int
		from     int
		id       PartID
		wantRank int // the rank the dropped message was for
	}{
		{"first part of reduce-scatter", 4, 0, PartID{ReduceScatter, 0, 0, 0}, 1},
		{"middle of reduce-scatter", 4, 2, PartID{ReduceScatter, 1, 1, 2}, 3},
		{"last hop of reduce-scatter", 3, 1, PartID{ReduceScatter, 1, 0, 1}, 2},
		{"all-gather", 4, 3, PartID{AllGather, 1, 3, 0}, 0},
		{"last part of all-gather", 2, 1, PartID{AllGather, 0, 0, 3}, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newSimNet(tc.n, 40, 3, func(from int, id PartID) bool { return from == tc.from && id == tc.id })
			s.run(t)
			g := s.rings[tc.wantRank]
			miss, ok := g.Missing()
			if !ok || miss != tc.id || g.Done() {
				t.Errorf("rank %d: Missing() = %v, %v; want %v, true", tc.wantRank, miss, ok, tc.id)
			}
			if len(s.trace) != 1 {
				t.Errorf("trace = %q; want one drop", s.trace)
			}
		})
	}
}

func TestRingDeliverRejects(t *testing.T) {
	plan := NewPlan(20, 4, 3) // segments of 5: parts of 3, 2
	for _, tc := range []struct {
		name  string
		prior []PartID
		id    PartID
		want  error
	}{
		{"own segment in reduce-scatter", nil, PartID{ReduceScatter, 3, 1, 0}, ErrUnexpected},
		{"wrong hop", nil, PartID{ReduceScatter, 1, 0, 0}, ErrUnexpected},
		{"part out of range", nil, PartID{ReduceScatter, 0, 0, 2}, ErrUnexpected},
		{"segment out of range", nil, PartID{ReduceScatter, 0, 4, 0}, ErrUnexpected},
		{"phase out of range", nil, PartID{2, 0, 0, 0}, ErrUnexpected},
		{"owned segment in all-gather", nil, PartID{AllGather, 3, 2, 0}, ErrUnexpected},
		{"duplicate", []PartID{{ReduceScatter, 0, 0, 0}}, PartID{ReduceScatter, 0, 0, 0}, ErrDuplicate},
		{"all-gather before reduce-scatter", nil, PartID{AllGather, 1, 0, 0}, ErrOutOfOrder},
	} {
		g := NewRing(1, plan)
		for _, p := range tc.prior {
			if _, err := g.Deliver(p); err != nil {
				t.Fatalf("%s: Deliver(%v) = %v", tc.name, p, err)
			}
		}
		before := g.Received()
		if _, err := g.Deliver(tc.id); !errors.Is(err, tc.want) {
			t.Errorf("%s: Deliver(%v) = %v; want %v", tc.name, tc.id, err, tc.want)
		}
		if g.Received() != before {
			t.Errorf("%s: Received() = %d after a rejected part; want %d", tc.name, g.Received(), before)
		}
	}
}

func TestPlanCovers(t *testing.T) {
	for _, tc := range []struct{ length, n, part int }{{0, 3, 4}, {1, 4, 1}, {10, 3, 4}, {1001, 8, 16}, {7, 7, 1}, {100000, 4, 1 << 20}, {5000, 3, 300}} {
		p := NewPlan(tc.length, tc.n, tc.part)
		cover := make([]int, tc.length)
		for k := range tc.n {
			total := 0
			for j := range p.Parts(k) {
				off, m := p.Part(k, j)
				if m < 1 || m > tc.part || m > p.Stripe || off%p.Stripe != 0 || off/p.Stripe != k+j*tc.n {
					t.Fatalf("NewPlan(%d, %d, %d).Part(%d, %d) = %d, %d: not stripe %d of %d floats", tc.length, tc.n, tc.part, k, j, off, m, k+j*tc.n, p.Stripe)
				}
				if !p.Within(k, off, m) || p.Within((k+1)%tc.n, off, m) && tc.n > 1 || p.Within(k, off, m+1) && tc.n > 1 {
					t.Errorf("%+v: Within(%d, %d, %d) wrong", p, k, off, m)
				}
				for i := off; i < off+m; i++ {
					cover[i]++
				}
				total += m
			}
			if total != p.SegmentLen(k) {
				t.Errorf("%+v: segment %d has %d floats in its parts, SegmentLen says %d", p, k, total, p.SegmentLen(k))
			}
		}
		for i, c := range cover {
			if c != 1 {
				t.Fatalf("NewPlan(%d, %d, %d) covers float %d %d times; want once", tc.length, tc.n, tc.part, i, c)
			}
		}
		// Buckets tile the vector in whole rows.
		for _, bf := range []int{0, 1, p.N * p.Stripe, 3*p.N*p.Stripe + 1, tc.length} {
			bk := p.Buckets(bf)
			next := 0
			for b := range bk.Count() {
				off, m := bk.Range(b)
				if off != next || (m == 0) != (tc.length == 0) {
					t.Fatalf("%+v: Buckets(%d).Range(%d) = %d, %d; want offset %d", p, bf, b, off, m, next)
				}
				next += m
				if bk.From(off) != b || bk.From(off+1) != min(b+1, bk.Count()) && m > 0 {
					t.Errorf("%+v: Buckets(%d).From(%d) = %d, want %d", p, bf, off, bk.From(off), b)
				}
			}
			if next != tc.length || bk.From(tc.length) != bk.Count() && tc.length > 0 {
				t.Errorf("%+v: Buckets(%d) cover %d floats, want %d", p, bf, next, tc.length)
			}
			for k := range tc.n {
				for j := range p.Parts(k) {
					off, m := p.Part(k, j)
					bo, bm := bk.Range(bk.Of(j))
					if off < bo || off+m > bo+bm {
						t.Errorf("%+v: part (%d, %d) [%d, +%d) outside its bucket %d [%d, +%d)", p, k, j, off, m, bk.Of(j), bo, bm)
					}
				}
			}
		}
	}
}
