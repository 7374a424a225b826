package natsnet_test

import (
	"crypto/tls"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/klring/klring/natsnet"
)

// deployConf loads docker/<name> as the container would, with the role
// users' names and passwords in the environment and /certs/ pointing at a
// generated set.
func deployConf(t *testing.T, name string, p pki) *server.Options {
	t.Helper()
	dir := t.TempDir()
	for _, f := range []string{"nats-server.conf", "nats-server-tls.conf"} {
		b, err := os.ReadFile(filepath.Join("..", "docker", f))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, f), []byte(strings.ReplaceAll(string(b), "/certs/", p.dir+"/")), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	t.Setenv("NATS_COORDINATOR_USER", `"coord"`)
	t.Setenv("NATS_COORDINATOR_PASSWORD", `"c 5ecret"`)
	t.Setenv("NATS_WORKER_USER", `"worker"`)
	t.Setenv("NATS_WORKER_PASSWORD", `"12345"`)
	o, err := server.ProcessConfigFile(filepath.Join(dir, name))
	if err != nil {
		t.Fatalf("docker/%s: %v", name, err)
	}
	return o
}

func rulesOf(p *server.SubjectPermission) natsnet.SubjectRules {
	if p == nil {
		return natsnet.SubjectRules{}
	}
	return natsnet.SubjectRules{Allow: p.Allow, Deny: p.Deny}
}

// The role permissions of docker/nats-server.conf are natsnet's.
func TestDeployConfPermissions(t *testing.T) {
	o := deployConf(t, "nats-server.conf", newPKI(t))
	want := map[string]*natsnet.Permissions{"coord": natsnet.CoordinatorPermissions("*"), "worker": natsnet.WorkerPermissions("*", "*")}
	if len(o.Users) != len(want) {
		t.Fatalf("docker/nats-server.conf has %d users; want %d", len(o.Users), len(want))
	}
	for _, u := range o.Users {
		w := want[u.Username]
		if w == nil {
			t.Errorf("docker/nats-server.conf: unexpected user %q", u.Username)
			continue
		}
		if u.Username == "worker" && u.Password != "12345" || u.Username == "coord" && u.Password != "c 5ecret" {
			t.Errorf("user %s: password %q not taken from the environment as a string", u.Username, u.Password)
		}
		if u.Permissions == nil {
			t.Errorf("user %s has no permissions", u.Username)
			continue
		}
		eq := func(a, b natsnet.SubjectRules) bool {
			return slices.Equal(a.Allow, b.Allow) && slices.Equal(a.Deny, b.Deny)
		}
		pub, sub := rulesOf(u.Permissions.Publish), rulesOf(u.Permissions.Subscribe)
		resp := u.Permissions.Response != nil
		if !eq(pub, w.Publish) || !eq(sub, w.Subscribe) || resp != w.Responses {
			t.Errorf("user %s: publish %+v, subscribe %+v, responses %v; natsnet has %+v, %+v, %v", u.Username, pub, sub, resp, w.Publish, w.Subscribe, w.Responses)
		}
		if resp && (u.Permissions.Response.MaxMsgs != 1) {
			t.Errorf("user %s: %d responses per request; want 1", u.Username, u.Permissions.Response.MaxMsgs)
		}
	}
	if o.MaxPayload != 8<<20 {
		t.Errorf("max_payload = %d; want 8 MiB", o.MaxPayload)
	}
}

// A server run from docker/nats-server-tls.conf requires TLS and a client
// certificate, and enforces the role permissions.
func TestDeployTLSConf(t *testing.T) {
	checkGoroutines(t)
	p := newPKI(t)
	o := deployConf(t, "nats-server-tls.conf", p)
	if o.TLSConfig == nil || o.TLSConfig.ClientAuth != tls.RequireAndVerifyClientCert {
		t.Fatalf("docker/nats-server-tls.conf: TLS %v; want TLS that requires and verifies client certificates", o.TLSConfig != nil)
	}
	o.Host, o.Port, o.NoLog, o.NoSigs = "127.0.0.1", server.RANDOM_PORT, true, true
	srv, err := server.NewServer(o)
	if err != nil {
		t.Fatal(err)
	}
	srv.Start()
	defer func() { srv.Shutdown(); srv.WaitForShutdown() }()
	if !srv.ReadyForConnections(10 * time.Second) {
		t.Fatal("server from docker/nats-server-tls.conf not ready")
	}
	url := "tls://" + net.JoinHostPort("127.0.0.1", strconv.Itoa(srv.Addr().(*net.TCPAddr).Port))

	worker := natsnet.Options{URL: url, User: "worker", Password: "12345", TLSCA: p.file("ca.pem"), TLSCert: p.file("worker.pem"), TLSKey: p.file("worker-key.pem")}
	w := connect(t, worker)
	defer w.Close()
	denied(t, w, "worker publishes a plan", "klring.e2e.plan", func() error { return w.NC.Publish("klring.e2e.plan", nil) })
	denied(t, w, "worker publishes to an inbox", "_INBOX.a.b", func() error { return w.NC.Publish("_INBOX.a.b", nil) })

	noCert := worker
	noCert.TLSCert, noCert.TLSKey = "", ""
	if _, err := tryConnect(noCert); err == nil || !strings.Contains(err.Error(), "client certificate") {
		t.Errorf("Connect without a client certificate = %v; want a refusal naming the client certificate", err)
	}
	plain := natsnet.Options{URL: strings.Replace(url, "tls://", "nats://", 1), User: "worker", Password: "12345"}
	if _, err := tryConnect(plain); err == nil || !strings.Contains(err.Error(), "requires TLS") {
		t.Errorf("Connect without TLS = %v; want a refusal saying the server requires TLS", err)
	}
}
