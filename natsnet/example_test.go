package natsnet_test

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/klring/klring/allreduce"
	"github.com/klring/klring/natsnet"
)

// Two workers, each with its own connection and its persistent mailbox, sum
// their vectors through an embedded server. Worker w1 starts the attempt
// after w0 has already sent to it: its mailbox holds the parts until then.
func Example() {
	srv, err := natsnet.StartServer(natsnet.ServerOptions{User: "klring", Password: "secret"})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer srv.Shutdown()

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	members := []string{"w0", "w1"}
	opts := allreduce.DefaultOptions()
	mbs := make([]*natsnet.Mailbox, len(members))
	for r, w := range members {
		c, err := natsnet.Connect(ctx, natsnet.Options{URL: srv.URL(), User: "klring", Password: "secret",
			ChunkBytes: opts.ChunkBytes + natsnet.HeaderRoom, Logger: quiet})
		if err != nil {
			fmt.Println(err)
			return
		}
		defer c.Close()
		// One mailbox per worker, for its whole life.
		if mbs[r], err = natsnet.NewMailbox(ctx, c, "demo", w); err != nil {
			fmt.Println(err)
			return
		}
		defer mbs[r].Close()
	}
	data := [][]float32{{1, 2, 3}, {10, 20, 30}}
	h := allreduce.Header{Run: "run-1", Epoch: 1, Step: 1}
	errs := make([]error, len(members))
	var wg sync.WaitGroup
	sent := make(chan struct{})
	for r := range members {
		wg.Go(func() {
			if r == 1 {
				<-sent
			}
			t, err := mbs[r].Begin(h, members, r)
			if err != nil {
				errs[r] = err
				return
			}
			if r == 0 {
				t = notify{t, sent}
			}
			errs[r] = allreduce.AllReduce(ctx, t, h, r, len(members), data[r], opts, nil)
		})
	}
	wg.Wait()
	fmt.Println(data[0], errs[0])
	fmt.Println(data[1], errs[1])
	// Output:
	// [11 22 33] <nil>
	// [11 22 33] <nil>
}

// notify closes sent after its first Send.
type notify struct {
	allreduce.Transport
	sent chan struct{}
}

func (n notify) Send(ctx context.Context, to int, msg []byte) error {
	err := n.Transport.Send(ctx, to, msg)
	select {
	case <-n.sent:
	default:
		close(n.sent)
	}
	return err
}
