package natsnet_test

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/klring/klring/allreduce"
	"github.com/klring/klring/natsnet"
)

// Two ranks, each with its own connection, sum their vectors through an
// embedded server.
func Example() {
	srv, err := natsnet.StartServer(natsnet.ServerOptions{User: "klring", Password: "secret"})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer srv.Shutdown()

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	const n = 2
	opts := allreduce.DefaultOptions()
	rings := make([]*natsnet.Ring, n)
	for r := range n {
		c, err := natsnet.Connect(ctx, natsnet.Options{URL: srv.URL(), User: "klring", Password: "secret", Logger: quiet})
		if err != nil {
			fmt.Println(err)
			return
		}
		defer c.Close()
		// Every rank listens before any rank sends.
		if rings[r], err = c.Ring(ctx, "demo", 1, r); err != nil {
			fmt.Println(err)
			return
		}
		defer rings[r].Close()
	}
	data := [n][]float32{{1, 2, 3}, {10, 20, 30}}
	h := allreduce.Header{Run: "run-1", Epoch: 1, Step: 1}
	var wg sync.WaitGroup
	errs := make([]error, n)
	for r := range n {
		wg.Go(func() { errs[r] = allreduce.AllReduce(ctx, rings[r], h, r, n, data[r], opts, nil) })
	}
	wg.Wait()
	fmt.Println(data[0], errs[0])
	fmt.Println(data[1], errs[1])
	// Output:
	// [11 22 33] <nil>
	// [11 22 33] <nil>
}
