package scale

import (
	"math"
	"time"
)

// Network is what the cost model needs of a link.
type Network struct {
	Bandwidth float64       // bytes per second per link
	Latency   time.Duration // one way, per hop
}

// RingAllReduce is the time a bandwidth-optimal ring all-reduce of S bytes
// over n ranks takes on links of the given network: 2(n-1) hops of latency
// plus 2(n-1)/n x S bytes through each link. n <= 1 costs nothing.
func RingAllReduce(n int, S float64, net Network) time.Duration {
	if n <= 1 {
		return 0
	}
	hops := 2 * float64(n-1)
	t := hops * net.Latency.Seconds()
	if net.Bandwidth > 0 {
		t += hops / float64(n) * S / net.Bandwidth
	}
	return time.Duration(t * float64(time.Second))
}

// RingAllReducePipelined is the time of the same ring all-reduce when every
// segment travels as parts parts that are forwarded as soon as they arrive
// (what allreduce does), each message carrying overhead bytes of framing
// besides its S/(n parts) bytes of data. Every link carries M = 2(n-1) parts
// messages of wire time w = (S/(n parts) + overhead)/B, one after another:
// a link starts with its own segment's parts and forwards each part it
// receives, so message k can leave at the earliest when message k-1 has
// left and message k-parts (the one it forwards) has arrived. That gives
//
//	T = max(M w + L, 2(n-1)(w + L) + (parts-1) w)
//
// the first when the latency hides behind a segment's parts (L <= (parts-1)
// w: the links never idle), the second when every hop waits for it. With
// parts = 1 and no overhead it is RingAllReduce; it is never more than
// RingAllReduce of the bytes with their overhead, and never less than the
// bandwidth term. Exact when the parts are all equal (n parts divides the
// vector); VirtualAllReduce computes the uneven cases.
func RingAllReducePipelined(n int, S float64, parts int, overhead float64, net Network) time.Duration {
	if n <= 1 {
		return 0
	}
	parts = max(parts, 1)
	w := 0.0
	if net.Bandwidth > 0 {
		w = (S/float64(n*parts) + overhead) / net.Bandwidth
	}
	L := net.Latency.Seconds()
	hops := 2 * float64(n-1)
	t := max(hops*float64(parts)*w+L, hops*(w+L)+float64(parts-1)*w)
	return time.Duration(t * float64(time.Second))
}

// LowerBound is the bandwidth term alone, 2(n-1)/n x S / B: no all-reduce
// over such links can move the data faster.
func LowerBound(n int, S float64, net Network) time.Duration {
	if n <= 1 || net.Bandwidth <= 0 {
		return 0
	}
	return time.Duration(2 * float64(n-1) / float64(n) * S / net.Bandwidth * float64(time.Second))
}

// BusBW is the bus bandwidth of an all-reduce of S bytes over n ranks that
// took t, as nccl-tests defines it: algbw x 2(n-1)/n.
func BusBW(n int, S float64, t time.Duration) float64 {
	if n <= 1 || t <= 0 {
		return 0
	}
	return S / t.Seconds() * 2 * float64(n-1) / float64(n)
}

// Projection is the projected step of N machines.
type Projection struct {
	Workers    int
	Tokens     float64       // tokens of one global step
	Compute    time.Duration // per worker
	AllReduce  time.Duration
	Step       time.Duration
	TokensPerS float64
	Speedup    float64 // over one worker doing the same global step
	Efficiency float64 // Speedup / Workers
	CommShare  float64 // AllReduce / Step
	// StarAllReduce and ClusterAllReduce are the all-reduce through one
	// NATS server and through a cluster of them, one per node, when the
	// report knows a server's throughput (Report.ServerThroughput).
	StarAllReduce    time.Duration
	ClusterAllReduce time.Duration
	// Variants of the same step (Variants): the ring overlapped with
	// backward, the parts in bfloat16, and both. Each is the step's time
	// and its efficiency.
	Overlap, BF16, OverlapBF16 Variant
}

