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
// The rank's own vector may become ready bucket by bucket (ResetBuckets,
// Ready): its own parts of a bucket are sent when the bucket is ready, and a
// reduce-scatter part of a bucket that is not ready yet is held (Step.Hold)
// and handed back by Ready, to be delivered then: it is added to floats
// that are final.
//
// A Ring is reused with Reset; it allocates only when the number of parts
// grows.
type Ring struct {
	plan     Plan
	rank     int
	got      []bool // [phase][segment parts] flat: base[k] + j, phase 1 after total
	held     []bool // [segment parts]: reduce-scatter parts held for their bucket
	base     []int  // [n+1] first flat index of each segment's parts
	total    int    // parts of all segments
	received int
	expected int
	buckets  Buckets
	ready    []bool // [bucket]
}

// NewRing returns the schedule of rank in plan.
func NewRing(rank int, plan Plan) *Ring {
	r := new(Ring)
	r.Reset(rank, plan)
	return r
}

// Reset starts a new all-reduce of rank in plan, with the whole vector
// ready: one bucket. It panics if rank is not in [0, plan.N).
func (r *Ring) Reset(rank int, plan Plan) {
	r.ResetBuckets(rank, plan.Buckets(0))
	r.ready[0] = true
}

// ResetBuckets starts a new all-reduce of rank in the plan of b, with no
// bucket ready: Start lists nothing, and Ready marks each bucket when the
// rank's floats in it are final. It panics if rank is not in [0, plan.N).
func (r *Ring) ResetBuckets(rank int, b Buckets) {
	plan := b.plan
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
	if cap(r.held) < t {
		r.held = make([]bool, t)
	}
	r.held = r.held[:t]
	clear(r.held)
	r.buckets = b
	if cap(r.ready) < b.Count() {
		r.ready = make([]bool, b.Count())
	}
	r.ready = r.ready[:b.Count()]
	clear(r.ready)
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

// Buckets returns the buckets of the current all-reduce.
func (r *Ring) Buckets() Buckets { return r.buckets }

// Start appends to dst the parts the rank sends before it receives anything:
// every part of its own segment in a ready bucket, on hop 0 of the
// reduce-scatter (after Reset, the whole segment; after ResetBuckets,
// nothing).
func (r *Ring) Start(dst []PartID) []PartID {
	if r.plan.N == 1 {
		return dst
	}
	for j := range r.plan.Parts(r.rank) {
		if r.ready[r.buckets.Of(j)] {
			dst = append(dst, PartID{ReduceScatter, 0, r.rank, j})
		}
	}
	return dst
}

// Ready marks bucket b ready: the rank's floats in it are final. It appends
// to sends the parts of the rank's own segment in b, to send on hop 0 of the
// reduce-scatter, and to held the parts of b received and held before (each
// to be given to Deliver now, in that order; Deliver then applies it). It
// returns an error wrapping ErrBadBucket, the state unchanged, for a bucket
// out of range or already ready.
func (r *Ring) Ready(b int, sends, held []PartID) ([]PartID, []PartID, error) {
	if b < 0 || b >= len(r.ready) || r.ready[b] {
		return sends, held, fmt.Errorf("%w: bucket %d of %d at rank %d (ready twice, or no such bucket)", ErrBadBucket, b, len(r.ready), r.rank)
	}
	r.ready[b] = true
	if r.plan.N == 1 {
		return sends, held, nil
	}
	lo := b * r.buckets.rows
	for k := range r.plan.N {
		for j := lo; j < min(lo+r.buckets.rows, r.plan.Parts(k)); j++ {
			if k == r.rank {
				sends = append(sends, PartID{ReduceScatter, 0, k, j})
			}
			if i := r.base[k] + j; r.held[i] {
				r.held[i] = false
				h, _ := r.Hop(ReduceScatter, k)
				held = append(held, PartID{ReduceScatter, h, k, j})
			}
		}
	}
	return sends, held, nil
}

// IsReady reports whether bucket b is ready.
func (r *Ring) IsReady(b int) bool { return b >= 0 && b < len(r.ready) && r.ready[b] }

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
	// Hold: the part's bucket is not ready; keep the part until Ready
	// hands it back, and do nothing else with it now.
	Hold  bool
	Add   bool   // add the part into the vector (reduce-scatter); else copy it
	Owned bool   // after applying, the part is fully reduced and owned by this rank
	Send  bool   // after applying, send Next to the right neighbour
	Next  PartID // the part to send
}

// Awaits reports whether Deliver would accept part id now (to apply it or
// to hold it): the rank receives it, it is not a duplicate, and it does not
// come before its reduction. The state is unchanged.
func (r *Ring) Awaits(id PartID) bool {
	_, _, _, err := r.check(id)
	return err == nil
}

// check validates part id for Deliver and returns its hop, its index in got
// and whether it is to be held.
func (r *Ring) check(id PartID) (h, i int, hold bool, err error) {
	h, i, err = r.checkPart(id)
	if err != nil || r.ready[r.buckets.Of(id.Part)] {
		return h, i, false, err
	}
	switch {
	case id.Phase == AllGather:
		// Copies follow the rank's own sends of the bucket.
		return 0, 0, false, fmt.Errorf("%w: %v at rank %d of %d: its bucket is not ready", ErrOutOfOrder, id, r.rank, r.plan.N)
	case r.held[i]:
		return 0, 0, false, fmt.Errorf("%w: %v at rank %d of %d (held)", ErrDuplicate, id, r.rank, r.plan.N)
	}
	return h, i, true, nil
}

// checkPart validates part id against the plan and what was delivered, and
// returns its hop and its index in got.
func (r *Ring) checkPart(id PartID) (h, i int, err error) {
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
// what to do with it: hold it (a reduce-scatter part of a bucket not ready
// yet; Ready hands it back) or apply it and maybe send the next. It returns
// an error wrapping ErrUnexpected, ErrDuplicate or ErrOutOfOrder for a part
// that must not be applied; the state is then unchanged.
func (r *Ring) Deliver(id PartID) (Step, error) {
	h, i, hold, err := r.check(id)
	if err != nil {
		return Step{}, err
	}
	if hold {
		r.held[i] = true
		return Step{Hold: true}, nil
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

// Missing returns the first part not yet delivered (or only held), in the
// order the left neighbour sends them (phase, then hop, then part), and
// false when nothing is missing.
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
