package natsnet_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/klring/klring/natsnet"
)

// roles starts a server with the per-role users of a deployment: a
// coordinator, a worker w1 allowed only its own ring subject, and a worker
// user for any worker name (as docker/nats-server.conf has).
func roles(t *testing.T, o natsnet.ServerOptions) *natsnet.Server {
	t.Helper()
	o.Users = []natsnet.User{
		{Name: "coord", Password: "c-secret", Permissions: natsnet.CoordinatorPermissions("j")},
		{Name: "w1", Password: "w1-secret", Permissions: natsnet.WorkerPermissions("j", "w1")},
		{Name: "worker", Password: "w-secret", Permissions: natsnet.WorkerPermissions("*", "*")},
	}
	return startServer(t, o)
}

// denied checks that the server refused what do did on c, naming subj: the
// server answers a refused publication or subscription with -ERR before
// the PONG of the flush, and nats.go records it as the last error.
func denied(t *testing.T, c *natsnet.Conn, what, subj string, do func() error) {
	t.Helper()
	if err := do(); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	if err := c.NC.Flush(); err != nil {
		t.Fatalf("%s: Flush = %v", what, err)
	}
	err := c.NC.LastError()
	if !errors.Is(err, nats.ErrPermissionViolation) || !strings.Contains(err.Error(), `"`+subj+`"`) {
		t.Errorf("%s: server said %v; want a permissions violation for %q", what, err, subj)
	}
}

// nothing checks that sub received nothing: flushing its connection after
// the sender's flush delivers anything the server routed to it first.
func nothing(t *testing.T, c *natsnet.Conn, sub *nats.Subscription, what string) {
	t.Helper()
	if err := c.NC.Flush(); err != nil {
		t.Fatal(err)
	}
	if n, _, _ := sub.Pending(); n != 0 {
		m, _ := sub.NextMsg(0)
		t.Errorf("%s: %s received %d message(s) (%v); want none", what, sub.Subject, n, m)
	}
}

func subscribe(t *testing.T, c *natsnet.Conn, subj string) *nats.Subscription {
	t.Helper()
	s, err := c.NC.SubscribeSync(subj)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.NC.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := c.NC.LastError(); err != nil {
		t.Fatalf("subscribing to %s: %v", subj, err)
	}
	return s
}

func next(t *testing.T, s *nats.Subscription, want string) *nats.Msg {
	t.Helper()
	m, err := s.NextMsg(10 * time.Second)
	if err != nil || string(m.Data) != want {
		t.Fatalf("%s: NextMsg = %v, %v; want %q", s.Subject, m, err, want)
	}
	return m
}

