package kernels

import (
	"runtime"
	"sync"
	"sync/atomic"
)

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
	p := &Pool{threads: threads, extra: make(chan struct{}, threads-1), kern: bestKernel(), maxShared: defaultMaxShared, smallFlops: defaultSmallFlops, directMNK: defaultDirectMNK, packSpin: defaultPackSpin, gosched: runtime.Gosched}
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
	var wg sync.WaitGroup
	wg.Add(parts - 1)
	for i := 1; i < parts; i++ {
		go p.runPart(&wg, r, i*n/parts, (i+1)*n/parts)
	}
	r.run(0, n/parts)
	wg.Wait()
}

// runPart runs one range on a goroutine started with a slot of the budget and
// gives the slot back.
func (p *Pool) runPart(wg *sync.WaitGroup, r ranger, lo, hi int) {
	defer func() {
		p.extra <- struct{}{}
		wg.Done()
	}()
	r.run(lo, hi)
}
