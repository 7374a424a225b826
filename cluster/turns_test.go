package cluster

import (
	"context"
	"encoding/binary"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/cespare/xxhash/v2"
	"github.com/klring/klring/allreduce"
)

// TestShareCores: in-process workers split the kernel threads, and take
// turns only when there are more of them than shares.
func TestShareCores(t *testing.T) {
	for _, tc := range []struct{ threads, workers, per, turns int }{
		{2, 4, 1, 2}, {2, 2, 1, 0}, {2, 1, 2, 0}, {8, 4, 2, 0}, {8, 3, 2, 0},
		{1, 4, 1, 1}, {3, 2, 1, 0}, {4, 8, 1, 4}, {2, 3, 1, 2}, {2, 0, 2, 0},
	} {
		per, turns := shareCores(tc.threads, tc.workers)
		if per != tc.per || turns != tc.turns {
			t.Errorf("shareCores(%d, %d) = %d, %d; want %d, %d", tc.threads, tc.workers, per, turns, tc.per, tc.turns)
		}
	}
}

// TestTurns: a turn is had at once while one is free, waits while none is,
// and gives up when its context ends; an Env without turns never waits.
func TestTurns(t *testing.T) {
	ctx := context.Background()
	if release, err := (&Env{}).turn(ctx); err != nil {
		t.Fatalf("turn without turns: %v", err)
	} else {
		release()
	}
	e := &Env{turns: make(chan struct{}, 1)}
	r1, err := e.turn(ctx)
	if err != nil {
		t.Fatalf("first turn: %v", err)
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := e.turn(cctx); err == nil {
		t.Fatal("a second turn was had while the only one was held")
	}
	got := make(chan error, 1)
	go func() {
		r2, err := e.turn(ctx)
		if err == nil {
			r2()
		}
		got <- err
	}()
	r1() // the waiting turn can only be had now
	if err := <-got; err != nil {
		t.Fatalf("turn after release: %v", err)
	}
}

// TestSegmentSums: the coordinator's running seg_sum of each segment equals
// the owner's (the digests of the messages it sent) whatever order the
// messages arrive in; a flipped bit or a message stored at another offset
// changes it; a non-finite float is caught, the exact tail is not looked at.
func TestSegmentSums(t *testing.T) {
	const n, length = 4, 1000
	plan := allreduce.NewPlan(length, n, 40)
	g := make([]float32, length)
	for i := range g {
		g[i] = float32(i%97) - 48.5
	}
	g[length-2], g[length-1] = float32(math.Inf(1)), float32(math.NaN()) // the tail
	type msg struct {
		off  int
		data []byte
	}
	var msgs []msg
	want := make([]uint64, n)
	h := xxhash.New()
	const per = 7 // messages smaller than a stripe, as chunk_bytes may make them
	for k := range n {
		for j := range plan.Parts(k) {
			off, m := plan.Part(k, j)
			for lo := 0; lo < m; lo += per {
				hi := min(lo+per, m)
				b := allreduce.AppendFloats(nil, g[off+lo:off+hi])
				want[k] += partDigest(h, off+lo, b)
				msgs = append(msgs, msg{off + lo, b})
			}
		}
	}
	store := func(ms []msg) *segmentSums {
		var s segmentSums
		s.reset(plan)
		x := make([]float32, length)
		for _, m := range ms {
			y := x[m.off : m.off+len(m.data)/4]
			allreduce.ReadFloats(y, m.data)
			s.add(m.off, y, m.data, length-exactTail)
		}
		return &s
	}
	rng := rand.New(rand.NewPCG(1, 2))
	rng.Shuffle(len(msgs), func(i, j int) { msgs[i], msgs[j] = msgs[j], msgs[i] })
	s := store(msgs)
	for k := range n {
		if s.sums[k] != want[k] {
			t.Errorf("segment %d: %016x as stored, %016x as sent", k, s.sums[k], want[k])
		}
	}
	if !s.finite {
		t.Error("a finite gradient (its non-finite tail aside) was found not finite")
	}

	bad := append([]msg(nil), msgs...)
	bad[3].data = append([]byte(nil), bad[3].data...)
	bad[3].data[1] ^= 0x10
	k := (bad[3].off / plan.Stripe) % n
	if store(bad).sums[k] == want[k] {
		t.Error("a flipped bit left the segment's sum unchanged")
	}

	nan := append([]msg(nil), msgs...)
	i := 0
	for nan[i].off >= length-exactTail-per {
		i++
	}
	nan[i].data = append([]byte(nil), nan[i].data...)
	binary.LittleEndian.PutUint32(nan[i].data, math.Float32bits(float32(math.NaN())))
	if store(nan).finite {
		t.Error("a NaN in the gradient went unnoticed")
	}

	// The same bytes said to be at another offset of the same segment.
	a, _ := plan.Part(0, 0)
	c, _ := plan.Part(0, 1)
	d1, d2 := partDigest(h, a, msgs[0].data), partDigest(h, c, msgs[0].data)
	if d1 == d2 {
		t.Error("a message's digest does not depend on its offset")
	}
}
