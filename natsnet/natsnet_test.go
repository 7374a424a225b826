package natsnet_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/klring/klring/natsnet"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// checkGoroutines registers a cleanup, to run after every cleanup registered
// later, that waits until the number of goroutines is back to what it is
// now, and fails with their stacks if it is not within 10s.
func checkGoroutines(t *testing.T) {
	before := runtime.NumGoroutine()
	t.Cleanup(func() {
		deadline := time.Now().Add(10 * time.Second)
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		for runtime.NumGoroutine() > before {
			if time.Now().After(deadline) {
				buf := make([]byte, 1<<20)
				buf = buf[:runtime.Stack(buf, true)]
				t.Errorf("runtime.NumGoroutine() = %d after shutdown; want %d. Stacks:\n%s", runtime.NumGoroutine(), before, buf)
				return
			}
			<-tick.C
		}
	})
}

// startServer starts an embedded server for one test; it fails the test if
// the server cannot start.
func startServer(t testing.TB, o natsnet.ServerOptions) *natsnet.Server {
	t.Helper()
	s, err := natsnet.StartServer(o)
	if err != nil {
		t.Fatalf("StartServer(%+v) = %v", o, err)
	}
	t.Cleanup(s.Shutdown)
	return s
}

// startCluster starts k clustered embedded servers for one test; it fails
// the test if they cannot start or join.
func startCluster(t testing.TB, k int, o natsnet.ServerOptions) []*natsnet.Server {
	t.Helper()
	servers, err := natsnet.StartCluster(k, o)
	if err != nil {
		t.Fatalf("StartCluster(%d) = %v", k, err)
	}
	t.Cleanup(func() {
		for _, s := range servers {
			s.Shutdown()
		}
	})
	return servers
}

func connect(t testing.TB, o natsnet.Options) *natsnet.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	o.Logger = quiet
	c, err := natsnet.Connect(ctx, o)
	if err != nil {
		t.Fatalf("Connect(%s) = %v", o.URL, err)
	}
	return c
}

func TestAuth(t *testing.T) {
	checkGoroutines(t)
	s := startServer(t, natsnet.ServerOptions{User: "klring", Password: "s3cret"})
	c := connect(t, natsnet.Options{URL: s.URL(), User: "klring", Password: "s3cret"})
	c.Close()
	for _, tc := range []struct{ user, pass string }{{"", ""}, {"klring", "wrong"}, {"other", "s3cret"}} {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		_, err := natsnet.Connect(ctx, natsnet.Options{URL: s.URL(), User: tc.user, Password: tc.pass, Logger: quiet})
		cancel()
		if !errors.Is(err, nats.ErrAuthorization) {
			t.Errorf("Connect(user %q, password %q) = %v; want %v", tc.user, tc.pass, err, nats.ErrAuthorization)
		}
	}
}

func TestChunkAboveMaxPayload(t *testing.T) {
	checkGoroutines(t)
	s := startServer(t, natsnet.ServerOptions{MaxPayload: 1 << 20})
	c := connect(t, natsnet.Options{URL: s.URL(), ChunkBytes: 1 << 20})
	c.Close()
	_, err := natsnet.Connect(context.Background(), natsnet.Options{URL: s.URL(), ChunkBytes: 1<<20 + 1, Logger: quiet})
	if !errors.Is(err, natsnet.ErrPayloadLimit) {
		t.Errorf("Connect(chunk 1 MiB + 1, max payload 1 MiB) = %v; want %v", err, natsnet.ErrPayloadLimit)
	}
}

func TestConnectGivesUpWithContext(t *testing.T) {
	checkGoroutines(t)
	s := startServer(t, natsnet.ServerOptions{})
	url := s.URL()
	s.Shutdown() // nothing listens there now
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	_, err := natsnet.Connect(ctx, natsnet.Options{URL: url, Logger: quiet, ReconnectWait: 10 * time.Millisecond})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Connect(%s with nothing listening) = %v; want %v", url, err, context.DeadlineExceeded)
	}
}

