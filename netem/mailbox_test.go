package netem_test

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"testing"
	"time"

	"github.com/klring/klring/allreduce"
	"github.com/klring/klring/allreduce/allreducetest"
	"github.com/klring/klring/netem"
)

// shapedNet runs the conformance suite over in-memory mailboxes whose links
// are shaped: a fast link with jitter, so that parts arrive late and in
// bursts but in order. Injected messages reach the wrapped mailbox directly,
// as a foreign client's would.
type shapedNet struct {
	hub  *allreduce.MemHub
	p    netem.LinkProfile
	seed uint64
}

var shapedLimits = allreduce.Limits{Ahead: 8, Messages: 1024, Bytes: 4 << 20}

func (n *shapedNet) Mailbox(t testing.TB, job, worker string) allreduce.Mailbox {
	mb, err := n.hub.Mailbox(job, worker)
	if err != nil {
		t.Fatalf("Mailbox(%s, %s) = %v", job, worker, err)
	}
	w, err := netem.Wrap(mb, worker, n.p, n.seed)
	if err != nil {
		t.Fatalf("Wrap(%+v) = %v", n.p, err)
	}
	return w
}

func (n *shapedNet) Inject(t testing.TB, job, worker string, h allreduce.Header, msg []byte) {
	n.hub.Inject(job, worker, h, msg)
}

func (n *shapedNet) Limits() allreduce.Limits { return shapedLimits }

func TestConformanceShaped(t *testing.T) {
	before := runtime.NumGoroutine()
	p := netem.LinkProfile{Name: "test", Bandwidth: 2e9, Latency: 50 * time.Microsecond, Jitter: 200 * time.Microsecond}
	allreducetest.Run(t, &shapedNet{hub: allreduce.NewMemHub(shapedLimits), p: p, seed: 1})
	// Every mailbox is closed: every link goroutine has been joined. The
	// suite's own goroutines may take a moment to return.
	deadline := time.Now().Add(10 * time.Second)
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
		<-tick.C
	}
	if n := runtime.NumGoroutine(); n > before {
		buf := make([]byte, 1<<20)
		t.Errorf("runtime.NumGoroutine() = %d after the suite; want <= %d:\n%s", n, before, buf[:runtime.Stack(buf, true)])
	}
}

func open(t *testing.T, hub *allreduce.MemHub, worker string, p netem.LinkProfile, seed uint64) *netem.Mailbox {
	t.Helper()
	mb, err := hub.Mailbox("j", worker)
	if err != nil {
		t.Fatal(err)
	}
	w, err := netem.Wrap(mb, worker, p, seed)
	if err != nil {
		t.Fatal(err)
	}
	return w
}

// TestCloseJoinsLinks starts links to three workers, with messages still on
// them, and checks that Close ends every link goroutine before it returns.
func TestCloseJoinsLinks(t *testing.T) {
	before := runtime.NumGoroutine()
	hub := allreduce.NewMemHub(allreduce.Limits{})
	p := netem.LinkProfile{Latency: time.Hour} // nothing arrives before Close
	a := open(t, hub, "a", p, 1)
	members := []string{"a", "b", "c", "d"}
	tr, err := a.Begin(allreduce.Header{Run: "r"}, members, 0)
	if err != nil {
		t.Fatal(err)
	}
	for to := 1; to < 4; to++ {
		if err := tr.Send(context.Background(), to, []byte("in flight")); err != nil {
			t.Fatal(err)
		}
	}
	if n := runtime.NumGoroutine(); n < before+3 {
		t.Errorf("runtime.NumGoroutine() = %d with 3 links; want >= %d", n, before+3)
	}
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	if n := runtime.NumGoroutine(); n > before {
		t.Errorf("runtime.NumGoroutine() = %d after Close; want <= %d", n, before)
	}
	if err := tr.Send(context.Background(), 1, []byte("late")); !errors.Is(err, allreduce.ErrClosed) {
		t.Errorf("Send after Close = %v; want %v", err, allreduce.ErrClosed)
	}
	if err := a.Close(); err != nil {
		t.Errorf("Close twice = %v", err)
	}
}

