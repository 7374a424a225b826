package natsnet_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/klring/klring/allreduce"
	"github.com/klring/klring/allreduce/allreducetest"
	"github.com/klring/klring/natsnet"
	"github.com/klring/klring/netem"
)

// natsNet runs the conformance suite over one embedded server, or over a
// cluster of them, one connection per mailbox as in a real deployment.
type natsNet struct {
	// servers are the cluster's servers (one for a single server); the
	// i-th mailbox opened connects to servers[i mod len] first.
	servers []*natsnet.Server
	// foreign are clients outside the ring, one on each server: a message
	// is injected through the target mailbox's server, so that Sync on the
	// mailbox sees it.
	foreign []*natsnet.Conn
	opts    natsnet.Options // of every mailbox's connection (URL aside)
	shape   netem.LinkProfile

	mu     sync.Mutex
	boxes  map[[2]string]*natsnet.Mailbox
	server map[[2]string]int
	opened int
}

func newNATSNet(t *testing.T, servers []*natsnet.Server, opts natsnet.Options) *natsNet {
	n := &natsNet{servers: servers, opts: opts, boxes: map[[2]string]*natsnet.Mailbox{}, server: map[[2]string]int{}}
	for _, s := range servers {
		f := connect(t, natsnet.Options{URL: s.URL(), Name: "foreign"})
		t.Cleanup(f.Close)
		n.foreign = append(n.foreign, f)
	}
	return n
}

// ownConn is a Mailbox that closes its connection with it.
type ownConn struct {
	*natsnet.Mailbox
	conn *natsnet.Conn
	once sync.Once
}

func (o *ownConn) Close() error {
	err := o.Mailbox.Close()
	o.once.Do(o.conn.Close)
	return err
}

func (n *natsNet) Mailbox(t testing.TB, job, worker string) allreduce.Mailbox {
	n.mu.Lock()
	i := n.opened % len(n.servers)
	n.opened++
	n.mu.Unlock()
	o := n.opts
	o.URL = natsnet.URLs(n.servers, i)
	c := connect(t, o)
	mb, err := natsnet.NewMailbox(context.Background(), c, job, worker)
	if err != nil {
		c.Close()
		t.Fatalf("NewMailbox(%s, %s) = %v", job, worker, err)
	}
	if len(n.servers) > 1 {
		if got, want := c.ServerName(), n.servers[i].Name(); got != want {
			t.Fatalf("mailbox %d of %s is on server %q; want %q, the first of its URLs", i, worker, got, want)
		}
		// The subscription reaches the other servers over the routes:
		// until they know of it, what their clients send it is lost.
		ring, _ := mb.Subjects().Ring(worker)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		err := natsnet.WaitInterest(ctx, ring, n.servers...)
		cancel()
		if err != nil {
			t.Fatal(err)
		}
	}
	n.mu.Lock()
	n.boxes[[2]string{job, worker}] = mb
	n.server[[2]string{job, worker}] = i
	n.mu.Unlock()
	if !n.shape.Shaped() {
		return &ownConn{Mailbox: mb, conn: c}
	}
	w, err := netem.Wrap(&ownConn{Mailbox: mb, conn: c}, worker, n.shape, 1)
	if err != nil {
		t.Fatal(err)
	}
	return w
}

