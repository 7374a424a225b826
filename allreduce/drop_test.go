package allreduce

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestDropNamesPart drops one message on an in-memory ring and checks that
// its receiver's abort names exactly that part, and that no rank succeeds.
func TestDropNamesPart(t *testing.T) {
	const n, L = 3, 2000
	opts := Options{ChunkBytes: 512, Deadline: 300 * time.Millisecond}
	for _, tc := range []struct {
		from int
		id   PartID
	}{
		{1, PartID{ReduceScatter, 0, 1, 2}},
		{0, PartID{ReduceScatter, 1, 2, 0}},
		{2, PartID{AllGather, 0, 0, 1}},
		{1, PartID{AllGather, 1, 1, 5}}, // rank r sends segment (r+1-h) mod n on all-gather hop h
	} {
		t.Run(tc.id.String(), func(t *testing.T) {
			net := NewMemNetwork()
			net.SetFilter(func(job string, epoch uint64, from, to int, msg []byte) bool {
				var e envelope
				if err := decodeEnvelope(msg, &e); err != nil {
					t.Errorf("filter: %v", err)
					return true
				}
				id := PartID{Phase(e.phase), int(e.hop), int(e.segment), int(e.part)}
				return !(from == tc.from && id == tc.id)
			})
			h := Header{Run: "drop", Epoch: 4, Step: 9}
			errs := make([]error, n)
			var wg sync.WaitGroup
			eps := make([]*MemEndpoint, n)
			for r := range n {
				eps[r] = net.Endpoint("drop", h.Epoch, r)
				defer eps[r].Close()
			}
			for r := range n {
				wg.Go(func() {
					data := make([]float32, L)
					errs[r] = NewReducer().AllReduce(context.Background(), eps[r], h, r, n, data, opts, nil)
				})
			}
			wg.Wait()
			to := (tc.from + 1) % n
			var ae *AbortError
			if !errors.As(errs[to], &ae) || ae.Missing != tc.id || ae.From != tc.from || !errors.Is(errs[to], ErrDeadline) {
				t.Fatalf("AllReduce(rank %d) = %v; want an abort waiting for %v from %d", to, errs[to], tc.id, tc.from)
			}
			want := fmt.Sprintf("waiting on link %d->%d for (epoch 4, step 9, from %d, %v)", tc.from, to, tc.from, tc.id)
			if !strings.Contains(errs[to].Error(), want) {
				t.Errorf("AllReduce(rank %d) = %q; want it to contain %q", to, errs[to], want)
			}
			// Other ranks may finish (a lost last-hop copy harms only its
			// receiver) or abort, but never with a wrong sum: the data are
			// zeros, and the suite checks sums.
			for r, err := range errs {
				if err != nil && !errors.As(err, &ae) {
					t.Errorf("AllReduce(rank %d) = %v; want nil or an *AbortError", r, err)
				}
			}
		})
	}
}
