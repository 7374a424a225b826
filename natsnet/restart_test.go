package natsnet_test

import (
	"context"
	"errors"
	"net/url"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/klring/klring/allreduce"
	"github.com/klring/klring/natsnet"
)

// signalling calls f once, at the k-th Send.
type signalling struct {
	allreduce.Transport
	sends atomic.Int64
	k     int64
	f     func()
}

func (s *signalling) Send(ctx context.Context, to int, msg []byte) error {
	if s.sends.Add(1) == s.k {
		s.f()
	}
	return s.Transport.Send(ctx, to, msg)
}

// TestServerRestart restarts the server in the middle of an all-reduce.
// Every rank must end with either an abort error or the exact sum, never a
// wrong sum; after the clients have reconnected, a retry in a new epoch must
// succeed on the same mailboxes: nats.go subscribes them again.
func TestServerRestart(t *testing.T) {
	checkGoroutines(t)
	s1, err := natsnet.StartServer(natsnet.ServerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	u, err := url.Parse(s1.URL())
	if err != nil {
		t.Fatal(err)
	}
	port, _ := strconv.Atoi(u.Port())
	const n, L = 3, 300_000
	conns := make([]*natsnet.Conn, n)
	mbs := make([]*natsnet.Mailbox, n)
	members := []string{"w0", "w1", "w2"}
	for r := range n {
		conns[r] = connect(t, natsnet.Options{URL: s1.URL(), ChunkBytes: 64<<10 + natsnet.HeaderRoom, PartsInFlight: 1 << 14, ReconnectWait: 20 * time.Millisecond})
		defer conns[r].Close()
		mb, err := natsnet.NewMailbox(context.Background(), conns[r], "restart", members[r])
		if err != nil {
			t.Fatal(err)
		}
		defer mb.Close()
		mbs[r] = mb
	}
	restart := make(chan struct{})
	var s2 *natsnet.Server
	var s2err error
	restarted := make(chan struct{})
	go func() {
		defer close(restarted)
		<-restart
		s1.Shutdown()
		s2, s2err = natsnet.StartServer(natsnet.ServerOptions{Port: port})
	}()

	attempt := func(epoch uint64, hook bool) []error {
		h := allreduce.Header{Run: "run-restart", Epoch: epoch, Step: 1}
		eps := make([]allreduce.Transport, n)
		for r := range n {
			tr, err := mbs[r].Begin(h, members, r)
			if err != nil {
				t.Fatalf("epoch %d: Begin(rank %d) = %v", epoch, r, err)
			}
			eps[r] = tr
			if hook && r == 0 {
				var once sync.Once
				eps[r] = &signalling{Transport: tr, k: 10, f: func() { once.Do(func() { close(restart) }) }}
			}
		}
		data := make([][]float32, n)
		for r := range n {
			data[r] = make([]float32, L)
			for i := range L {
				data[r][i] = float32(r + 1)
			}
		}
		opts := allreduce.Options{ChunkBytes: 64 << 10, Deadline: 3 * time.Second}
		errs := make([]error, n)
		var wg sync.WaitGroup
		for r := range n {
			wg.Go(func() { errs[r] = allreduce.AllReduce(context.Background(), eps[r], h, r, n, data[r], opts, nil) })
		}
		wg.Wait()
		for r := range n {
			if errs[r] != nil {
				var ae *allreduce.AbortError
				if !errors.As(errs[r], &ae) {
					t.Errorf("epoch %d: AllReduce(rank %d) = %v; want nil or an *AbortError", epoch, r, errs[r])
				}
				continue
			}
			for i, v := range data[r] {
				if v != n*(n+1)/2 {
					t.Fatalf("epoch %d: AllReduce(rank %d) = nil with [%d] = %v; want %d", epoch, r, i, v, n*(n+1)/2)
				}
			}
		}
		return errs
	}
	errs := attempt(1, true)
	<-restarted
	if s2err != nil {
		t.Fatalf("restarting the server on port %d: %v", port, s2err)
	}
	defer s2.Shutdown()
	t.Logf("attempt during the restart: %v", errs)
	// Wait until every client has reconnected and the server has its
	// subscriptions again (nats.go sends them before anything else).
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for r, c := range conns {
		for {
			fctx, fcancel := context.WithTimeout(ctx, time.Second)
			err := c.NC.FlushWithContext(fctx)
			fcancel()
			if err == nil {
				break
			}
			if ctx.Err() != nil {
				t.Fatalf("rank %d has not reconnected after 20s: %v", r, err)
			}
		}
	}
	for r, err := range attempt(2, false) {
		if err != nil {
			t.Errorf("retry after the restart: AllReduce(rank %d) = %v; want nil", r, err)
		}
	}
}