func (n *natsNet) Inject(t testing.TB, job, worker string, h allreduce.Header, msg []byte) {
	subj, err := natsnet.NewSubjects(job)
	if err != nil {
		t.Fatal(err)
	}
	ring, err := subj.Ring(worker)
	if err != nil {
		t.Fatal(err)
	}
	n.mu.Lock()
	mb, foreign := n.boxes[[2]string{job, worker}], n.foreign[n.server[[2]string{job, worker}]]
	n.mu.Unlock()
	m := &nats.Msg{Subject: ring, Header: nats.Header{natsnet.AttemptHeader: []string{natsnet.FormatAttempt(h)}}, Data: msg}
	if err := foreign.NC.PublishMsg(m); err != nil {
		t.Errorf("foreign Publish = %v", err)
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := foreign.NC.FlushWithContext(ctx); err != nil {
		t.Errorf("foreign Flush = %v", err)
	}
	if err := mb.Sync(ctx); err != nil {
		t.Errorf("Sync(mailbox of %s) = %v", worker, err)
	}
}

func (n *natsNet) Limits() allreduce.Limits {
	return allreduce.Limits{Ahead: 8, Messages: n.opts.PartsInFlight, Bytes: n.opts.PartsInFlight * n.opts.ChunkBytes}
}

func TestConformanceNATS(t *testing.T) {
	checkGoroutines(t)
	s := startServer(t, natsnet.ServerOptions{})
	net := newNATSNet(t, []*natsnet.Server{s}, natsnet.Options{ChunkBytes: 64 << 10, PartsInFlight: 1024})
	if got, want := net.Limits(), (allreduce.Limits{Ahead: 8, Messages: 1024, Bytes: 64 << 20}); got != want {
		t.Fatalf("Limits() = %+v; want %+v", got, want)
	}
	allreducetest.Run(t, net)
}

// TestConformanceNATSCluster runs the suite over a cluster of three
// servers joined by routes: consecutive mailboxes are on different
// servers, so every ring link crosses a route.
func TestConformanceNATSCluster(t *testing.T) {
	checkGoroutines(t)
	servers := startCluster(t, 3, natsnet.ServerOptions{})
	allreducetest.Run(t, newNATSNet(t, servers, natsnet.Options{ChunkBytes: 64 << 10, PartsInFlight: 1024}))
}

// TestConformanceShapedNATS runs the suite over NATS mailboxes behind
// modelled links (netem wraps either mailbox).
func TestConformanceShapedNATS(t *testing.T) {
	checkGoroutines(t)
	s := startServer(t, natsnet.ServerOptions{})
	net := newNATSNet(t, []*natsnet.Server{s}, natsnet.Options{ChunkBytes: 64 << 10, PartsInFlight: 1024})
	net.shape = netem.LinkProfile{Name: "test", Bandwidth: 1e9, Latency: 100 * time.Microsecond, Jitter: 100 * time.Microsecond}
	allreducetest.Run(t, net)
}

func TestMailboxLimitsFromOptions(t *testing.T) {
	checkGoroutines(t)
	s := startServer(t, natsnet.ServerOptions{})
	c := connect(t, natsnet.Options{URL: s.URL(), ChunkBytes: 4096, PartsInFlight: 33})
	defer c.Close()
	mb, err := natsnet.NewMailbox(context.Background(), c, "job", "w")
	if err != nil {
		t.Fatal(err)
	}
	defer mb.Close()
	if got, want := mb.Limits(), (allreduce.Limits{Ahead: 8, Messages: 33, Bytes: 33 * 4096}); got != want {
		t.Errorf("Limits() = %+v; want %+v", got, want)
	}
}

func TestMailboxRejectsBadNames(t *testing.T) {
	checkGoroutines(t)
	s := startServer(t, natsnet.ServerOptions{})
	c := connect(t, natsnet.Options{URL: s.URL()})
	defer c.Close()
	for _, tc := range []struct{ job, worker string }{{"", "w"}, {"a.b", "w"}, {"a*", "w"}, {"j", "a>"}, {"j", "a b"}, {"j", ""}, {"j", strings.Repeat("w", 65)}} {
		if mb, err := natsnet.NewMailbox(context.Background(), c, tc.job, tc.worker); !errors.Is(err, natsnet.ErrBadName) {
			t.Errorf("NewMailbox(%q, %q) = %v; want %v", tc.job, tc.worker, err, natsnet.ErrBadName)
			if mb != nil {
				mb.Close()
			}
		}
	}
	mb, err := natsnet.NewMailbox(context.Background(), c, "j", "w")
	if err != nil {
		t.Fatal(err)
	}
	defer mb.Close()
	for _, other := range []string{"x.y", "*", ">", "a b", ""} {
		_, err := mb.Begin(allreduce.Header{Run: "r"}, []string{"w", other}, 0)
		if !errors.Is(err, allreduce.ErrBadRing) || !errors.Is(err, natsnet.ErrBadName) {
			t.Errorf("Begin(members [w %q]) = %v; want %v and %v", other, err, allreduce.ErrBadRing, natsnet.ErrBadName)
		}
	}
}

// TestMailboxUnlabelled sends ring messages whose attempt header is missing
// or unreadable: each is dropped and counted, none is delivered.
func TestMailboxUnlabelled(t *testing.T) {
	checkGoroutines(t)
	s := startServer(t, natsnet.ServerOptions{})
	c := connect(t, natsnet.Options{URL: s.URL()})
	defer c.Close()
	tx := connect(t, natsnet.Options{URL: s.URL()})
	defer tx.Close()
	mb, err := natsnet.NewMailbox(context.Background(), c, "j", "w")
	if err != nil {
		t.Fatal(err)
	}
	defer mb.Close()
	ring, _ := mb.Subjects().Ring("w")
	h := allreduce.Header{Run: "r", Epoch: 1, Step: 1}
	good := natsnet.FormatAttempt(h)
	bad := []nats.Header{
		nil,
		{"Other": []string{good}},
		{"klring-attempt": []string{good}},
		{natsnet.AttemptHeader: []string{good, good}},
		{natsnet.AttemptHeader: []string{""}},
		{natsnet.AttemptHeader: []string{"1.1"}},
		{natsnet.AttemptHeader: []string{"01.1.r"}},
		{natsnet.AttemptHeader: []string{"1.-1.r"}},
		{natsnet.AttemptHeader: []string{"18446744073709551616.1.r"}},
		{natsnet.AttemptHeader: []string{"1.1." + strings.Repeat("r", 65)}},
		{natsnet.AttemptHeader: []string{"1.1.r\x01"}},
	}
	for _, hd := range bad {
		if err := tx.NC.PublishMsg(&nats.Msg{Subject: ring, Header: hd, Data: []byte("x")}); err != nil {
			t.Fatal(err)
		}
	}
	if err := tx.NC.PublishMsg(&nats.Msg{Subject: ring, Header: nats.Header{natsnet.AttemptHeader: []string{good}}, Data: []byte("good")}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := tx.NC.FlushWithContext(ctx); err != nil {
		t.Fatal(err)
	}
	if err := mb.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if st := mb.Stats(); st.Unlabelled != uint64(len(bad)) || st.Dropped() != uint64(len(bad)) || st.Queued != 1 {
		t.Errorf("Stats() = %+v after %d unlabelled messages and a good one; want them unlabelled, the good one held", st, len(bad))
	}
	tr, err := mb.Begin(h, []string{"w"}, 0)
	if err != nil {
		t.Fatal(err)
	}
	if m, err := tr.Recv(ctx); err != nil || string(m) != "good" {
		t.Errorf("Recv() = %q, %v; want good", m, err)
	}
}

// barrierTransport signals its first Send.
type barrierTransport struct {
	allreduce.Transport
	once sync.Once
	sent chan struct{}
}

// Dropped forwards the mailbox's count, which AllReduce reads.
func (b *barrierTransport) Dropped() uint64 {
	return b.Transport.(interface{ Dropped() uint64 }).Dropped()
}

func (b *barrierTransport) Send(ctx context.Context, to int, msg []byte) error {
	b.once.Do(func() { close(b.sent) })
	return b.Transport.Send(ctx, to, msg)
}

// TestSlowConsumerCounted blocks a mailbox's subscription goroutine, overfills
// its pending limits during an all-reduce, and checks that nats.go's drops
// are counted exactly, by the connection and the mailbox, and named by the
// all-reduce's abort.
func TestSlowConsumerCounted(t *testing.T) {
	checkGoroutines(t)
	s := startServer(t, natsnet.ServerOptions{})
	rx := connect(t, natsnet.Options{URL: s.URL(), PartsInFlight: 4, ChunkBytes: 1024})
	defer rx.Close()
	tx := connect(t, natsnet.Options{URL: s.URL()})
	defer tx.Close()
	mb, err := natsnet.NewMailbox(context.Background(), rx, "slow", "b")
	if err != nil {
		t.Fatal(err)
	}
	defer mb.Close()
	h := allreduce.Header{Run: "r", Epoch: 1, Step: 1}
	tr, err := mb.Begin(h, []string{"a", "b"}, 1)
	if err != nil {
		t.Fatal(err)
	}
	bt := &barrierTransport{Transport: tr, sent: make(chan struct{})}
	done := make(chan error, 1)
	go func() {
		opts := allreduce.Options{ChunkBytes: 1024, Deadline: 2 * time.Second}
		done <- allreduce.AllReduce(context.Background(), bt, h, 1, 2, make([]float32, 10), opts, nil)
	}()
	<-bt.sent
	// Hold the subscription's goroutine in a barrier.
	held, release := make(chan struct{}), make(chan struct{})
	if err := rx.NC.Barrier(func() { close(held); <-release }); err != nil {
		t.Fatal(err)
	}
	<-held
	ring, _ := mb.Subjects().Ring("b")
	const sent, limit = 20, 4
	for range sent {
		if err := tx.NC.PublishMsg(&nats.Msg{Subject: ring, Header: nats.Header{natsnet.AttemptHeader: []string{natsnet.FormatAttempt(h)}}, Data: []byte("x")}); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := tx.NC.FlushWithContext(ctx); err != nil {
		t.Fatal(err)
	}
	// The server has sent all 20; wait for rx to have read them all.
	if err := rx.NC.FlushWithContext(ctx); err != nil {
		t.Fatal(err)
	}
	close(release)
	if err := mb.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if st := mb.Stats(); st.Lost != sent-limit || rx.SlowConsumers() == 0 {
		t.Errorf("Stats() = %+v, SlowConsumers() = %d after %d messages into a limit of %d; want %d lost", st, rx.SlowConsumers(), sent, limit, sent-limit)
	}
	err = <-done
	var ae *allreduce.AbortError
	if !errors.As(err, &ae) || ae.Lost < sent-limit || !strings.Contains(err.Error(), fmt.Sprintf("mailbox dropped %d", ae.Lost)) {
		t.Errorf("AllReduce during the drops = %v; want an *AbortError with Lost >= %d", err, sent-limit)
	}
}

// TestHeaderRoom runs an all-reduce whose messages are as long as the
// attempt header allows, with the longest attempt header, through a server
// whose max payload is the connection's ChunkBytes: nothing is refused.
func TestHeaderRoom(t *testing.T) {
	checkGoroutines(t)
	const chunk = 64 << 10
	s := startServer(t, natsnet.ServerOptions{MaxPayload: chunk})
	h := allreduce.Header{Run: strings.Repeat("~", allreduce.MaxRunLen), Epoch: 1<<64 - 1, Step: 1<<64 - 1}
	opts := allreduce.Options{ChunkBytes: chunk - natsnet.HeaderRoom, Deadline: 20 * time.Second}
	const n = 2
	members := []string{strings.Repeat("a", natsnet.MaxNameLen), strings.Repeat("b", natsnet.MaxNameLen)}
	job := strings.Repeat("j", natsnet.MaxNameLen)
	trs := make([]allreduce.Transport, n)
	for r := range n {
		c := connect(t, natsnet.Options{URL: s.URL(), ChunkBytes: chunk})
		defer c.Close()
		mb, err := natsnet.NewMailbox(context.Background(), c, job, members[r])
		if err != nil {
			t.Fatal(err)
		}
		defer mb.Close()
		if trs[r], err = mb.Begin(h, members, r); err != nil {
			t.Fatal(err)
		}
	}
	L := 2 * opts.PartFloats() // one full part per segment
	data := [n][]float32{make([]float32, L), make([]float32, L)}
	for i := range L {
		data[0][i], data[1][i] = 1, 2
	}
	errs := make([]error, n)
	var wg sync.WaitGroup
	for r := range n {
		wg.Go(func() { errs[r] = allreduce.AllReduce(context.Background(), trs[r], h, r, n, data[r], opts, nil) })
	}
	wg.Wait()
	for r := range n {
		if errs[r] != nil || data[r][0] != 3 || data[r][L-1] != 3 {
			t.Errorf("rank %d: AllReduce = %v, [0] = %v, [L-1] = %v; want nil, 3, 3", r, errs[r], data[r][0], data[r][L-1])
		}
	}
}

func TestAttemptRoundTrip(t *testing.T) {
	for _, h := range []allreduce.Header{
		{}, {Run: "r", Epoch: 1, Step: 2}, {Run: "ABCDEFGHIJKLMNOP", Epoch: 10, Step: 0},
		{Run: "a.b.c", Epoch: 1<<64 - 1, Step: 1<<64 - 1}, {Run: strings.Repeat("~", allreduce.MaxRunLen)},
	} {
		s := natsnet.FormatAttempt(h)
		got, err := natsnet.ParseAttempt(s)
		if err != nil || got != h {
			t.Errorf("ParseAttempt(FormatAttempt(%v) = %q) = %v, %v; want %v", h, s, got, err, h)
		}
	}
	for _, s := range []string{"", ".", "1", "1.2", "1.2", "a.1.r", "1.a.r", "+1.1.r", "1.01.r", "00.1.r", "1..r", "1.2 .r", " 1.2.r",
		"18446744073709551616.0.r", "0.18446744073709551616.r", "1.1.a b", "1.1.\xff"} {
		if h, err := natsnet.ParseAttempt(s); !errors.Is(err, natsnet.ErrBadAttempt) {
			t.Errorf("ParseAttempt(%q) = %v, %v; want %v", s, h, err, natsnet.ErrBadAttempt)
		}
	}
}

// FuzzParseAttempt checks that no header value makes the parser panic, and
// that it accepts exactly what FormatAttempt writes.
func FuzzParseAttempt(f *testing.F) {
	for _, s := range []string{"1.2.r", "0.0.", "18446744073709551615.18446744073709551615.run", "01.1.r", "1.1.a b", "1.1." + strings.Repeat("x", 64)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		h, err := natsnet.ParseAttempt(s)
		if err != nil {
			if !errors.Is(err, natsnet.ErrBadAttempt) {
				t.Fatalf("ParseAttempt(%q) = %v; want %v", s, err, natsnet.ErrBadAttempt)
			}
			return
		}
		if err := h.Validate(); err != nil {
			t.Fatalf("ParseAttempt(%q) = %v, which is not valid: %v", s, h, err)
		}
		if f := natsnet.FormatAttempt(h); f != s {
			t.Fatalf("ParseAttempt(%q) = %v, formatted %q; want the input back", s, h, f)
		}
	})
}

func TestSubjects(t *testing.T) {
	s, err := natsnet.NewSubjects("job-1")
	if err != nil {
		t.Fatal(err)
	}
	want := natsnet.Subjects{Job: "job-1", Hello: "klring.job-1.hello", Plan: "klring.job-1.plan", Done: "klring.job-1.done",
		Seg: "klring.job-1.seg", HB: "klring.job-1.hb", Snap: "klring.job-1.snap",
		Resid: "klring.job-1.resid", Seed: "klring.job-1.seed", All: "klring.job-1.>", Rings: "klring.job-1.ring.*"}
	got := s
	if got.Job != want.Job || got.Hello != want.Hello || got.Plan != want.Plan || got.Done != want.Done || got.Seg != want.Seg ||
		got.HB != want.HB || got.Snap != want.Snap || got.Resid != want.Resid || got.Seed != want.Seed || got.All != want.All || got.Rings != want.Rings {
		t.Errorf("NewSubjects(job-1) = %+v; want %+v", got, want)
	}
	if r, err := s.Ring("w_7"); err != nil || r != "klring.job-1.ring.w_7" {
		t.Errorf("Ring(w_7) = %q, %v; want klring.job-1.ring.w_7", r, err)
	}
	for _, name := range []string{"", "a.b", "a*", "a>", "a b", "é", strings.Repeat("x", natsnet.MaxNameLen+1)} {
		if _, err := natsnet.NewSubjects(name); !errors.Is(err, natsnet.ErrBadName) {
			t.Errorf("NewSubjects(%q) = %v; want %v", name, err, natsnet.ErrBadName)
		}
		if _, err := s.Ring(name); !errors.Is(err, natsnet.ErrBadName) {
			t.Errorf("Ring(%q) = %v; want %v", name, err, natsnet.ErrBadName)
		}
	}
	for _, name := range []string{"a", "job_1-X", strings.Repeat("x", natsnet.MaxNameLen)} {
		if err := natsnet.ValidName(name); err != nil {
			t.Errorf("ValidName(%q) = %v; want nil", name, err)
		}
	}
	if _, err := (natsnet.Subjects{}).Ring("w"); !errors.Is(err, natsnet.ErrBadName) {
		t.Errorf("Subjects{}.Ring(w) = %v; want %v", err, natsnet.ErrBadName)
	}
}

// TestMailboxCloseAfterConn closes the connection under a mailbox with an
// all-reduce waiting on it: Recv ends with ErrClosed, and Close, after it,
// returns at once (the subscription's goroutine has already ended).
func TestMailboxCloseAfterConn(t *testing.T) {
	checkGoroutines(t)
	s := startServer(t, natsnet.ServerOptions{})
	c := connect(t, natsnet.Options{URL: s.URL()})
	mb, err := natsnet.NewMailbox(context.Background(), c, "j", "w")
	if err != nil {
		t.Fatal(err)
	}
	h := allreduce.Header{Run: "r", Epoch: 1, Step: 1}
	tr, err := mb.Begin(h, []string{"w", "v"}, 0)
	if err != nil {
		t.Fatal(err)
	}
	recv := make(chan error, 1)
	go func() {
		_, err := tr.Recv(context.Background())
		recv <- err
	}()
	c.Close()
	if err := <-recv; !errors.Is(err, allreduce.ErrClosed) {
		t.Errorf("Recv waiting when the connection closed = %v; want %v", err, allreduce.ErrClosed)
	}
	if err := tr.Send(context.Background(), 1, []byte("x")); !errors.Is(err, allreduce.ErrClosed) {
		t.Errorf("Send on a closed connection = %v; want %v", err, allreduce.ErrClosed)
	}
	t0 := time.Now()
	if err := mb.Close(); err != nil {
		t.Errorf("Close after the connection's = %v; want nil", err)
	}
	if el := time.Since(t0); el > 5*time.Second {
		t.Errorf("Close after the connection's took %v; want it at once", el)
	}
	if _, err := tr.Recv(context.Background()); !errors.Is(err, allreduce.ErrClosed) {
		t.Errorf("Recv after Close = %v; want %v", err, allreduce.ErrClosed)
	}
	if err := mb.Close(); err != nil {
		t.Errorf("Close twice = %v", err)
	}
}
