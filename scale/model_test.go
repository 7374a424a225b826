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

func TestOverlapAndBF16ByHand(t *testing.T) {
	net := Network{Bandwidth: 1e9}
	// 2 workers, 300 ms of compute (100 forward, 200 backward), 8e7 bytes:
	// the whole ring takes 2/2 x 8e7/1e9 = 80 ms, a bucket of 8 takes 10 ms.
	// Bucket k is ready at 100 + 25k ms and its ring takes 10 ms, so each
	// ring ends before the next bucket is ready; the last is ready at 300
	// ms and done at 310: only one bucket's ring is not hidden.
	if got := OverlappedStep(2, 300*time.Millisecond, 8e7, 8, net); got != 310*time.Millisecond {
		t.Errorf("OverlappedStep(compute 300ms, ring 80ms) = %v; want 310ms", got)
	}
	// A ring slower than backward: buckets of 100 ms queue behind each
	// other from the first one (ready at 125 ms): 125 + 8 x 100 = 925 ms.
	if got := OverlappedStep(2, 300*time.Millisecond, 8e8, 8, net); got != 925*time.Millisecond {
		t.Errorf("OverlappedStep(compute 300ms, ring 800ms) = %v; want 925ms", got)
	}
	// One bucket is no overlap.
	if got := OverlappedStep(2, 300*time.Millisecond, 8e7, 1, net); got != 380*time.Millisecond {
		t.Errorf("OverlappedStep(1 bucket) = %v; want 380ms", got)
	}
	// Latency is paid per bucket: 8 buckets of 2 hops of 5 ms and no
	// bandwidth term: the last bucket is ready at 300 ms and its ring
	// ends 10 ms later.
	if got := OverlappedStep(2, 300*time.Millisecond, 0, 8, Network{Latency: 5 * time.Millisecond}); got != 310*time.Millisecond {
		t.Errorf("OverlappedStep(latency only) = %v; want 310ms", got)
	}
	// When latency sets the ring's time, overlap loses: 8 buckets pay 8
	// rings of latency. 2 hops of 20 ms: 40 ms unbucketed, 300 + 40 = 340
	// ms; bucketed, 125 + 8 x 40 = 445 ms.
	lat := Network{Latency: 20 * time.Millisecond}
	if got := OverlappedStep(2, 300*time.Millisecond, 0, 8, lat); got != 445*time.Millisecond {
		t.Errorf("OverlappedStep(latency-bound) = %v; want 445ms", got)
	}
	p := Project(2, 600, time.Millisecond, 8e8, net) // compute 300 ms, ring 800 ms
	if p.Step != 1100*time.Millisecond || p.BF16.Step != 700*time.Millisecond || p.Overlap.Step != 925*time.Millisecond {
		t.Fatalf("steps: plain %v, bf16 %v, overlap %v; want 1.1s, 700ms, 925ms", p.Step, p.BF16.Step, p.Overlap.Step)
	}
	// bf16 and overlap: buckets of 50 ms from 125 ms: 525 ms.
	if p.OverlapBF16.Step != 525*time.Millisecond {
		t.Errorf("overlap with bf16 %v; want 525ms", p.OverlapBF16.Step)
	}
	if math.Abs(p.BF16.Efficiency-600.0/700/2) > 1e-12 || math.Abs(p.Efficiency-600.0/1100/2) > 1e-12 {
		t.Errorf("efficiency %g, bf16 %g; want %g and %g", p.Efficiency, p.BF16.Efficiency, 600.0/1100/2, 600.0/700/2)
	}
}

func TestStarAndClusterByHand(t *testing.T) {
	// 4 ranks, 4 MB through one server of 1 GB/s: 6 x 4e6 / 1e9 = 24 ms.
	if got := StarAllReduce(4, 4e6, 1e9, 0); got != 24*time.Millisecond {
		t.Errorf("StarAllReduce(4, 4 MB, 1 GB/s) = %v; want 24ms", got)
	}
	// Through a cluster on 1 GB/s links with servers of 1 GB/s: half a
	// server, 0.5 GB/s, per hop: 6/4 x 4e6 / 5e8 = 12 ms; with servers
	// of 4 GB/s the link is the limit: 6 ms.
	if got := ClusterAllReduce(4, 4e6, 1e9, 1e9, 0); got != 12*time.Millisecond {
		t.Errorf("ClusterAllReduce(4, 4 MB, link 1 GB/s, server 1 GB/s) = %v; want 12ms", got)
	}
	if got := ClusterAllReduce(4, 4e6, 1e9, 4e9, 0); got != 6*time.Millisecond {
		t.Errorf("ClusterAllReduce(4, 4 MB, link 1 GB/s, server 4 GB/s) = %v; want 6ms", got)
	}
	// 8 ranks: the star grows as n-1, the cluster stays flat.
	if s, c := StarAllReduce(8, 4e6, 1e9, 0), ClusterAllReduce(8, 4e6, 1e9, 4e9, 0); s != 56*time.Millisecond || c != 7*time.Millisecond {
		t.Errorf("n=8: star %v, cluster %v; want 56ms and 7ms", s, c)
	}
}

func TestFitTopology(t *testing.T) {
	const S = 16e6
	pts := func(f func(n float64) float64) []Point {
		var out []Point
		for _, n := range []int{1, 2, 4, 8} {
			out = append(out, Point{Workers: n, Bytes: S, AllReduceS: f(float64(n))})
		}
		return out
	}
	// Through one server of 0.9 GB/s (with 5% noise): a single server.
	noise := map[float64]float64{2: 1.05, 4: 0.97, 8: 1.02}
	star := FitTopology("star", pts(func(n float64) float64 { return 2 * (n - 1) * S / 0.9e9 * noise[n] }))
	if star.Follows != SingleServer || math.Abs(star.Aggregate-0.9e9)/0.9e9 > 0.05 || star.Points != 3 || star.StarErr > 0.05 {
		t.Errorf("FitTopology(star points) = %+v; want a single server of 0.9 GB/s", star)
	}
	// Over links of 1.2 GB/s each: a cluster.
	clus := FitTopology("cluster", pts(func(n float64) float64 { return 2 * (n - 1) / n * S / 1.2e9 * noise[n] }))
	if clus.Follows != Cluster || math.Abs(clus.Link-1.2e9)/1.2e9 > 0.05 || clus.ClusterErr > 0.05 {
		t.Errorf("FitTopology(cluster points) = %+v; want a cluster of 1.2 GB/s links", clus)
	}
	// Against the throughput they were made with, the star points are at
	// the bound; points ten times slower are not bandwidth-bound.
	star.CheckBound(pts(func(n float64) float64 { return 2 * (n - 1) * S / 0.9e9 }), 0.9e9)
	slow := FitTopology("slow", nil)
	slow.CheckBound(pts(func(n float64) float64 { return 10 * 2 * (n - 1) * S / 0.9e9 }), 0.9e9)
	if math.Abs(star.Bound-1) > 1e-6 || math.Abs(slow.Bound-10) > 1e-5 {
		t.Errorf("CheckBound: %v for points at the bound, %v for points 10x slower; want 1 and 10", star.Bound, slow.Bound)
	}
	// One worker count cannot tell them apart.
	one := FitTopology("one", []Point{{Workers: 4, Bytes: S, AllReduceS: 0.01}, {Workers: 1, Bytes: S}})
	if one.Follows != "" || one.Points != 1 {
		t.Errorf("FitTopology(one count) = %+v; want no verdict", one)
	}
}
