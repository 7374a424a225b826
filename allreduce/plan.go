package allreduce

import "fmt"

// Plan cuts a vector of Len floats into stripes of Stripe floats (the last
// one shorter) and gives stripe s to segment s mod N: segment k is the
// stripes k, k+N, k+2N, ..., and part j of segment k is its j-th stripe,
// stripe k+jN, at offset (k+jN)*Stripe. Row j is the stripes jN to jN+N-1,
// one of every segment: part j of any segment lies in row j.
//
// Which segment, and so which chain of ranks, reduces a float depends only
// on its position, Len, N and PartFloats: buckets (Buckets), which are
// whole rows, never change it, so a bucketed all-reduce sums every float in
// the same order as an unbucketed one.
type Plan struct {
	Len        int // floats in the vector
	N          int // ranks
	PartFloats int // floats per message, at most (Options.PartFloats)
	// Stripe is the floats of one stripe, the unit of ownership and of a
	// part: PartFloats, or less for a vector that would otherwise have few
	// stripes per segment (StripeFloats).
	Stripe int
}

// Stripes per segment a stripe size aims at, at least, and the smallest
// stripe, in floats (StripeFloats).
const (
	stripesPerSegment = 16
	minStripe         = 256
)

// StripeFloats is the stripe of a vector of length floats over n ranks with
// parts of at most partFloats floats: partFloats, or less when the vector is
// too short for about 16 stripes per segment (so that segments are balanced
// to a sixteenth and buckets can be small), but not below 256 floats (few,
// larger messages) unless partFloats is, or the vector is too short for one
// stripe per segment at that size.
func StripeFloats(length, n, partFloats int) int {
	want := (length + stripesPerSegment*n - 1) / (stripesPerSegment * n)
	floor := min(minStripe, (length+n-1)/n)
	return max(1, min(partFloats, max(floor, want)))
}

// NewPlan returns the plan of a vector of length floats over n ranks with
// parts of at most partFloats floats. It panics on n < 1, length < 0 or
// partFloats < 1.
func NewPlan(length, n, partFloats int) Plan {
	if n < 1 || length < 0 || partFloats < 1 {
		panic(fmt.Sprintf("allreduce: NewPlan(%d, %d, %d): want length >= 0, n >= 1, partFloats >= 1", length, n, partFloats))
	}
	return Plan{Len: length, N: n, PartFloats: partFloats, Stripe: StripeFloats(length, n, partFloats)}
}

// stripes is the number of stripes of the vector.
func (p Plan) stripes() int { return (p.Len + p.Stripe - 1) / p.Stripe }

// Rows is the number of rows (N stripes each, the last maybe fewer).
func (p Plan) Rows() int { return (p.stripes() + p.N - 1) / p.N }

// Parts returns the number of parts (stripes) of segment k (0 for an empty
// segment).
func (p Plan) Parts(k int) int {
	s := p.stripes()
	if k >= s {
		return 0
	}
	return (s - k + p.N - 1) / p.N
}

// Part returns the offset (into the vector) and length of part j of segment k.
func (p Plan) Part(k, j int) (off, n int) {
	off = (k + j*p.N) * p.Stripe
	return off, min(p.Stripe, p.Len-off)
}

// SegmentLen returns the number of floats of segment k.
func (p Plan) SegmentLen(k int) int {
	m := p.Parts(k)
	if m == 0 {
		return 0
	}
	_, last := p.Part(k, m-1)
	return (m-1)*p.Stripe + last
}

// Within reports whether the floats [off, off+n) lie inside one part of
// segment k (n >= 1), or, with one rank, inside the vector (segment 0 is
// all of it). It adds nothing to off or n, so that they may come from the
// wire.
func (p Plan) Within(k, off, n int) bool {
	if off < 0 || n < 1 || off >= p.Len || n > p.Len-off {
		return false
	}
	if p.N == 1 {
		return k == 0
	}
	s := off / p.Stripe
	return s%p.N == k && n <= (s+1)*p.Stripe-off
}

// Messages returns the number of messages rank receives in one all-reduce:
// the parts of every segment but its own in the reduce-scatter, and of every
// segment but the one it owns in the all-gather. Size receive queues from it.
func (p Plan) Messages(rank int) int {
	if p.N == 1 {
		return 0
	}
	m := 0
	for k := 0; k < p.N; k++ {
		if k != rank {
			m += p.Parts(k)
		}
		if k != (rank+1)%p.N {
			m += p.Parts(k)
		}
	}
	return m
}

// MaxMessages bounds the messages any rank receives in one all-reduce of
// length floats over n ranks with opts: the size a subscription's pending
// limit needs for one call.
func MaxMessages(length, n int, opts Options) int {
	return 2 * (n - 1) * NewPlan(length, n, opts.PartFloats()).Parts(0)
}

// Buckets cut a Plan's rows into buckets of Rows rows each (the last maybe
// fewer): bucket b is the floats [Range(b)), contiguous, holding parts
// bRows to (b+1)Rows-1 of every segment. A rank whose vector becomes ready
// piece by piece (backward, from the last layer to the first) hands each
// bucket to the ring as soon as it is final (Reducer.AllReduceBuckets).
//
// Buckets are the rank's own schedule: they change when it sends its
// floats, never which chain of ranks sums them, so ranks need not agree on
// them and the sums do not depend on them.
type Buckets struct {
	plan Plan
	rows int // rows per bucket, >= 1
}

// Buckets cuts p into buckets of about bucketFloats floats: whole rows of
// N*Stripe floats, at least one; bucketFloats <= 0 means one bucket for the
// whole vector.
func (p Plan) Buckets(bucketFloats int) Buckets {
	rows := max(1, p.Rows())
	if bucketFloats > 0 {
		rows = min(rows, max(1, bucketFloats/(p.N*p.Stripe)))
	}
	return Buckets{plan: p, rows: rows}
}

// Count is the number of buckets (1 for an empty vector).
func (b Buckets) Count() int { return max(1, (b.plan.Rows()+b.rows-1)/b.rows) }

// Rows is the number of rows of each bucket but maybe the last.
func (b Buckets) Rows() int { return b.rows }

// Range returns the offset and length of bucket i.
func (b Buckets) Range(i int) (off, n int) {
	row := b.plan.N * b.plan.Stripe
	off = min(i*b.rows*row, b.plan.Len)
	return off, min(b.rows*row, b.plan.Len-off)
}

// Of returns the bucket of part j (of any segment).
func (b Buckets) Of(j int) int { return j / b.rows }

// From returns the first bucket that lies entirely in [lo, Len): the
// buckets From(lo) to Count()-1 are final once the floats from lo on are.
func (b Buckets) From(lo int) int {
	row := b.plan.N * b.plan.Stripe
	per := b.rows * row
	return min((max(lo, 0)+per-1)/per, b.Count())
}
