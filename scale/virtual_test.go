package scale

import (
	"fmt"
	"testing"
	"time"

	"github.com/klring/klring/allreduce"
	"github.com/klring/klring/netem"
)

// wireOverhead is what VirtualAllReduce counts per message beside its
// floats: the largest envelope and netem's framing.
const wireOverhead = allreduce.EnvelopeOverhead + netem.FrameOverhead

// TestVirtualRingMatchesCostModel drives the ring schedule of every rank
// through the link model in virtual time (no sleeping, no wall clock) and
// checks the completion time against the cost model: to the nanosecond per
// message against the pipelined model when the parts are equal (whole rows
// of the plan's stripes), and between the lower bound and the framing of
// 2(n-1) L + 2(n-1)/n S/B, the model the scaling report projects with.
func TestVirtualRingMatchesCostModel(t *testing.T) {
	opts := allreduce.Options{ChunkBytes: 64 << 10}
	pf := opts.PartFloats()
	var profiles []netem.LinkProfile
	for _, name := range []string{"10GbE", "1GbE", "100MBps", "100MB/s:5ms", "1GB/s:0s"} {
		p, err := netem.ParseProfile(name)
		if err != nil {
			t.Fatal(err)
		}
		profiles = append(profiles, p)
	}
	for _, p := range profiles {
		net := Network{Bandwidth: p.Bandwidth, Latency: p.Latency}
		for n := 2; n <= 8; n++ {
			for _, parts := range []int{1, 2, 5, 16} {
				// Whole rows of the plan's stripes: every part full. A
				// short vector has stripes below PartFloats (about 16
				// a segment), so more parts than chunks.
				floats := n * parts * pf
				plan := allreduce.NewPlan(floats, n, pf)
				floats -= floats % (n * plan.Stripe)
				if plan = allreduce.NewPlan(floats, n, pf); floats%(n*plan.Stripe) != 0 {
					t.Fatalf("n=%d parts=%d: %d floats are not whole rows of %d stripes of %d", n, parts, floats, n, plan.Stripe)
				}
				P := plan.Parts(0)
				S := 4 * float64(floats)
				got, err := VirtualAllReduce(n, floats, opts, p, 1)
				if err != nil {
					t.Fatal(err)
				}
				name := fmt.Sprintf("%s n=%d parts=%d (%.1f MB)", p.Name, n, P, S/1e6)
				want := RingAllReducePipelined(n, S, P, wireOverhead, net)
				// The link model rounds each message's wire time down
				// to a nanosecond, the formula its total.
				msgs := time.Duration(2 * (n - 1) * P)
				if d := want - got; d < -1 || d > msgs {
					t.Errorf("%s: VirtualAllReduce = %v; RingAllReducePipelined = %v (off by %v, want [-1ns, %v])", name, got, want, d, msgs)
				}
				lower := LowerBound(n, S, net)
				framed := RingAllReduce(n, S+float64(n*P)*wireOverhead, net)
				if got < lower || got > framed {
					t.Errorf("%s: VirtualAllReduce = %v; want within [lower bound %v, model with framing %v]", name, got, lower, framed)
				}
			}
		}
	}
}

// TestVirtualRingUneven checks vectors whose parts are not all equal (a
// short last part, empty segments, n not dividing the vector): the schedule
// completes, within the lower bound and the framed cost model of its parts.
func TestVirtualRingUneven(t *testing.T) {
	opts := allreduce.Options{ChunkBytes: 4096}
	p, _ := netem.ParseProfile("1GbE")
	net := Network{Bandwidth: p.Bandwidth, Latency: p.Latency}
	for _, tc := range []struct{ n, floats int }{{2, 1}, {3, 2}, {5, 3}, {4, 1001}, {7, 12345}, {8, 100003}} {
		got, err := VirtualAllReduce(tc.n, tc.floats, opts, p, 1)
		if err != nil {
			t.Fatalf("VirtualAllReduce(%d, %d) = %v", tc.n, tc.floats, err)
		}
		plan := allreduce.NewPlan(tc.floats, tc.n, opts.PartFloats())
		parts := plan.Parts(0) // the most of any segment
		S := 4 * float64(tc.floats)
		upper := RingAllReducePipelined(tc.n, 4*float64(tc.n*parts*opts.PartFloats()), parts, wireOverhead, net)
		if lower := LowerBound(tc.n, S, net); got < lower || got > upper {
			t.Errorf("VirtualAllReduce(n=%d, %d floats) = %v; want within [%v, %v]", tc.n, tc.floats, got, lower, upper)
		}
	}
	if d, err := VirtualAllReduce(1, 1000, opts, p, 1); d != 0 || err != nil {
		t.Errorf("VirtualAllReduce(1 rank) = %v, %v; want 0, nil", d, err)
	}
	if _, err := VirtualAllReduce(3, 1000, opts, netem.LinkProfile{Name: "lossy", Loss: 0.1}, 1); err == nil {
		t.Error("VirtualAllReduce over a lossy link = nil error; want a refusal")
	}
}

// TestVirtualRingJitter: jitter only delays, by at most one jitter per hop
// of the critical path, and the same seed gives the same time.
func TestVirtualRingJitter(t *testing.T) {
	opts := allreduce.Options{ChunkBytes: 64 << 10}
	wan, _ := netem.ParseProfile("wan")
	flat := wan
	flat.Jitter = 0
	const n, parts = 4, 3
	floats := n * parts * opts.PartFloats()
	a, err := VirtualAllReduce(n, floats, opts, wan, 7)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := VirtualAllReduce(n, floats, opts, wan, 7)
	base, _ := VirtualAllReduce(n, floats, opts, flat, 7)
	if a != b {
		t.Errorf("VirtualAllReduce with seed 7 = %v, then %v; want the same", a, b)
	}
	if max := base + time.Duration(2*(n-1)*parts)*wan.Jitter; a < base || a > max {
		t.Errorf("VirtualAllReduce with jitter = %v; want within [%v, %v]", a, base, max)
	}
}

func TestRingAllReducePipelinedByHand(t *testing.T) {
	net := Network{Bandwidth: 100e6, Latency: time.Millisecond}
	// One part per segment: the plain model.
	if got, want := RingAllReducePipelined(4, 4e6, 1, 0, net), RingAllReduce(4, 4e6, net); got != want {
		t.Errorf("RingAllReducePipelined(parts 1) = %v; want RingAllReduce = %v", got, want)
	}
	// 4 ranks, 4 MB, 10 parts: w = 1e5/1e8 = 1 ms, L = 1 ms <= 9 w: the
	// links never idle: 6 x 10 x 1 ms + 1 ms.
	if got := RingAllReducePipelined(4, 4e6, 10, 0, net); got != 61*time.Millisecond {
		t.Errorf("RingAllReducePipelined(4, 4 MB, 10 parts) = %v; want 61ms", got)
	}
	// 2 parts and 40 ms of latency: w = 5 ms, L > w, every hop waits for
	// the latency: 6 x (5 + 40) ms + 5 ms.
	slow := Network{Bandwidth: 100e6, Latency: 40 * time.Millisecond}
	if got := RingAllReducePipelined(4, 4e6, 2, 0, slow); got != 275*time.Millisecond {
		t.Errorf("RingAllReducePipelined(4, 4 MB, 2 parts, 40 ms) = %v; want 275ms", got)
	}
}