// TestLinkTiming sends messages over a link with latency and bandwidth and
// checks their order and that none arrives before the model allows (a lower
// bound only: a loaded machine may deliver later).
func TestLinkTiming(t *testing.T) {
	hub := allreduce.NewMemHub(allreduce.Limits{})
	p := netem.LinkProfile{Bandwidth: 10e6, Latency: 20 * time.Millisecond, Jitter: 5 * time.Millisecond}
	a := open(t, hub, "a", p, 1)
	defer a.Close()
	b := open(t, hub, "b", p, 1)
	defer b.Close()
	members := []string{"a", "b"}
	h := allreduce.Header{Run: "r", Epoch: 1}
	ta, err := a.Begin(h, members, 0)
	if err != nil {
		t.Fatal(err)
	}
	tb, err := b.Begin(h, members, 1)
	if err != nil {
		t.Fatal(err)
	}
	const k, size = 20, 10_000 - netem.FrameOverhead // 1 ms each on the wire
	msg := make([]byte, size)
	t0 := time.Now()
	for i := range k {
		msg[0] = byte(i)
		if err := ta.Send(context.Background(), 1, msg); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for i := range k {
		m, err := tb.Recv(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if m[0] != byte(i) || len(m) != size {
			t.Fatalf("message %d: got number %d of %d bytes; want %d of %d", i, m[0], len(m), i, size)
		}
		if el, min := time.Since(t0), p.Latency+time.Duration(i+1)*time.Millisecond; el < min {
			t.Errorf("message %d arrived after %v; the model allows %v at the earliest", i, el, min)
		}
	}
}

// TestLossRepeats sends the same messages twice over a lossy link with the
// same seed: the same ones are lost.
func TestLossRepeats(t *testing.T) {
	p := netem.LinkProfile{Loss: 0.3, Jitter: time.Microsecond}
	received := func(seed uint64) (string, uint64) {
		hub := allreduce.NewMemHub(allreduce.Limits{})
		a := open(t, hub, "a", p, seed)
		defer a.Close()
		b, err := hub.Mailbox("j", "b")
		if err != nil {
			t.Fatal(err)
		}
		defer b.Close()
		members := []string{"a", "b"}
		ta, err := a.Begin(allreduce.Header{Run: "r"}, members, 0)
		if err != nil {
			t.Fatal(err)
		}
		tb, err := b.Begin(allreduce.Header{Run: "r"}, members, 1)
		if err != nil {
			t.Fatal(err)
		}
		const k = 300
		for i := range k {
			if err := ta.Send(context.Background(), 1, []byte(fmt.Sprint(i))); err != nil {
				t.Fatal(err)
			}
		}
		got := ""
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		for range k - int(a.Lost()) {
			m, err := tb.Recv(ctx)
			if err != nil {
				t.Fatal(err)
			}
			got += string(m) + " "
		}
		return got, a.Lost()
	}
	s1, l1 := received(42)
	s2, l2 := received(42)
	s3, _ := received(43)
	if s1 != s2 || l1 != l2 {
		t.Errorf("seed 42 twice: lost %d then %d, received %q then %q; want the same", l1, l2, s1, s2)
	}
	if l1 < 50 || l1 > 130 || s1 == s3 {
		t.Errorf("lost %d of 300 at loss 0.3, seeds 42 and 43 equal: %v; want about 90 and false", l1, s1 == s3)
	}
}

// TestUnshapedPassesThrough checks that a profile that shapes nothing
// returns the wrapped mailbox's Transports and starts no goroutine.
func TestUnshapedPassesThrough(t *testing.T) {
	hub := allreduce.NewMemHub(allreduce.Limits{})
	before := runtime.NumGoroutine()
	a := open(t, hub, "a", netem.LinkProfile{Name: "none"}, 1)
	defer a.Close()
	tr, err := a.Begin(allreduce.Header{Run: "r"}, []string{"a", "b"}, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := tr.Send(context.Background(), 1, []byte("x")); err != nil {
		t.Fatal(err)
	}
	if n := runtime.NumGoroutine(); n != before {
		t.Errorf("runtime.NumGoroutine() = %d; want %d", n, before)
	}
	if _, err := netem.Wrap(nil, "a", netem.LinkProfile{Loss: 2}, 1); !errors.Is(err, netem.ErrBadProfile) {
		t.Errorf("Wrap(loss 2) = %v; want %v", err, netem.ErrBadProfile)
	}
}
