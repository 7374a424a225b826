package kernels

import (
	"runtime"
	"sync"
	"sync/atomic"
	"time"
)

// defaultSpin is Pool.spin: longer than a worker started for a call took to
// begin its share (118-167 µs after the caller, the 1024^3 product at two
// threads on a Zen 4 VM) and than the gap between the ends of that
// product's two shares (105-216 µs).
const defaultSpin = 250 * time.Microsecond

// Pool is a parallelism budget shared by all kernels of a process. The zero
// value is not usable; create one with NewPool. A Pool is safe for concurrent use.
type Pool struct {
	threads int
	// extra holds one token per goroutine a call may start besides its caller.
	extra chan struct{}

	// kern is the Sgemm micro-kernel, chosen for the CPU by NewPool (tests
	// set it to kernelGo to check the portable path).
	kern *microKernel
	// maxShared bounds an Sgemm's shared packed operand, in float32s (tests
	// lower it to exercise slabs).
	maxShared int
	// smallFlops is the size of product read in place where possible (tests
	// set it to 0 to force packing on small shapes).
	smallFlops float64
	// directMNK is the size of product (m*n*k) done by plain loops (tests
	// set it to 0 to run tiny shapes through the micro-kernels).
	directMNK int
	// packSpin is how many times Sgemm yields while waiting for a block of
	// packing before it parks (tests set it to 0).
	packSpin int
	// packAll makes Sgemm pack every operand, even one it could read in
	// place (tests set it to check the packing of every layout).
	packAll bool
	// useGonum sends Sgemm to gonum's pure-Go Sgemm, row blocks split over
	// the budget: NewPool sets it where no assembly micro-kernel fits the CPU,
	// since gonum's blocked Go kernel beats the portable 4x4 one (tests set
	// it to check that path).
	useGonum bool
	// yield makes every parallel call start by yielding (SetYield).
	yield atomic.Bool
	// gosched is how a call yields: runtime.Gosched (tests count the calls).
	gosched func()

	// spin is how long a worker whose share is done waits for the next
	// call's (and a caller for the other shares of its call) before it
	// parks: on these VMs a worker started for a call began its share
	// 118-167 µs after the caller, a core left idle at the start and the
	// end of every parallel call (tests set
	// it to 0: park at once). Spinning workers hold no slot of the budget.
	// A pool in yield mode never spins (spins).
	spin time.Duration
	// spinning counts the workers spinning for a share and not yet claimed;
	// handoff carries the shares to them.
	spinning atomic.Int32
	handoff  chan share
	// started counts the worker goroutines started (tests).
	started atomic.Int64

	mu   sync.Mutex
	free []*gemmBuf // packing buffers not in use, guarded by mu
	jobs []*gemmJob // Sgemm jobs not in use, guarded by mu
}

// NewPool returns a budget of threads goroutines. threads <= 0 means
// runtime.GOMAXPROCS(0).
func NewPool(threads int) *Pool {
	if threads <= 0 {
		threads = runtime.GOMAXPROCS(0)
	}
	p := &Pool{threads: threads, extra: make(chan struct{}, threads-1), kern: bestKernel(), maxShared: defaultMaxShared, smallFlops: defaultSmallFlops, directMNK: defaultDirectMNK, packSpin: defaultPackSpin, gosched: runtime.Gosched, spin: defaultSpin, handoff: make(chan share, threads)}
	p.useGonum = p.kern == &kernelGo
	for i := 0; i < threads-1; i++ {
		p.extra <- struct{}{}
	}
	return p
}

// SetYield makes every call of For and Sgemm start by yielding the
// processor (runtime.Gosched) to goroutines waiting for one. A process that
// runs latency-bound goroutines beside its compute (a worker's ring during
// backward; the workers of a simulation sharing the cores) uses it, so that
// a message's goroutine waits for the end of one operation rather than for
// the scheduler's time slice (10 ms) of a goroutine in the kernels. A
// process that only computes has no use for it (the default is off).
func (p *Pool) SetYield(on bool) { p.yield.Store(on) }

// Threads returns the budget.
func (p *Pool) Threads() int { return p.threads }

// For splits [0, n) into contiguous ranges of at least grain items (grain < 1
// means 1) and calls fn(lo, hi) once per range, on at most Threads() goroutines
// taken from the budget, the caller's included. It returns when every call has
// returned. Ranges are disjoint and cover [0, n) exactly once. fn must not call
// For on the same Pool in a way that waits for a free slot; nested calls are
// allowed and simply run inline when the budget is spent.
func (p *Pool) For(n, grain int, fn func(lo, hi int)) {
	p.forEach(n, grain, rangeFunc(fn))
}

