package natsnet_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/klring/klring/allreduce"
	"github.com/klring/klring/certs"
	"github.com/klring/klring/natsnet"
)

// TestCluster starts three clustered servers: each has a route to the two
// others, a client learns its server's name from INFO, and a subscription
// made on one server is heard by a publisher on another once the servers
// know of it.
func TestCluster(t *testing.T) {
	checkGoroutines(t)
	servers := startCluster(t, 3, natsnet.ServerOptions{Name: "node"})
	for i, s := range servers {
		if want := fmt.Sprintf("node-%d", i); s.Name() != want || s.Peers() != 2 || !strings.HasPrefix(s.RouteURL(), "nats-route://127.0.0.1:") {
			t.Errorf("server %d: name %q, %d peers, route URL %q; want %q, 2 peers, a loopback route URL", i, s.Name(), s.Peers(), s.RouteURL(), want)
		}
	}
	if got, want := natsnet.URLs(servers, 1), servers[1].URL()+","+servers[2].URL()+","+servers[0].URL(); got != want {
		t.Errorf("URLs(servers, 1) = %q; want %q", got, want)
	}
	sub := connect(t, natsnet.Options{URL: natsnet.URLs(servers, 2)})
	defer sub.Close()
	pub := connect(t, natsnet.Options{URL: natsnet.URLs(servers, 0)})
	defer pub.Close()
	if sub.ServerName() != "node-2" || pub.ServerName() != "node-0" {
		t.Errorf("ServerName() = %q and %q; want node-2 and node-0 (the first URL of each list)", sub.ServerName(), pub.ServerName())
	}
	s, err := sub.NC.SubscribeSync("klring.x.ring.w")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := natsnet.WaitInterest(ctx, "klring.x.ring.w", servers...); err != nil {
		t.Fatal(err)
	}
	if err := pub.NC.Publish("klring.x.ring.w", []byte("over a route")); err != nil {
		t.Fatal(err)
	}
	m, err := s.NextMsgWithContext(ctx)
	if err != nil || string(m.Data) != "over a route" {
		t.Errorf("NextMsg = %v, %v; want the message published on node-0", m, err)
	}
}

func TestClusterOptionsRefused(t *testing.T) {
	for _, co := range []natsnet.ClusterOptions{
		{User: "route"},
		{Routes: []string{"http://127.0.0.1:6222"}},
		{Routes: []string{"nats-route://"}},
	} {
		if s, err := natsnet.StartServer(natsnet.ServerOptions{Cluster: &co}); !errors.Is(err, natsnet.ErrBadOptions) {
			if s != nil {
				s.Shutdown()
			}
			t.Errorf("StartServer(cluster %+v) = %v; want %v", co, err, natsnet.ErrBadOptions)
		}
	}
}

// TestClusterRouteAuth: a server whose route presents no password, or the
// wrong one, does not join the cluster; with the right one it does.
func TestClusterRouteAuth(t *testing.T) {
	checkGoroutines(t)
	a := startServer(t, natsnet.ServerOptions{Name: "a", Cluster: &natsnet.ClusterOptions{User: "route", Password: "r0ute"}})
	wrong := startServer(t, natsnet.ServerOptions{Name: "wrong", Cluster: &natsnet.ClusterOptions{Routes: []string{strings.Replace(a.RouteURL(), "//", "//route:wrong@", 1)}}})
	b := startServer(t, natsnet.ServerOptions{Name: "b", Cluster: &natsnet.ClusterOptions{User: "route", Password: "r0ute", Routes: []string{a.RouteURL()}}})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := b.WaitPeers(ctx, 1); err != nil {
		t.Fatal(err)
	}
	// a has admitted b; the wrong password has had as long (it tries at
	// once) and is still out.
	if err := a.WaitPeers(ctx, 1); err != nil {
		t.Fatal(err)
	}
	if a.Peers() != 1 || wrong.Peers() != 0 {
		t.Errorf("a has %d peers, the server with a wrong route password %d; want 1 (b) and 0", a.Peers(), wrong.Peers())
	}
}