// Variant is one projected variant of a step.
type Variant struct {
	Step       time.Duration
	Efficiency float64
}

// BackwardShare is the part of a training step's compute that is the
// backward pass: twice the forward's FLOPs, so two thirds.
const BackwardShare = 2.0 / 3

// OverlappedStep is the time of a step whose all-reduce overlaps backward
// (PyTorch DDP's bucketed scheme): the flat gradient is cut into buckets
// equal buckets that backward finishes one after another, evenly over its
// BackwardShare of compute; bucket k's ring, a ring all-reduce of S/buckets
// bytes (latency and all), starts when bucket k is ready and bucket k-1's
// ring is done, and the step ends when backward and the last bucket's ring
// are both done. buckets <= 1 is no overlap: compute + ar(S).
func OverlappedStep(n int, compute time.Duration, S float64, buckets int, net Network) time.Duration {
	if buckets <= 1 || n <= 1 {
		return compute + RingAllReduce(n, S, net)
	}
	bwd := compute.Seconds() * BackwardShare
	fwd := compute.Seconds() - bwd
	each := RingAllReduce(n, S/float64(buckets), net).Seconds()
	done := 0.0
	for k := 1; k <= buckets; k++ {
		ready := fwd + bwd*float64(k)/float64(buckets)
		done = max(done, ready) + each
	}
	return time.Duration(math.Round(max(done, compute.Seconds()) * float64(time.Second)))
}

// OverlapBuckets is the number of buckets Variants' overlap assumes.
const OverlapBuckets = 8

// Variants fills p's Overlap, BF16 and OverlapBF16 from its compute, for a
// gradient of S bytes in float32: bf16 halves the bytes on the wire.
func (p *Projection) Variants(S float64, net Network) {
	one := p.Compute.Seconds() * float64(p.Workers) // one worker, the whole step
	v := func(step time.Duration) Variant {
		out := Variant{Step: step}
		if step > 0 && p.Workers > 0 {
			out.Efficiency = one / step.Seconds() / float64(p.Workers)
		}
		return out
	}
	p.Overlap = v(OverlappedStep(p.Workers, p.Compute, S, OverlapBuckets, net))
	p.BF16 = v(p.Compute + RingAllReduce(p.Workers, S/2, net))
	p.OverlapBF16 = v(OverlappedStep(p.Workers, p.Compute, S/2, OverlapBuckets, net))
}

// Project is the cost model of one synchronous data-parallel step: every
// worker computes its share of the global batch (computePerToken per token,
// in parallel), then the ring all-reduces S bytes.
func Project(n int, tokens float64, computePerToken time.Duration, S float64, net Network) Projection {
	compute := time.Duration(float64(computePerToken) * tokens / float64(n))
	ar := RingAllReduce(n, S, net)
	step := compute + ar
	one := time.Duration(float64(computePerToken) * tokens)
	p := Projection{Workers: n, Tokens: tokens, Compute: compute, AllReduce: ar, Step: step}
	if step > 0 {
		p.TokensPerS = tokens / step.Seconds()
		p.Speedup = one.Seconds() / step.Seconds()
		p.Efficiency = p.Speedup / float64(n)
		p.CommShare = ar.Seconds() / step.Seconds()
	}
	p.Variants(S, net)
	return p
}

// StarAllReduce is the time of a ring all-reduce of S bytes over n ranks
// whose every message goes through one server that moves at most aggregate
// bytes per second in all: the ring is then physically a star, and the
// 2(n-1) S bytes all ranks send share that ceiling, so busbw falls as
// aggregate/n. Plus 2(n-1) hops of latency. Use the smaller of the server's
// own throughput and its node's link.
func StarAllReduce(n int, S, aggregate float64, latency time.Duration) time.Duration {
	if n <= 1 {
		return 0
	}
	hops := 2 * float64(n-1)
	t := hops * latency.Seconds()
	if aggregate > 0 {
		t += hops * S / aggregate
	}
	return time.Duration(t * float64(time.Second))
}

