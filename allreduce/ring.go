package allreduce

import "fmt"

// Phase is a half of the ring all-reduce.
type Phase uint8

// The two phases.
const (
	ReduceScatter Phase = 0 // parts are added into the receiver's vector
	AllGather     Phase = 1 // parts are copied over the receiver's vector
)

func (p Phase) String() string {
	switch p {
	case ReduceScatter:
		return "reduce-scatter"
	case AllGather:
		return "all-gather"
	}
	return fmt.Sprintf("phase(%d)", uint8(p))
}

// PartID names one message of an all-reduce: the part Part of segment
// Segment as sent on hop Hop of phase Phase.
type PartID struct {
	Phase   Phase
	Hop     int
	Segment int
	Part    int
}

func (id PartID) String() string {
	return fmt.Sprintf("%v hop %d segment %d part %d", id.Phase, id.Hop, id.Segment, id.Part)
}

// Ring is the schedule of one rank in a ring all-reduce, as a pure state
// machine without I/O: Start lists the parts the rank sends first, and
// Deliver, for each part received from the left neighbour, says how to apply
// it (add or copy) and which part to send on to the right neighbour.
//
// At hop h of the reduce-scatter rank r sends segment (r-h) mod n and receives
// segment (r-h-1) mod n, which it adds into its vector; after n-1 hops it owns
// segment (r+1) mod n fully reduced. At hop h of the all-gather rank r sends
// segment (r+1-h) mod n and receives segment (r-h) mod n, which it copies.
// Parts are forwarded as soon as they are applied, so parts pipeline.
//
// A Ring is reused with Reset; it allocates only when the number of parts
// grows.
type Ring struct {
	plan     Plan
	rank     int
	got      []bool // [phase][segment parts] flat: base[k] + j, phase 1 after total
	base     []int  // [n+1] first flat index of each segment's parts
	total    int    // parts of all segments
	received int
	expected int
}

// NewRing returns the schedule of rank in plan.
func NewRing(rank int, plan Plan) *Ring {
	r := new(Ring)
	r.Reset(rank, plan)
	return r
}

// Reset starts a new all-reduce of rank in plan. It panics if rank is not in
// [0, plan.N).
func (r *Ring) Reset(rank int, plan Plan) {
	if rank < 0 || rank >= plan.N {
		panic(fmt.Sprintf("allreduce: rank %d of %d", rank, plan.N))
	}
	r.plan, r.rank = plan, rank
	if cap(r.base) < plan.N+1 {
		r.base = make([]int, plan.N+1)
	}
	r.base = r.base[:plan.N+1]
	t := 0
	for k := 0; k < plan.N; k++ {
		r.base[k] = t
		t += plan.Parts(k)
	}
	r.base[plan.N] = t
	r.total = t
	if cap(r.got) < 2*t {
		r.got = make([]bool, 2*t)
	}
	r.got = r.got[:2*t]
	clear(r.got)
	r.received = 0
	r.expected = plan.Messages(rank)
}

// Plan returns the plan of the current all-reduce.
func (r *Ring) Plan() Plan { return r.plan }

// Rank returns the rank the schedule is for.
func (r *Ring) Rank() int { return r.rank }

// Left returns the rank this rank receives from; Right the one it sends to.
func (r *Ring) Left() int  { return (r.rank + r.plan.N - 1) % r.plan.N }
func (r *Ring) Right() int { return (r.rank + 1) % r.plan.N }

// Owned returns the segment this rank holds fully reduced after the
// reduce-scatter.
func (r *Ring) Owned() int { return (r.rank + 1) % r.plan.N }

// Start appends to dst the parts the rank sends before it receives anything:
// every part of its own segment, on hop 0 of the reduce-scatter.
func (r *Ring) Start(dst []PartID) []PartID {
	if r.plan.N == 1 {
		return dst
	}
	for j := range r.plan.Parts(r.rank) {
		dst = append(dst, PartID{ReduceScatter, 0, r.rank, j})
	}
	return dst
}

// Done reports whether every expected part has been delivered.
func (r *Ring) Done() bool { return r.received == r.expected }