// A ranger is the body of a parallel loop over [lo, hi).
type ranger interface{ run(lo, hi int) }

type rangeFunc func(lo, hi int)

func (f rangeFunc) run(lo, hi int) { f(lo, hi) }

// forEach is For over a ranger: a pooled ranger makes a call that runs on the
// caller alone free of allocation.
func (p *Pool) forEach(n, grain int, r ranger) {
	if p.yield.Load() {
		p.gosched()
	}
	if n <= 0 {
		return
	}
	if grain < 1 {
		grain = 1
	}
	parts := min(n/grain, p.threads)
	if parts <= 1 {
		r.run(0, n)
		return
	}
	// Take as many extra slots as are free right now; never wait for one.
	got := 0
take:
	for got < parts-1 {
		select {
		case <-p.extra:
			got++
		default:
			break take
		}
	}
	parts = got + 1
	if parts == 1 {
		r.run(0, n)
		return
	}
	c := &call{r: r, done: make(chan struct{})}
	c.pending.Store(int32(parts - 1))
	for i := 1; i < parts; i++ {
		sh := share{c, i * n / parts, (i + 1) * n / parts}
		if p.claimSpinner() {
			p.handoff <- sh
		} else {
			p.started.Add(1)
			go p.worker(sh)
		}
	}
	r.run(0, n/parts)
	// Wait for the other shares spinning before parking: a parked caller
	// is woken as late as a parked worker (see spin).
	if p.spins() {
		for end := time.Now().Add(p.spin); c.pending.Load() > 0 && time.Now().Before(end); {
			runtime.Gosched()
		}
	}
	<-c.done
}

// A call is one parallel loop split over goroutines.
type call struct {
	r       ranger
	pending atomic.Int32  // shares not done yet, besides the caller's
	done    chan struct{} // closed by the share that brings pending to 0
}

// A share is one range of a call, run by a worker with a slot of the budget.
type share struct {
	c      *call
	lo, hi int
}

// spins reports whether the pool's goroutines spin before they park: not
// in yield mode (SetYield). Go's scheduler polls the network only when a
// processor has nothing else to run, so a goroutine spinning through
// runtime.Gosched would hold off, for up to 10 ms, the goroutines that
// carry the messages of a process in yield mode (in a simulation on two
// cores, 300 steps took 2-3% longer).
func (p *Pool) spins() bool { return p.spin > 0 && !p.yield.Load() }

// claimSpinner takes one of the workers spinning for a share, if any: the
// caller must then send it one on p.handoff.
func (p *Pool) claimSpinner() bool {
	for {
		n := p.spinning.Load()
		if n == 0 {
			return false
		}
		if p.spinning.CompareAndSwap(n, n-1) {
			return true
		}
	}
}

// worker runs sh, gives its slot back, and then, for up to p.spin, runs the
// shares the next calls hand it (p.handoff) before it exits. It counts
// itself among the spinning workers before it gives its slot back and
// reports its share done, so that the next call, the caller's or one that
// takes the slot, finds it rather than starting another goroutine. While it waits it yields the
// processor at every turn: the process's other goroutines run first. A
// share of no call (sh.c nil) makes it exit.
func (p *Pool) worker(sh share) {
	for sh.c != nil {
		sh.c.r.run(sh.lo, sh.hi)
		spin := p.spins()
		if spin {
			p.spinning.Add(1)
		}
		p.extra <- struct{}{}
		if sh.c.pending.Add(-1) == 0 {
			close(sh.c.done)
		}
		if !spin {
			return
		}
		sh = p.await()
	}
}

// await waits, yielding, for up to p.spin for a share from p.handoff. When
// none came it withdraws from the spinning workers and returns a share of
// no call; a worker claimed by a caller (claimSpinner) before it could
// withdraw takes the share that caller sends.
func (p *Pool) await() share {
	end := time.Now().Add(p.spin)
	for {
		if time.Now().After(end) {
			// Withdraw as a caller would claim a spinner; with none left
			// unclaimed, this one was claimed and its share is on its way.
			if p.claimSpinner() {
				return share{}
			}
			return <-p.handoff
		}
		select {
		case sh := <-p.handoff:
			return sh
		default:
		}
		runtime.Gosched()
	}
}
