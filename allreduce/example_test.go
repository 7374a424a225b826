package allreduce_test

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/klring/klring/allreduce"
)

// Three workers, each with its persistent mailbox on an in-memory hub, sum
// their vectors in one attempt (run, epoch, step). Ring order is given by
// members; each worker is members[rank].
func Example() {
	hub := allreduce.NewMemHub(allreduce.Limits{})
	members := []string{"w-a", "w-b", "w-c"}
	mbs := make([]*allreduce.MemMailbox, len(members))
	for r, w := range members {
		mb, err := hub.Mailbox("demo", w)
		if err != nil {
			fmt.Println(err)
			return
		}
		defer mb.Close()
		mbs[r] = mb
	}
	data := [][]float32{{1, 2, 3, 4}, {10, 20, 30, 40}, {100, 200, 300, 400}}
	h := allreduce.Header{Run: "run-1", Epoch: 1, Step: 0}
	opts := allreduce.Options{ChunkBytes: 1 << 20, Deadline: 10 * time.Second}
	var wg sync.WaitGroup
	errs := make([]error, len(members))
	for r := range members {
		wg.Go(func() {
			t, err := mbs[r].Begin(h, members, r)
			if err != nil {
				errs[r] = err
				return
			}
			errs[r] = allreduce.AllReduce(context.Background(), t, h, r, len(members), data[r], opts, nil)
		})
	}
	wg.Wait()
	for r := range members {
		fmt.Println(members[r], data[r], errs[r])
	}
	// Output:
	// w-a [111 222 333 444] <nil>
	// w-b [111 222 333 444] <nil>
	// w-c [111 222 333 444] <nil>
}