// TestServerKilledMidAllReduce kills, in the middle of an all-reduce over a
// cluster of three servers (one rank on each), the server of rank 1. The
// attempt fails cleanly: every rank returns the exact sum or an abort
// error, never a wrong sum, within its deadline. Rank 1 reconnects to
// another server of its list; the next attempt, on the same mailboxes,
// succeeds on every rank. A kill can land when no part of rank 1's happens
// to be in flight, and then nothing is lost: a trial that ends without an
// abort is run again on a new cluster (at most 5 times).
func TestServerKilledMidAllReduce(t *testing.T) {
	checkGoroutines(t)
	for trial := 1; ; trial++ {
		if serverKilledTrial(t, trial) {
			return
		}
		if trial == 5 {
			t.Fatal("no kill in 5 trials made the attempt it interrupted fail")
		}
	}
}

// serverKilledTrial runs one trial and reports whether the interrupted
// attempt failed.
func serverKilledTrial(t *testing.T, trial int) (aborted bool) {
	const n, L = 3, 1 << 20
	servers, err := natsnet.StartCluster(n, natsnet.ServerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		for _, s := range servers {
			s.Shutdown()
		}
	}()
	members := []string{"w0", "w1", "w2"}
	opts := allreduce.Options{ChunkBytes: 64 << 10, Deadline: 3 * time.Second}
	conns := make([]*natsnet.Conn, n)
	mbs := make([]*natsnet.Mailbox, n)
	for r := range n {
		conns[r] = connect(t, natsnet.Options{URL: natsnet.URLs(servers, r), ChunkBytes: opts.ChunkBytes + natsnet.HeaderRoom,
			PartsInFlight: allreduce.MaxMessages(L, n, opts) + 16, ReconnectWait: 20 * time.Millisecond})
		defer conns[r].Close()
		mb, err := natsnet.NewMailbox(context.Background(), conns[r], "kill", members[r])
		if err != nil {
			t.Fatal(err)
		}
		defer mb.Close()
		mbs[r] = mb
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for _, w := range members {
		if err := natsnet.WaitInterest(ctx, "klring.kill.ring."+w, servers...); err != nil {
			t.Fatal(err)
		}
	}
	killed := servers[1].Name()
	attempt := func(step uint64, kill bool) []error {
		h := allreduce.Header{Run: "run-kill", Epoch: 1, Step: step}
		data := make([][]float32, n)
		errs := make([]error, n)
		var wg sync.WaitGroup
		for r := range n {
			data[r] = make([]float32, L)
			for i := range data[r] {
				data[r][i] = float32(r + 1)
			}
			tr, err := mbs[r].Begin(h, members, r)
			if err != nil {
				t.Fatalf("step %d: Begin(rank %d) = %v", step, r, err)
			}
			if kill && r == 0 {
				// Rank 0 sends to rank 1: kill rank 1's server before
				// rank 0's 10th part of about 100.
				tr = &signalling{Transport: tr, k: 10, f: servers[1].Shutdown}
			}
			wg.Go(func() { errs[r] = allreduce.AllReduce(context.Background(), tr, h, r, n, data[r], opts, nil) })
		}
		wg.Wait()
		for r, err := range errs {
			if err != nil {
				var ae *allreduce.AbortError
				if !errors.As(err, &ae) {
					t.Errorf("trial %d, step %d: AllReduce(rank %d) = %v; want nil or an *AbortError", trial, step, r, err)
				}
				continue
			}
			for i, v := range data[r] {
				if v != n*(n+1)/2 {
					t.Fatalf("trial %d, step %d: AllReduce(rank %d) = nil with [%d] = %v; want %d", trial, step, r, i, v, n*(n+1)/2)
				}
			}
		}
		return errs
	}
	errs := attempt(1, true)
	for _, err := range errs {
		aborted = aborted || err != nil
	}
	t.Logf("trial %d: the attempt during the kill of %s: %v", trial, killed, errs)
	// Rank 1 reconnects to another server of its list, which tells the
	// other survivor of its subscription.
	for conns[1].NC.Status() != nats.CONNECTED || conns[1].ServerName() == killed {
		select {
		case <-conns[1].Reconnected():
		case <-ctx.Done():
			t.Fatalf("rank 1 is still %v on %q after 20s", conns[1].NC.Status(), conns[1].ServerName())
		}
	}
	if err := natsnet.WaitInterest(ctx, "klring.kill.ring.w1", servers[0], servers[2]); err != nil {
		t.Fatal(err)
	}
	for r, err := range attempt(2, false) {
		if err != nil {
			t.Errorf("trial %d: the attempt after the kill: AllReduce(rank %d) = %v; want nil", trial, r, err)
		}
	}
	if got := conns[1].ServerName(); got != servers[2].Name() {
		t.Errorf("rank 1 is on %q after the kill; want %q, the next server of its list", got, servers[2].Name())
	}
	return aborted
}

// TestClusterRouteTLS: servers whose routes present route certificates of
// the cluster's CA join it over mutual TLS; a server whose route
// certificate is of another CA is refused.
func TestClusterRouteTLS(t *testing.T) {
	checkGoroutines(t)
	dir, other := t.TempDir(), t.TempDir()
	for _, d := range []string{dir, other} {
		if _, err := certs.Generate(d, certs.Request{Hosts: []string{"127.0.0.1"}, Route: true}); err != nil {
			t.Fatal(err)
		}
	}
	opts := func(d string, routes ...string) natsnet.ServerOptions {
		return natsnet.ServerOptions{TLSCert: filepath.Join(d, "server.pem"), TLSKey: filepath.Join(d, "server-key.pem"), TLSCA: filepath.Join(d, "ca.pem"),
			Cluster: &natsnet.ClusterOptions{User: "route", Password: "pw", Routes: routes,
				TLSCert: filepath.Join(d, "route.pem"), TLSKey: filepath.Join(d, "route-key.pem")}}
	}
	a := startServer(t, opts(dir))
	stranger := startServer(t, opts(other, a.RouteURL()))
	b := startServer(t, opts(dir, a.RouteURL()))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := b.WaitPeers(ctx, 1); err != nil {
		t.Fatal(err)
	}
	if err := a.WaitPeers(ctx, 1); err != nil {
		t.Fatal(err)
	}
	if a.Peers() != 1 || stranger.Peers() != 0 {
		t.Errorf("a has %d peers, the server with another CA's route certificate %d; want 1 (b) and 0", a.Peers(), stranger.Peers())
	}
	if _, err := natsnet.StartServer(natsnet.ServerOptions{Cluster: &natsnet.ClusterOptions{TLSCert: filepath.Join(dir, "route.pem"), TLSKey: filepath.Join(dir, "route-key.pem")}}); !errors.Is(err, natsnet.ErrBadOptions) {
		t.Errorf("StartServer(route TLS without a CA) = %v; want %v", err, natsnet.ErrBadOptions)
	}
}

// TestRouteRefusedLogged: a server whose route presents the wrong password
// says so at WARN, and so does the server that refuses it; neither log
// shows the password. Routes lists the configured route, redacted, and not
// the server's own route address.
func TestRouteRefusedLogged(t *testing.T) {
	checkGoroutines(t)
	const pass = "wr0ng-never-logged"
	headLog, wrongLog := newRecorder(natsnet.LogRouteAuth), newRecorder(natsnet.LogRouteRefused)
	head := startServer(t, natsnet.ServerOptions{Name: "head", Logger: slog.New(headLog),
		Cluster: &natsnet.ClusterOptions{User: "route", Password: "r0ute"}})
	wrong := startServer(t, natsnet.ServerOptions{Name: "wrong", Logger: slog.New(wrongLog),
		Cluster: &natsnet.ClusterOptions{User: "route", Password: pass, Routes: []string{head.RouteURL()}}})
	for _, r := range []*recorder{wrongLog, headLog} {
		select {
		case <-r.seen:
		case <-time.After(10 * time.Second):
			t.Fatalf("no %q within 10s; log:\n%s", r.wait, r)
		}
	}
	for _, r := range []*recorder{wrongLog, headLog} {
		if logs := r.String(); strings.Contains(logs, pass) || !strings.Contains(logs, "level=WARN") {
			t.Errorf("log shows the route password or no WARN:\n%s", logs)
		}
	}
	if got, want := wrong.Routes(), []string{strings.Replace(head.RouteURL(), "//", "//redacted@", 1)}; !slices.Equal(got, want) {
		t.Errorf("Routes() = %q; want %q", got, want)
	}
	if got := head.Routes(); got != nil {
		t.Errorf("Routes() of a server routing to none = %q; want nil", got)
	}
}
