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
	hd   *headArgs // a head chunk with a BlockHead
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

// runner runs parallel loops on a Pool without allocating: the closures
// handed to Pool.For are made once, and each loop's operands travel in args.
// A runner runs one loop at a time (it is not safe for concurrent use);
// bodies may call Sgemm on the same pool but not run another loop on the same
// runner.
type runner struct {
	pool    *kernels.Pool
	args    loopArgs
	noTiles bool // attention on Pool.Sgemm only (tests)
	body    func(lo, hi int)
	chunks  func(lo, hi int)
	next    atomic.Int64 // loopArgs.next
	head    headArgs     // the operands of a BlockHead's chunk (loopArgs.hd points here)
	part    []float32    // partial column sums (colSumBlocks), grown once
	// chunk, n, nc: the chunks of the loop run: [c*chunk, min((c+1)*chunk, n)), c < nc.
	chunk, n, nc int
}

func newRunner(pool *kernels.Pool) *runner {
	r := &runner{pool: pool}
	r.body = func(lo, hi int) { r.args.fn(&r.args, lo, hi) }
	r.chunks = func(int, int) {
		a := &r.args
		for {
			c, ok := a.claim(r.nc)
			if !ok {
				return
			}
			a.fn(a, c*r.chunk, min((c+1)*r.chunk, r.n))
		}
	}
	return r
}

// run calls fn over [0, n), with the operands already stored in r.args, in
// chunks of at least grain that the pool's goroutines claim one at a time (a
// goroutine slowed by another process leaves its share to the others), then
// drops the operands. Bodies must not depend on how [0, n) is cut.
func (r *runner) run(n, grain int, fn rangeFunc) {
	threads := r.pool.Threads()
	r.args.fn, r.args.pool = fn, r.pool
	r.chunk = max(grain, 1, (n+4*threads-1)/(4*threads))
	r.n, r.nc = n, (n+r.chunk-1)/r.chunk
	if r.nc <= 1 || threads == 1 {
		if n > 0 {
			fn(&r.args, 0, n)
		}
	} else {
		r.next.Store(0)
		r.args.next = &r.next
		r.pool.For(min(r.nc, threads), 1, r.chunks)
	}
	r.args = loopArgs{}
}

// runEach calls fn once per goroutine of the pool (at most n), each with a
// range of [0, n); bodies claim their work items with loopArgs.claim. It
// drops the operands after.
func (r *runner) runEach(n int, fn rangeFunc) {
	r.args.fn, r.args.pool = fn, r.pool
	r.next.Store(0)
	r.args.next = &r.next
	r.pool.For(n, 1, r.body)
	r.args = loopArgs{}
}
