package scale

import (
	"math"
	"testing"
	"time"
)

func TestRingAllReduceByHand(t *testing.T) {
	net := Network{Bandwidth: 100e6, Latency: time.Millisecond}
	tests := []struct {
		n    int
		S    float64
		want time.Duration
	}{
		{1, 1e6, 0},
		// 2 ranks, 1 MB: 2 hops x 1 ms + 2*1/2 * 1e6 / 1e8 s = 2 ms + 10 ms.
		{2, 1e6, 12 * time.Millisecond},
		// 4 ranks, 4 MB: 6 hops x 1 ms + 6/4 * 4e6/1e8 s = 6 ms + 60 ms.
		{4, 4e6, 66 * time.Millisecond},
		// 8 ranks, 8 MB: 14 ms + 14/8 * 8e6/1e8 s = 14 ms + 140 ms.
		{8, 8e6, 154 * time.Millisecond},
	}
	for _, tt := range tests {
		got := RingAllReduce(tt.n, tt.S, net)
		if d := got - tt.want; d < -time.Microsecond || d > time.Microsecond {
			t.Errorf("RingAllReduce(%d, %g) = %v; want %v", tt.n, tt.S, got, tt.want)
		}
	}
	if got := LowerBound(4, 4e6, net); got != 60*time.Millisecond {
		t.Errorf("LowerBound(4, 4MB) = %v; want 60ms", got)
	}
	// busbw of an all-reduce that hits the lower bound is the link bandwidth.
	if got := BusBW(4, 4e6, 60*time.Millisecond); math.Abs(got-100e6) > 1 {
		t.Errorf("BusBW at the lower bound = %g; want 1e8", got)
	}
}

func TestProjectByHand(t *testing.T) {
	net := Network{Bandwidth: 1e9, Latency: 0}
	// 1000 tokens at 1 ms/token = 1 s on one worker. 4 workers: 250 ms of
	// compute + 6/4 * 1e8/1e9 s = 150 ms of all-reduce.
	p := Project(4, 1000, time.Millisecond, 1e8, net)
	if p.Compute != 250*time.Millisecond || p.AllReduce != 150*time.Millisecond || p.Step != 400*time.Millisecond {
		t.Fatalf("Project = %+v", p)
	}
	if math.Abs(p.Speedup-2.5) > 1e-9 || math.Abs(p.Efficiency-0.625) > 1e-9 || math.Abs(p.TokensPerS-2500) > 1e-6 {
		t.Errorf("speedup %g efficiency %g tokens/s %g; want 2.5, 0.625, 2500", p.Speedup, p.Efficiency, p.TokensPerS)
	}
	if one := Project(1, 1000, time.Millisecond, 1e8, net); one.Speedup != 1 || one.AllReduce != 0 {
		t.Errorf("Project(1) = %+v; want speedup 1 and no all-reduce", one)
	}
}