// ClusterAllReduce is the time of the same all-reduce through a cluster of
// servers, one per node, each rank on its node's server and the ring placed
// on them (protocol.Place): every hop crosses one route, so each link
// carries 2(n-1)/n S bytes, as in RingAllReduce, at the smaller of the
// link's bandwidth and half a server's throughput (each server moves its
// rank's traffic twice: from its client into the route, and from the other
// route to its client).
func ClusterAllReduce(n int, S, link, server float64, latency time.Duration) time.Duration {
	b := link
	if server > 0 && (b <= 0 || server/2 < b) {
		b = server / 2
	}
	return RingAllReduce(n, S, Network{Bandwidth: b, Latency: latency})
}

// Topologies of the ring's network, as FitTopology names them.
const (
	SingleServer = "single server" // time grows as 2(n-1) S: one shared ceiling
	Cluster      = "cluster"       // time grows as 2(n-1)/n S: a link per hop
)

// TopologyFit says which model the measured all-reduces of a series follow:
// through one server (StarAllReduce: busbw = aggregate/n) or over links of
// their own (RingAllReduce and ClusterAllReduce: busbw constant). Each model
// is fitted with one rate, in log space (latency left out): Aggregate is the
// geometric mean over the points of 2(n-1) S / t, Link that of 2(n-1)/n S /
// t; StarErr and ClusterErr are the RMS of the points' log deviation from
// each fit (0.1 is about 10%). Follows names the model with the smaller
// error, when the points have two worker counts or more to tell them apart.
type TopologyFit struct {
	Series     string  `json:"series"`
	Points     int     `json:"points"`
	Aggregate  float64 `json:"aggregate_bytes_per_s"`
	Link       float64 `json:"link_bytes_per_s"`
	StarErr    float64 `json:"single_server_log_rms"`
	ClusterErr float64 `json:"cluster_log_rms"`
	Follows    string  `json:"follows,omitempty"`
	// Bound is, when a server's throughput is known (CheckBound), the
	// median of the measured all-reduce over what that throughput allows
	// through one server (StarAllReduce): near 1 or below the points are
	// bandwidth-bound; far above, something else (latency, CPU) sets
	// their time, and neither bandwidth model explains them.
	Bound float64 `json:"measured_over_single_server_bound,omitempty"`
}

// CheckBound sets f.Bound from the points and a server's throughput.
func (f *TopologyFit) CheckBound(points []Point, server float64) {
	var r []float64
	for _, p := range points {
		if p.Workers >= 2 && p.AllReduceS > 0 && p.Bytes > 0 && server > 0 {
			r = append(r, p.AllReduceS/StarAllReduce(p.Workers, p.Bytes, server, 0).Seconds())
		}
	}
	f.Bound = median(r)
}

// FitTopology fits both models to the points with two workers or more and
// a measured all-reduce.
func FitTopology(series string, points []Point) TopologyFit {
	f := TopologyFit{Series: series}
	var star, clus []float64
	counts := map[int]bool{}
	for _, p := range points {
		if p.Workers < 2 || p.AllReduceS <= 0 || p.Bytes <= 0 {
			continue
		}
		n := float64(p.Workers)
		star = append(star, math.Log(2*(n-1)*p.Bytes/p.AllReduceS))
		clus = append(clus, math.Log(2*(n-1)/n*p.Bytes/p.AllReduceS))
		counts[p.Workers] = true
	}
	f.Points = len(star)
	if f.Points == 0 {
		return f
	}
	fit := func(v []float64) (rate, rms float64) {
		m := 0.0
		for _, x := range v {
			m += x
		}
		m /= float64(len(v))
		for _, x := range v {
			rms += (x - m) * (x - m)
		}
		return math.Exp(m), math.Sqrt(rms / float64(len(v)))
	}
	f.Aggregate, f.StarErr = fit(star)
	f.Link, f.ClusterErr = fit(clus)
	if len(counts) >= 2 {
		f.Follows = SingleServer
		if f.ClusterErr < f.StarErr {
			f.Follows = Cluster
		}
	}
	return f
}