// Received and Expected count the parts delivered so far and in all.
func (r *Ring) Received() int { return r.received }
func (r *Ring) Expected() int { return r.expected }

// Hop returns the hop on which this rank receives segment k in phase ph,
// and whether it receives segment k in that phase at all.
func (r *Ring) Hop(ph Phase, k int) (int, bool) {
	n := r.plan.N
	switch ph {
	case ReduceScatter:
		h := ((r.rank-k-1)%n + n) % n
		return h, h <= n-2
	case AllGather:
		h := ((r.rank-k)%n + n) % n
		return h, h <= n-2
	}
	return 0, false
}

// Step is what to do with a delivered part.
type Step struct {
	Add   bool   // add the part into the vector (reduce-scatter); else copy it
	Owned bool   // after applying, the part is fully reduced and owned by this rank
	Send  bool   // after applying, send Next to the right neighbour
	Next  PartID // the part to send
}

// Awaits reports whether Deliver would accept part id now: the rank
// receives it, it is not a duplicate, and it does not come before its
// reduction. The state is unchanged.
func (r *Ring) Awaits(id PartID) bool {
	_, _, err := r.check(id)
	return err == nil
}

// check validates part id for Deliver and returns its hop and its index in
// got.
func (r *Ring) check(id PartID) (h, i int, err error) {
	n := r.plan.N
	if n == 1 || id.Phase > AllGather || id.Segment < 0 || id.Segment >= n ||
		id.Part < 0 || id.Part >= r.plan.Parts(id.Segment) {
		return 0, 0, fmt.Errorf("%w: %v at rank %d of %d", ErrUnexpected, id, r.rank, n)
	}
	h, ok := r.Hop(id.Phase, id.Segment)
	if !ok || h != id.Hop {
		return 0, 0, fmt.Errorf("%w: %v at rank %d of %d", ErrUnexpected, id, r.rank, n)
	}
	i = r.base[id.Segment] + id.Part
	if id.Phase == AllGather {
		// The all-gather copy of a part follows its reduce-scatter pass
		// through this rank, except for the rank's own segment, which it
		// sent first.
		if id.Segment != r.rank && !r.got[i] {
			return 0, 0, fmt.Errorf("%w: %v at rank %d of %d", ErrOutOfOrder, id, r.rank, n)
		}
		i += r.total
	}
	if r.got[i] {
		return 0, 0, fmt.Errorf("%w: %v at rank %d of %d", ErrDuplicate, id, r.rank, n)
	}
	return h, i, nil
}

// Deliver records part id as received from the left neighbour and returns
// what to do with it. It returns an error wrapping ErrUnexpected,
// ErrDuplicate or ErrOutOfOrder for a part that must not be applied; the
// state is then unchanged.
func (r *Ring) Deliver(id PartID) (Step, error) {
	h, i, err := r.check(id)
	if err != nil {
		return Step{}, err
	}
	n := r.plan.N
	r.got[i] = true
	r.received++
	s := Step{Add: id.Phase == ReduceScatter}
	switch {
	case id.Phase == ReduceScatter && h < n-2:
		s.Send, s.Next = true, PartID{ReduceScatter, h + 1, id.Segment, id.Part}
	case id.Phase == ReduceScatter:
		s.Owned = true
		s.Send, s.Next = true, PartID{AllGather, 0, id.Segment, id.Part}
	case h < n-2:
		s.Send, s.Next = true, PartID{AllGather, h + 1, id.Segment, id.Part}
	}
	return s, nil
}

// Missing returns the first part not yet delivered, in the order the left
// neighbour sends them (phase, then hop, then part), and false when nothing
// is missing.
func (r *Ring) Missing() (PartID, bool) {
	n := r.plan.N
	for ph := ReduceScatter; ph <= AllGather; ph++ {
		for h := 0; h <= n-2; h++ {
			k := ((r.rank-h-1)%n + n) % n
			if ph == AllGather {
				k = ((r.rank-h)%n + n) % n
			}
			off := r.base[k]
			if ph == AllGather {
				off += r.total
			}
			for j := range r.plan.Parts(k) {
				if !r.got[off+j] {
					return PartID{ph, h, k, j}, true
				}
			}
		}
	}
	return PartID{}, false
}
