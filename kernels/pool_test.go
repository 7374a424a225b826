package kernels

import (
	"fmt"
	"reflect"
	"runtime"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestForCovers(t *testing.T) {
	for _, tc := range []struct {
		threads, n, grain int
		maxParts          int
	}{
		{1, 10, 1, 1}, {2, 1, 1, 1}, {2, 10, 1, 2}, {2, 10, 6, 1}, {3, 10, 0, 3},
		{4, 7, 2, 3}, {4, 1000, 10, 4}, {8, 5, 1, 5}, {2, 0, 1, 0},
	} {
		p := NewPool(tc.threads)
		var mu sync.Mutex
		var got [][2]int
		p.For(tc.n, tc.grain, func(lo, hi int) {
			mu.Lock()
			got = append(got, [2]int{lo, hi})
			mu.Unlock()
		})
		sort.Slice(got, func(i, j int) bool { return got[i][0] < got[j][0] })
		next := 0
		for _, r := range got {
			if r[0] != next || r[1] <= r[0] {
				t.Errorf("For(threads=%d, n=%d, grain=%d) ranges = %v; want disjoint, non-empty, covering [0, %d)", tc.threads, tc.n, tc.grain, got, tc.n)
				break
			}
			next = r[1]
		}
		if next != tc.n || len(got) > tc.maxParts {
			t.Errorf("For(threads=%d, n=%d, grain=%d) ranges = %v; want cover of [0, %d) in at most %d ranges", tc.threads, tc.n, tc.grain, got, tc.n, tc.maxParts)
		}
		if free := len(p.extra); free != tc.threads-1 {
			t.Errorf("For(threads=%d, n=%d, grain=%d) left %d free slots; want %d", tc.threads, tc.n, tc.grain, free, tc.threads-1)
		}
	}
}

// TestForNestedInline holds every slot of the budget with an outer For whose
// parts wait for each other, and checks that a nested For then runs inline as
// one range on its caller.
func TestForNestedInline(t *testing.T) {
	const threads = 3
	p := NewPool(threads)
	// Two barriers: every part starts before any nested For, and none returns
	// (giving its slot back) before every nested For has run.
	var arrived, finished sync.WaitGroup
	arrived.Add(threads)
	finished.Add(threads)
	all := make(chan struct{})
	go func() { arrived.Wait(); close(all) }()
	var calls atomic.Int32
	bad := make(chan string, threads)
	timeout := time.After(time.Minute) // failure detection only: For must use every free slot
	p.For(threads, 1, func(lo, hi int) {
		arrived.Done()
		select {
		case <-all:
		case <-timeout:
			bad <- "the outer For did not run its parts at the same time"
			finished.Done()
			return
		}
		p.For(100, 1, func(lo, hi int) {
			calls.Add(1)
			if lo != 0 || hi != 100 {
				bad <- fmt.Sprintf("nested For ran range [%d, %d); want [0, 100) inline", lo, hi)
			}
		})
		finished.Done()
		finished.Wait()
	})
	close(bad)
	for msg := range bad {
		t.Error(msg)
	}
	if got := calls.Load(); got != threads {
		t.Errorf("nested For calls = %d; want %d (one per outer part)", got, threads)
	}
}

// TestForHandsOff checks that a worker whose share is done serves the next
// calls' shares while it spins: 50 calls on two threads start one worker.
func TestForHandsOff(t *testing.T) {
	p := NewPool(2)
	p.spin = time.Hour // never withdraws; stopped below
	defer stopSpinners(p)
	for call := range 50 {
		var lo, hi [2]atomic.Int64
		var parts atomic.Int32
		p.For(10, 1, func(l, h int) {
			i := parts.Add(1) - 1
			lo[i].Store(int64(l))
			hi[i].Store(int64(h))
		})
		if parts.Load() != 2 || lo[0].Load()+lo[1].Load() != 5 || hi[0].Load()+hi[1].Load() != 15 {
			t.Fatalf("call %d: %d ranges [%d, %d) and [%d, %d); want [0, 5) and [5, 10)", call, parts.Load(), lo[0].Load(), hi[0].Load(), lo[1].Load(), hi[1].Load())
		}
		if free := len(p.extra); free != 1 {
			t.Fatalf("call %d left %d free slots; want 1", call, free)
		}
	}
	if got := p.started.Load(); got != 1 {
		t.Errorf("50 calls started %d workers; want 1 (the others handed to it)", got)
	}
}

// TestForYieldNoSpin checks that a pool in yield mode never leaves a worker
// spinning: each of 10 calls on two threads starts its own.
func TestForYieldNoSpin(t *testing.T) {
	p := NewPool(2)
	p.spin = time.Hour
	p.SetYield(true)
	p.gosched = func() {}
	defer stopSpinners(p)
	for range 10 {
		p.For(2, 1, func(lo, hi int) {})
		if n := p.spinning.Load(); n != 0 {
			t.Fatalf("%d workers spinning in yield mode; want 0", n)
		}
	}
	if got := p.started.Load(); got != 10 {
		t.Errorf("10 calls in yield mode started %d workers; want 10", got)
	}
}

// TestAwaitWithdraws checks how a spinning worker stops waiting: with no
// share sent it withdraws (a share of no call, and no spinner counted); one
// that a caller claimed first takes the share the caller sends, even when
// its time is up.
func TestAwaitWithdraws(t *testing.T) {
	p := NewPool(2)
	p.spin = 0 // the time is up at once
	p.spinning.Add(1)
	if sh := p.await(); sh.c != nil || p.spinning.Load() != 0 {
		t.Errorf("unclaimed await: share of call %p, %d spinning; want none and 0", sh.c, p.spinning.Load())
	}
	p.spinning.Add(1)
	if !p.claimSpinner() {
		t.Fatal("claimSpinner found no spinner; want the one counted")
	}
	want := share{&call{}, 3, 7}
	p.handoff <- want
	if sh := p.await(); sh != want || p.spinning.Load() != 0 {
		t.Errorf("claimed await: share %+v, %d spinning; want %+v and 0", sh, p.spinning.Load(), want)
	}
}

// stopSpinners makes every worker spinning for a share exit.
func stopSpinners(p *Pool) {
	for p.claimSpinner() {
		p.handoff <- share{}
	}
}

// TestForBudget runs many callers at once and checks that the goroutines inside
// fn never outnumber the callers plus the budget's extra slots: with workers
// that park at once, spin briefly (many of them withdrawing as callers claim
// them), or spin for long.
func TestForBudget(t *testing.T) {
	for _, spin := range []time.Duration{0, time.Microsecond, defaultSpin} {
		t.Run(fmt.Sprint("spin=", spin), func(t *testing.T) { testForBudget(t, spin) })
	}
}

func testForBudget(t *testing.T, spin time.Duration) {
	const threads, callers, rounds = 3, 4, 50
	p := NewPool(threads)
	p.spin = spin
	var active, peak atomic.Int32
	body := func(lo, hi int) {
		now := active.Add(1)
		for {
			old := peak.Load()
			if now <= old || peak.CompareAndSwap(old, now) {
				break
			}
		}
		for i := 0; i < 20; i++ {
			runtime.Gosched() // let other callers enter while this part is active
		}
		active.Add(-1)
	}
	var wg sync.WaitGroup
	for c := 0; c < callers; c++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for r := 0; r < rounds; r++ {
				p.For(64, 1, func(lo, hi int) {
					body(lo, hi)
					p.For(hi-lo, 1, body) // nested: inline unless a slot is free
				})
			}
		}()
	}
	wg.Wait()
	if got, limit := peak.Load(), int32(callers+threads-1); got > limit {
		t.Errorf("peak goroutines in For bodies = %d; want <= %d (callers + threads - 1)", got, limit)
	}
	if got := peak.Load(); got < 2 {
		t.Errorf("peak goroutines in For bodies = %d; want >= 2 (the budget was never used)", got)
	}
	if free := len(p.extra); free != threads-1 {
		t.Errorf("free slots after all calls = %d; want %d", free, threads-1)
	}
}

