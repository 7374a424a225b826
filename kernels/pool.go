package kernels

import (
	"runtime"
	"sync"
)

// Pool is a parallelism budget shared by all kernels of a process. The zero
// value is not usable; create one with NewPool. A Pool is safe for concurrent use.
type Pool struct {
	threads int
	// extra holds one token per goroutine a call may start besides its caller.
	extra chan struct{}
}

// NewPool returns a budget of threads goroutines. threads <= 0 means
// runtime.GOMAXPROCS(0).
func NewPool(threads int) *Pool {
	if threads <= 0 {
		threads = runtime.GOMAXPROCS(0)
	}
	p := &Pool{threads: threads, extra: make(chan struct{}, threads-1)}
	for i := 0; i < threads-1; i++ {
		p.extra <- struct{}{}
	}
	return p
}

// Threads returns the budget.
func (p *Pool) Threads() int { return p.threads }

// For splits [0, n) into contiguous ranges of at least grain items (grain < 1
// means 1) and calls fn(lo, hi) once per range, on at most Threads() goroutines
// taken from the budget, the caller's included. It returns when every call has
// returned. Ranges are disjoint and cover [0, n) exactly once. fn must not call
// For on the same Pool in a way that waits for a free slot; nested calls are
// allowed and simply run inline when the budget is spent.
func (p *Pool) For(n, grain int, fn func(lo, hi int)) {
	if n <= 0 {
		return
	}
	if grain < 1 {
		grain = 1
	}
	parts := n / grain
	if parts > p.threads {
		parts = p.threads
	}
	if parts <= 1 {
		fn(0, n)
		return
	}
	// Take as many extra slots as are free right now; never wait for one.
	got := 0
	for got < parts-1 {
		select {
		case <-p.extra:
			got++
			continue
		default:
		}
		break
	}
	parts = got + 1
	if parts == 1 {
		fn(0, n)
		return
	}
	var wg sync.WaitGroup
	wg.Add(parts - 1)
	for i := 1; i < parts; i++ {
		lo, hi := i*n/parts, (i+1)*n/parts
		go func() {
			defer func() {
				p.extra <- struct{}{}
				wg.Done()
			}()
			fn(lo, hi)
		}()
	}
	fn(0, n/parts)
	wg.Wait()
}