// TestConnectWarnsWhenUnreachable: a server that cannot be reached is
// logged at WARN at the first attempt, with the URL, the attempt count and
// the error, and the retries that follow within 10s at DEBUG only.
func TestConnectWarnsWhenUnreachable(t *testing.T) {
	checkGoroutines(t)
	s := startServer(t, natsnet.ServerOptions{})
	url := s.URL()
	s.Shutdown() // nothing listens there now
	// The message of the second attempt, the first one not at WARN.
	rec := newRecorder("nats connect failed; retrying")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() {
		_, err := natsnet.Connect(ctx, natsnet.Options{URL: url, Logger: slog.New(rec), ReconnectWait: time.Millisecond})
		done <- err
	}()
	select {
	case <-rec.seen:
	case err := <-done:
		t.Fatalf("Connect(%s with nothing listening) = %v before its second attempt; log:\n%s", url, err, rec)
	case <-time.After(20 * time.Second):
		t.Fatalf("no second attempt within 20s; log:\n%s", rec)
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Errorf("Connect(%s with nothing listening) = %v; want %v", url, err, context.Canceled)
	}
	logs := rec.String()
	want := `level=WARN msg="cannot reach the NATS server, retrying" url=` + url + ` attempts=1 err=`
	if !strings.Contains(logs, want) {
		t.Errorf("log has no %q:\n%s", want, logs)
	}
	if n := strings.Count(logs, "level=WARN"); n != 1 {
		t.Errorf("log has %d WARN lines; want 1 (the retries within 10s at DEBUG):\n%s", n, logs)
	}
	if !strings.Contains(logs, "level=DEBUG msg=\"nats connect failed; retrying\" url="+url+" attempt=2 ") {
		t.Errorf("log has no DEBUG line for the second attempt:\n%s", logs)
	}
}

func TestOptionsValidate(t *testing.T) {
	d := natsnet.DefaultOptions()
	for _, tc := range []struct {
		name string
		mod  func(*natsnet.Options)
		ok   bool
	}{
		{"defaults", func(*natsnet.Options) {}, true},
		{"empty url", func(o *natsnet.Options) { o.URL = "" }, false},
		{"small chunk", func(o *natsnet.Options) { o.ChunkBytes = 10 }, false},
		{"no parts", func(o *natsnet.Options) { o.PartsInFlight = 0 }, false},
		{"user without password", func(o *natsnet.Options) { o.User = "u" }, false},
		{"user and token", func(o *natsnet.Options) { o.User, o.Password, o.Token = "u", "p", "t" }, false},
		{"token and creds", func(o *natsnet.Options) { o.Token, o.Creds = "t", "f.creds" }, false},
		{"creds", func(o *natsnet.Options) { o.Creds = "f.creds" }, true},
		{"no ping", func(o *natsnet.Options) { o.PingInterval = 0 }, false},
	} {
		o := d
		tc.mod(&o)
		if err := o.Validate(); (err == nil) != tc.ok || (err != nil && !errors.Is(err, natsnet.ErrBadOptions)) {
			t.Errorf("%s: Validate() = %v; want ok=%v", tc.name, err, tc.ok)
		}
	}
}

func TestServerShutdownFreesClients(t *testing.T) {
	checkGoroutines(t)
	s, err := natsnet.StartServer(natsnet.ServerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	c := connect(t, natsnet.Options{URL: s.URL()})
	if got := s.NumClients(); got != 1 {
		t.Errorf("NumClients() = %d; want 1", got)
	}
	c.Close()
	s.Shutdown()
}

// TestInProcess connects through Options.InProcess, with the server's user
// and password: the connection is an in-memory pipe rather than a TCP
// socket, the server counts it, and messages cross the server from a TCP
// client to it as between two TCP clients.
func TestInProcess(t *testing.T) {
	checkGoroutines(t)
	s := startServer(t, natsnet.ServerOptions{User: "klring", Password: "s3cret"})
	sub := connect(t, natsnet.Options{URL: s.URL(), User: "klring", Password: "s3cret", InProcess: s})
	defer sub.Close()
	pub := connect(t, natsnet.Options{URL: s.URL(), User: "klring", Password: "s3cret"}) // TCP
	defer pub.Close()
	if addr := sub.NC.ConnectedAddr(); strings.Contains(addr, ":") {
		t.Errorf("in-process connection's address = %q; want a pipe, not a TCP address", addr)
	}
	if addr := pub.NC.ConnectedAddr(); !strings.Contains(addr, ":") {
		t.Errorf("TCP connection's address = %q; want host:port", addr)
	}
	ch := make(chan *nats.Msg, 1)
	sb, err := sub.NC.ChanSubscribe("klring.test.inproc", ch)
	if err != nil {
		t.Fatal(err)
	}
	defer sb.Unsubscribe()
	if err := sub.NC.Flush(); err != nil {
		t.Fatal(err)
	}
	if got := s.NumClients(); got != 2 {
		t.Errorf("NumClients = %d; want 2 (one in process, one on TCP)", got)
	}
	want := []byte("across the server")
	if err := pub.NC.Publish("klring.test.inproc", want); err != nil {
		t.Fatal(err)
	}
	select {
	case m := <-ch:
		if string(m.Data) != string(want) {
			t.Errorf("received %q; want %q", m.Data, want)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no message through the in-process connection in 10s")
	}
}
