package lm

import (
	"sync/atomic"

	"github.com/klring/klring/kernels"
)

// A rangeFunc is the body of a parallel loop: it reads its operands from a
// and handles [lo, hi). Bodies are top-level functions, so passing one
// allocates nothing.
type rangeFunc func(a *loopArgs, lo, hi int)

// loopArgs are the operands of one parallel loop.
type loopArgs struct {
	s    [8][]float32
	n    [6]int
	x    [10]float32
	p64  []float64 // float64 results (gradient norm blocks)
	segs []segment // AdamW's decay segments
	tok  []int32   // tokens (encoder)
	// noTiles keeps attention on Pool.Sgemm (tests compare it with the
	// tile kernel of attn_fast.go).
	noTiles bool
	pool    *kernels.Pool // for GEMMs inside a body
	fn      rangeFunc
	// next hands out work items one at a time to the goroutines of a loop
	// (attention's (batch, head) pairs, the head's vocabulary groups): a
	// goroutine slowed by another process leaves its share to the others.
	next *atomic.Int64
}

// claim returns the next work item, or false once all n are taken.
func (a *loopArgs) claim(n int) (int, bool) {
	i := int(a.next.Add(1) - 1)
	return i, i < n
}

// runner runs parallel loops on a Pool without allocating: the closure handed
// to Pool.For is made once, and each loop's operands travel in args. A runner
// runs one loop at a time (it is not safe for concurrent use); bodies may call
// Sgemm on the same pool but not run another loop on the same runner.
type runner struct {
	pool    *kernels.Pool
	args    loopArgs
	noTiles bool // attention on Pool.Sgemm only (tests)
	body    func(lo, hi int)
	next    atomic.Int64 // loopArgs.next
}

func newRunner(pool *kernels.Pool) *runner {
	r := &runner{pool: pool}
	r.body = func(lo, hi int) { r.args.fn(&r.args, lo, hi) }
	return r
}

// run calls fn over [0, n) in ranges of at least grain, with the operands
// already stored in r.args, then drops the operands.
func (r *runner) run(n, grain int, fn rangeFunc) {
	r.args.fn, r.args.pool = fn, r.pool
	r.next.Store(0)
	r.args.next = &r.next
	r.pool.For(n, grain, r.body)
	r.args = loopArgs{}
}
