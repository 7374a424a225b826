package netem_test

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/klring/klring/allreduce"
	"github.com/klring/klring/netem"
)

func ExampleParseProfile() {
	for _, s := range []string{"1GbE", "100MB/s:1ms"} {
		p, err := netem.ParseProfile(s)
		fmt.Printf("%s: %.0f MB/s, %v, err %v\n", p.Name, p.Bandwidth/1e6, p.Latency, err)
	}
	// Output:
	// 1GbE: 118 MB/s, 200µs, err <nil>
	// 100MB/s:1ms: 100 MB/s, 1ms, err <nil>
}

// Two in-process workers sum their vectors over modelled 1 ms, 100 MB/s
// links.
func ExampleWrap() {
	hub := allreduce.NewMemHub(allreduce.Limits{})
	link, _ := netem.ParseProfile("100MB/s:1ms")
	members := []string{"w0", "w1"}
	mbs := make([]allreduce.Mailbox, len(members))
	for r, w := range members {
		mb, err := hub.Mailbox("demo", w)
		if err != nil {
			fmt.Println(err)
			return
		}
		if mbs[r], err = netem.Wrap(mb, w, link, 1); err != nil {
			fmt.Println(err)
			return
		}
		defer mbs[r].Close()
	}
	data := [][]float32{{1, 2, 3}, {10, 20, 30}}
	h := allreduce.Header{Run: "run-1", Epoch: 1, Step: 1}
	opts := allreduce.Options{ChunkBytes: 1 << 20, Deadline: 10 * time.Second}
	errs := make([]error, len(members))
	var wg sync.WaitGroup
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
	fmt.Println(data[0], errs[0])
	fmt.Println(data[1], errs[1])
	// Output:
	// [11 22 33] <nil>
	// [11 22 33] <nil>
}
