package allreduce_test

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/klring/klring/allreduce"
)

// Three ranks sum their vectors over the in-memory transport. Every rank
// listens before any rank sends.
func Example() {
	const n = 3
	net := allreduce.NewMemNetwork()
	eps := make([]*allreduce.MemEndpoint, n)
	for r := range n {
		eps[r] = net.Endpoint("demo", 1, r)
	}
	data := [n][]float32{{1, 2, 3, 4}, {10, 20, 30, 40}, {100, 200, 300, 400}}
	h := allreduce.Header{Run: "run-1", Epoch: 1, Step: 0}
	opts := allreduce.Options{ChunkBytes: 1 << 20, Deadline: 10 * time.Second}
	var wg sync.WaitGroup
	errs := make([]error, n)
	for r := range n {
		wg.Go(func() {
			errs[r] = allreduce.AllReduce(context.Background(), eps[r], h, r, n, data[r], opts, nil)
		})
	}
	wg.Wait()
	for r := range n {
		fmt.Println(r, data[r], errs[r])
		eps[r].Close()
	}
	// Output:
	// 0 [111 222 333 444] <nil>
	// 1 [111 222 333 444] <nil>
	// 2 [111 222 333 444] <nil>
}