// BenchmarkFor measures the fixed cost of a parallel loop whose body does
// almost nothing: starting and joining the budget's goroutines.
func BenchmarkFor(b *testing.B) {
	for _, threads := range []int{1, 2} {
		b.Run(fmt.Sprintf("threads=%d", threads), func(b *testing.B) {
			p := NewPool(threads)
			var sink atomic.Int64
			body := func(lo, hi int) { sink.Add(int64(hi - lo)) }
			for b.Loop() {
				p.For(1024, 1, body)
			}
		})
	}
}

// TestSetYield: with SetYield(true) every call of For and Sgemm yields the
// processor once before it works, and never with SetYield(false); and the
// pool yields with runtime.Gosched. (Whether the scheduler then runs a given
// runnable goroutine is its own choice: it takes from the global queue first
// on every 61st tick, so a test of that would fail now and then.)
func TestSetYield(t *testing.T) {
	p := NewPool(2)
	if reflect.ValueOf(p.gosched).Pointer() != reflect.ValueOf(runtime.Gosched).Pointer() {
		t.Fatal("NewPool's pool does not yield with runtime.Gosched")
	}
	yields := 0
	p.gosched = func() { yields++ }
	a, c := make([]float32, 4), make([]float32, 4)
	calls := map[string]func(){
		"For":   func() { p.For(8, 1, func(lo, hi int) {}) },
		"Sgemm": func() { p.Sgemm(false, false, 2, 2, 2, 1, a, 2, a, 2, 0, c, 2) },
	}
	for _, on := range []bool{true, false} {
		p.SetYield(on)
		for name, call := range calls {
			yields = 0
			call()
			if want := map[bool]int{true: 1, false: 0}[on]; yields != want {
				t.Errorf("SetYield(%v): %s yielded %d times; want %d", on, name, yields, want)
			}
		}
	}
}