// TestRolePermissions runs the step protocol's subjects through a server
// with per-role users: what each role needs goes through, and a worker can
// forge neither a plan nor a reply.
func TestRolePermissions(t *testing.T) {
	checkGoroutines(t)
	s := roles(t, natsnet.ServerOptions{})
	coord := connect(t, natsnet.Options{URL: s.URL(), User: "coord", Password: "c-secret", Name: "coord"})
	defer coord.Close()
	w1 := connect(t, natsnet.Options{URL: s.URL(), User: "w1", Password: "w1-secret", Name: "w1"})
	defer w1.Close()
	w2 := connect(t, natsnet.Options{URL: s.URL(), User: "worker", Password: "w-secret", Name: "w2"})
	defer w2.Close()

	// The coordinator serves hello and snap; its replies reach the worker.
	hello := subscribe(t, coord, "klring.j.hello")
	hb := subscribe(t, coord, "klring.j.hb")
	plan1 := subscribe(t, w1, "klring.j.plan")
	plan2 := subscribe(t, w2, "klring.j.plan")
	ring2 := subscribe(t, w2, "klring.j.ring.w2")
	inbox2 := subscribe(t, w2, "_INBOX.>")

	replied := make(chan error, 1)
	go func() {
		m, err := hello.NextMsg(10 * time.Second)
		if err == nil {
			err = m.Respond([]byte("welcome"))
		}
		replied <- err
	}()
	r, err := w1.NC.Request("klring.j.hello", []byte("hello w1"), 10*time.Second)
	if err != nil || string(r.Data) != "welcome" {
		t.Fatalf("hello request = %v, %v; want the coordinator's welcome", r, err)
	}
	if err := <-replied; err != nil {
		t.Fatalf("the coordinator's reply: %v", err)
	}
	// A worker may listen on every inbox, so w2 reads w1's welcome too:
	// workers do not keep secrets from each other (docs/security.md).
	next(t, inbox2, "welcome")

	if err := coord.NC.Publish("klring.j.plan", []byte("plan 1")); err != nil {
		t.Fatal(err)
	}
	next(t, plan1, "plan 1")
	next(t, plan2, "plan 1")
	if err := w1.NC.Publish("klring.j.ring.w2", []byte("part")); err != nil {
		t.Fatal(err)
	}
	next(t, ring2, "part")
	if err := w1.NC.Publish("klring.j.hb", []byte("beat")); err != nil {
		t.Fatal(err)
	}
	next(t, hb, "beat")
	// Error feedback: a worker sends its residual of a checkpointed step,
	// and after a resume asks for its seed, which the coordinator answers.
	resid := subscribe(t, coord, "klring.j.resid")
	if err := w2.NC.Publish("klring.j.resid", []byte("residual")); err != nil {
		t.Fatal(err)
	}
	next(t, resid, "residual")
	seed := subscribe(t, coord, "klring.j.seed")
	go func() {
		m, err := seed.NextMsg(10 * time.Second)
		if err == nil {
			err = m.Respond([]byte("seed"))
		}
		replied <- err
	}()
	if r, err := w1.NC.Request("klring.j.seed", []byte("seed of w1"), 10*time.Second); err != nil || string(r.Data) != "seed" {
		t.Fatalf("seed request = %v, %v; want the coordinator's seed", r, err)
	}
	if err := <-replied; err != nil {
		t.Fatalf("the coordinator's seed reply: %v", err)
	}
	next(t, inbox2, "seed")
	if err := w1.NC.LastError(); err != nil {
		t.Fatalf("worker w1 after its allowed traffic: %v", err)
	}

	// A worker may not publish a plan, nor to any inbox (a forged welcome
	// or snapshot chunk).
	denied(t, w1, "worker publishes a plan", "klring.j.plan", func() error { return w1.NC.Publish("klring.j.plan", []byte("forged")) })
	nothing(t, w2, plan2, "forged plan")
	denied(t, w1, "worker publishes to an inbox", "_INBOX.x.y", func() error { return w1.NC.Publish("_INBOX.x.y", []byte("forged welcome")) })
	nothing(t, w2, inbox2, "forged welcome")
	denied(t, w2, "any-name worker publishes a plan", "klring.other.plan", func() error { return w2.NC.Publish("klring.other.plan", nil) })
	// Nor listen to what workers tell the coordinator, nor (w1) to another
	// worker's ring subject.
	denied(t, w1, "worker subscribes to hello", "klring.j.hello", func() error { _, err := w1.NC.SubscribeSync("klring.j.hello"); return err })
	denied(t, w1, "worker w1 subscribes to w2's ring", "klring.j.ring.w2", func() error { _, err := w1.NC.SubscribeSync("klring.j.ring.w2"); return err })
	// The coordinator publishes plans of its job and replies, nothing else:
	// no inbox without a request, no ring part.
	denied(t, coord, "coordinator publishes to an inbox unasked", "_INBOX.x.y", func() error { return coord.NC.Publish("_INBOX.x.y", nil) })
	nothing(t, w2, inbox2, "unasked reply")
	denied(t, coord, "coordinator publishes a ring part", "klring.j.ring.w2", func() error { return coord.NC.Publish("klring.j.ring.w2", nil) })
	nothing(t, w2, ring2, "coordinator's ring part")
	denied(t, coord, "coordinator publishes a plan of another job", "klring.k.plan", func() error { return coord.NC.Publish("klring.k.plan", nil) })

	// Every refusal reached the error handler of natsnet's Conn.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	for w1.PermissionViolations() < 4 || w2.PermissionViolations() < 1 || coord.PermissionViolations() < 3 {
		select {
		case <-ctx.Done():
			t.Fatalf("PermissionViolations() = %d (w1), %d (w2), %d (coordinator); want 4, 1, 3", w1.PermissionViolations(), w2.PermissionViolations(), coord.PermissionViolations())
		case <-tick.C:
		}
	}
}

// Per-role users and mutual TLS together, as on a head node.
func TestRolePermissionsOverMutualTLS(t *testing.T) {
	checkGoroutines(t)
	p := newPKI(t)
	s := roles(t, p.server(true))
	tlsOpts := func(user, pass, role string) natsnet.Options {
		return natsnet.Options{URL: s.URL(), User: user, Password: pass, TLSCA: p.file("ca.pem"), TLSCert: p.file(role + ".pem"), TLSKey: p.file(role + "-key.pem")}
	}
	coord := connect(t, tlsOpts("coord", "c-secret", "coordinator"))
	defer coord.Close()
	w := connect(t, tlsOpts("worker", "w-secret", "worker"))
	defer w.Close()
	plan := subscribe(t, w, "klring.j.plan")
	if err := coord.NC.Publish("klring.j.plan", []byte("plan")); err != nil {
		t.Fatal(err)
	}
	next(t, plan, "plan")
	denied(t, w, "worker publishes a plan over TLS", "klring.j.plan", func() error { return w.NC.Publish("klring.j.plan", nil) })
	// A valid certificate does not stand for a password.
	_, err := tryConnect(tlsOpts("worker", "wrong", "worker"))
	if !errors.Is(err, nats.ErrAuthorization) {
		t.Errorf("Connect(valid client certificate, wrong password) = %v; want %v", err, nats.ErrAuthorization)
	}
}

func TestServerUsersValidate(t *testing.T) {
	for _, o := range []natsnet.ServerOptions{
		{User: "a", Password: "b", Users: []natsnet.User{{Name: "c", Password: "d"}}},
		{Users: []natsnet.User{{Name: "c"}}},
		{Users: []natsnet.User{{Name: "c", Password: "d"}, {Name: "c", Password: "e"}}},
	} {
		s, err := natsnet.StartServer(o)
		if err == nil {
			s.Shutdown()
		}
		if !errors.Is(err, natsnet.ErrBadOptions) {
			t.Errorf("StartServer(%+v) = %v; want %v", o, err, natsnet.ErrBadOptions)
		}
	}
}
