package scale

import (
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
	return p
}
