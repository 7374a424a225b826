package allreduce

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"
)

// flipper is a rank's Transport on a MemHub that flips one bit of one float
// byte of the message it sends as its k-th, as a faulty link would. The
// envelope stays well formed: only the checksum can tell.
type flipper struct {
	Transport
	k, sent int
	bit     int // bit of the float bytes to flip
	flipped PartID
	done    bool
}

func (f *flipper) Send(ctx context.Context, to int, msg []byte) error {
	f.sent++
	if f.sent != f.k {
		return f.Transport.Send(ctx, to, msg)
	}
	var e envelope
	if err := decodeEnvelope(msg, &e); err != nil || len(e.data) == 0 {
		panic(fmt.Sprintf("flipper: %v", err))
	}
	c := append([]byte(nil), msg...)
	at := len(c) - len(e.data) + (f.bit/8)%len(e.data)
	c[at] ^= 1 << (f.bit % 8)
	f.flipped, f.done = PartID{Phase(e.phase), int(e.hop), int(e.segment), int(e.part)}, true
	return f.Transport.Send(ctx, to, c)
}

// TestCorruptedPartAborts flips one bit of one float byte of one ring part
// in flight (the k-th message of rank k mod n, for every k a rank sends; a
// random bit): the receiver
// drops it, counts it as a bad checksum, and aborts naming that part; no
// rank ever returns a wrong sum.
func TestCorruptedPartAborts(t *testing.T) {
	const n, L = 3, 600
	opts := Options{ChunkBytes: 512, Deadline: 250 * time.Millisecond}
	plan := NewPlan(L, n, opts.PartFloats())
	sends := plan.Messages(0) // what rank 0 sends: as many as it receives
	want := make([]float32, L)
	for r := range n {
		for i := range L {
			want[i] += float32(r*1000 + i)
		}
	}
	rng := rand.New(rand.NewPCG(1, 2))
	hub := NewMemHub(Limits{})
	members := []string{"a", "b", "c"}
	mbs := make([]*MemMailbox, n)
	for r, m := range members {
		var err error
		if mbs[r], err = hub.Mailbox("flip", m); err != nil {
			t.Fatal(err)
		}
		defer mbs[r].Close()
	}
	reducers := []*Reducer{NewReducer(), NewReducer(), NewReducer()}
	step := uint64(0)
	for k := 1; k <= sends; k++ {
		{
			from := k % n
			step++
			h := Header{Run: "flip", Epoch: 1, Step: step}
			f := &flipper{k: k, bit: rng.IntN(8 * 4 * plan.PartFloats)}
			before := reducers[(from+1)%n].Stats().BadChecksum
			data := make([][]float32, n)
			errs := make([]error, n)
			var wg sync.WaitGroup
			for r := range n {
				data[r] = make([]float32, L)
				for i := range L {
					data[r][i] = float32(r*1000 + i)
				}
				wg.Go(func() {
					tr, err := mbs[r].Begin(h, members, r)
					if err != nil {
						errs[r] = err
						return
					}
					if r == from {
						f.Transport = tr
						tr = f
					}
					errs[r] = reducers[r].AllReduce(context.Background(), tr, h, r, n, data[r], opts, nil)
				})
			}
			wg.Wait()
			if !f.done {
				t.Fatalf("rank %d sent fewer than %d parts", from, k)
			}
			to := (from + 1) % n
			var ae *AbortError
			if !errors.As(errs[to], &ae) || ae.Missing != f.flipped || ae.Corrupt != 1 || !errors.Is(errs[to], ErrDeadline) {
				t.Fatalf("rank %d's message %d (%v) corrupted: AllReduce(rank %d) = %v; want an abort waiting for it, 1 bad checksum", from, k, f.flipped, to, errs[to])
			}
			if got := reducers[to].Stats().BadChecksum - before; got != 1 {
				t.Errorf("Stats().BadChecksum grew by %d; want 1", got)
			}
			for r, err := range errs {
				if err != nil {
					continue
				}
				for i := range want {
					if data[r][i] != want[i] {
						t.Fatalf("rank %d's message %d corrupted: rank %d succeeded with [%d] = %v; want %v", from, k, r, i, data[r][i], want[i])
					}
				}
			}
		}
	}
}
