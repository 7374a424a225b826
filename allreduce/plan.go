package allreduce

import "fmt"

// Plan cuts a vector of Len floats into N segments (one per rank, balanced:
// the first Len%N segments have one float more) and every segment into parts
// of at most PartFloats floats. Segment k starts at SegOffset(k); part j of
// segment k covers [Part(k, j)).
type Plan struct {
	Len        int // floats in the vector
	N          int // ranks
	PartFloats int // floats per part, at most
}

// NewPlan returns the plan of a vector of length floats over n ranks with
// parts of at most partFloats floats. It panics on n < 1, length < 0 or
// partFloats < 1.
func NewPlan(length, n, partFloats int) Plan {
	if n < 1 || length < 0 || partFloats < 1 {
		panic(fmt.Sprintf("allreduce: NewPlan(%d, %d, %d): want length >= 0, n >= 1, partFloats >= 1", length, n, partFloats))
	}
	return Plan{Len: length, N: n, PartFloats: partFloats}
}

// Segment returns the offset and length of segment k.
func (p Plan) Segment(k int) (off, n int) {
	q, r := p.Len/p.N, p.Len%p.N
	off = k*q + min(k, r)
	n = q
	if k < r {
		n++
	}
	return off, n
}

// Parts returns the number of parts of segment k (0 for an empty segment).
func (p Plan) Parts(k int) int {
	_, n := p.Segment(k)
	return (n + p.PartFloats - 1) / p.PartFloats
}

// Part returns the offset (into the vector) and length of part j of segment k.
func (p Plan) Part(k, j int) (off, n int) {
	so, sn := p.Segment(k)
	off = so + j*p.PartFloats
	return off, min(p.PartFloats, so+sn-off)
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
