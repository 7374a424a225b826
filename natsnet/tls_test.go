package natsnet_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/klring/klring/certs"
	"github.com/klring/klring/natsnet"
)

// pki is a set of certificates made by package certs for one test.
type pki struct{ dir string }

func (p pki) file(name string) string { return filepath.Join(p.dir, name) }

// newPKI writes a CA, a server certificate for 127.0.0.1 and localhost, and
// client certificates for the coordinator and the worker into a temporary
// folder.
func newPKI(t testing.TB) pki {
	t.Helper()
	dir := t.TempDir()
	if _, err := certs.Generate(dir, certs.Request{Hosts: []string{"127.0.0.1", "localhost"}, Clients: []string{"coordinator", "worker"}}); err != nil {
		t.Fatalf("certs.Generate = %v", err)
	}
	return pki{dir}
}

func (p pki) server(verify bool) natsnet.ServerOptions {
	return natsnet.ServerOptions{TLSCert: p.file("server.pem"), TLSKey: p.file("server-key.pem"), TLSCA: p.file("ca.pem"), TLSVerify: verify}
}

// tryConnect connects once with a short deadline: a failure that Connect
// retries ends in context.DeadlineExceeded.
func tryConnect(o natsnet.Options) (*natsnet.Conn, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	o.Logger = quiet
	return natsnet.Connect(ctx, o)
}

// roundTrip checks that c carries a message to itself through the server:
// TLS is not only handshaken but used.
func roundTrip(t *testing.T, c, d *natsnet.Conn) {
	t.Helper()
	sub, err := d.NC.SubscribeSync("klring.tls.check")
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	if err := d.NC.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := c.NC.Publish("klring.tls.check", []byte("over tls")); err != nil {
		t.Fatal(err)
	}
	m, err := sub.NextMsg(10 * time.Second)
	if err != nil || string(m.Data) != "over tls" {
		t.Fatalf("NextMsg = %v, %v; want \"over tls\"", m, err)
	}
}

func TestTLSConnect(t *testing.T) {
	checkGoroutines(t)
	p := newPKI(t)
	s := startServer(t, p.server(false))
	if !strings.HasPrefix(s.URL(), "tls://") {
		t.Fatalf("URL() = %s; want a tls:// URL", s.URL())
	}
	// The tls:// URL, and a nats:// URL with a CA file, both use TLS.
	a := connect(t, natsnet.Options{URL: s.URL(), TLSCA: p.file("ca.pem"), Name: "a"})
	defer a.Close()
	b := connect(t, natsnet.Options{URL: strings.Replace(s.URL(), "tls://", "nats://", 1), TLSCA: p.file("ca.pem"), Name: "b"})
	defer b.Close()
	for _, c := range []*natsnet.Conn{a, b} {
		st, err := c.NC.TLSConnectionState()
		if err != nil || !st.HandshakeComplete {
			t.Errorf("TLSConnectionState() = %+v, %v; want a completed handshake", st.HandshakeComplete, err)
		}
	}
	roundTrip(t, a, b)
}

func TestMutualTLS(t *testing.T) {
	checkGoroutines(t)
	p := newPKI(t)
	s := startServer(t, p.server(true))
	c := connect(t, natsnet.Options{URL: s.URL(), TLSCA: p.file("ca.pem"), TLSCert: p.file("worker.pem"), TLSKey: p.file("worker-key.pem")})
	defer c.Close()
	d := connect(t, natsnet.Options{URL: s.URL(), TLSCA: p.file("ca.pem"), TLSCert: p.file("coordinator.pem"), TLSKey: p.file("coordinator-key.pem")})
	defer d.Close()
	st, err := c.NC.TLSConnectionState()
	if err != nil || len(st.PeerCertificates) == 0 {
		t.Fatalf("TLSConnectionState() = %v; want the server's certificate", err)
	}
	roundTrip(t, c, d)

	// Without a client certificate the server refuses the handshake, and
	// Connect says so at once rather than retrying until its deadline.
	_, err = tryConnect(natsnet.Options{URL: s.URL(), TLSCA: p.file("ca.pem")})
	if !errors.Is(err, natsnet.ErrTLS) || !strings.Contains(err.Error(), "client certificate") {
		t.Errorf("Connect(mTLS server, no client certificate) = %v; want %v naming the client certificate", err, natsnet.ErrTLS)
	}
	// A client certificate of another CA is refused too.
	other := newPKI(t)
	_, err = tryConnect(natsnet.Options{URL: s.URL(), TLSCA: p.file("ca.pem"), TLSCert: other.file("worker.pem"), TLSKey: other.file("worker-key.pem")})
	if !errors.Is(err, natsnet.ErrTLS) || !strings.Contains(err.Error(), "refused the client certificate "+other.file("worker.pem")) {
		t.Errorf("Connect(mTLS server, client certificate of another CA) = %v; want %v naming the refused certificate", err, natsnet.ErrTLS)
	}
}

func TestTLSWrongCA(t *testing.T) {
	checkGoroutines(t)
	p, other := newPKI(t), newPKI(t)
	s := startServer(t, p.server(false))
	_, err := tryConnect(natsnet.Options{URL: s.URL(), TLSCA: other.file("ca.pem")})
	if !errors.Is(err, natsnet.ErrTLS) || !strings.Contains(err.Error(), "not trusted") || !strings.Contains(err.Error(), other.file("ca.pem")) {
		t.Errorf("Connect(wrong CA) = %v; want %v saying the certificate is not trusted and naming the CA file", err, natsnet.ErrTLS)
	}
}

// A server certificate for other host names is refused: the client checks
// the name in its URL.
func TestTLSWrongHost(t *testing.T) {
	checkGoroutines(t)
	dir := t.TempDir()
	if _, err := certs.Generate(dir, certs.Request{Hosts: []string{"head.example.com"}}); err != nil {
		t.Fatal(err)
	}
	s := startServer(t, natsnet.ServerOptions{TLSCert: filepath.Join(dir, "server.pem"), TLSKey: filepath.Join(dir, "server-key.pem")})
	_, err := tryConnect(natsnet.Options{URL: s.URL(), TLSCA: filepath.Join(dir, "ca.pem")})
	if !errors.Is(err, natsnet.ErrTLS) || !strings.Contains(err.Error(), "not valid for the host") {
		t.Errorf("Connect(certificate for another host) = %v; want %v naming the host mismatch", err, natsnet.ErrTLS)
	}
}

// A client without TLS settings cannot talk to a TLS-only server: nats.go
// attempts TLS with the system's roots, which do not hold klring's CA.
func TestPlaintextToTLSServer(t *testing.T) {
	checkGoroutines(t)
	p := newPKI(t)
	s := startServer(t, p.server(false))
	url := strings.Replace(s.URL(), "tls://", "nats://", 1)
	_, err := tryConnect(natsnet.Options{URL: url})
	if !errors.Is(err, natsnet.ErrTLS) || !strings.Contains(err.Error(), "requires TLS") || !strings.Contains(err.Error(), "tls_ca") {
		t.Errorf("Connect(%s without TLS settings) = %v; want %v saying the server requires TLS", url, err, natsnet.ErrTLS)
	}
}

// A client that requires TLS does not fall back to plaintext.
func TestTLSClientToPlainServer(t *testing.T) {
	checkGoroutines(t)
	p := newPKI(t)
	s := startServer(t, natsnet.ServerOptions{})
	for _, o := range []natsnet.Options{
		{URL: s.URL(), TLSCA: p.file("ca.pem")},
		{URL: strings.Replace(s.URL(), "nats://", "tls://", 1)},
	} {
		_, err := tryConnect(o)
		if !errors.Is(err, natsnet.ErrTLS) || !strings.Contains(err.Error(), "does not offer TLS") {
			t.Errorf("Connect(%s, CA %q) to a plaintext server = %v; want %v saying the server does not offer TLS", o.URL, o.TLSCA, err, natsnet.ErrTLS)
		}
	}
}

func TestTLSFileErrorsNameTheFile(t *testing.T) {
	p := newPKI(t)
	missing := filepath.Join(t.TempDir(), "nope.pem")
	garbage := filepath.Join(t.TempDir(), "garbage.pem")
	if err := os.WriteFile(garbage, []byte("not a certificate\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		o    natsnet.Options
		want string
	}{
		{"missing CA", natsnet.Options{TLSCA: missing}, missing},
		{"garbage CA", natsnet.Options{TLSCA: garbage}, garbage},
		{"missing cert", natsnet.Options{TLSCert: missing, TLSKey: p.file("worker-key.pem")}, missing},
		{"missing key", natsnet.Options{TLSCert: p.file("worker.pem"), TLSKey: missing}, missing},
		{"garbage key", natsnet.Options{TLSCert: p.file("worker.pem"), TLSKey: garbage}, garbage},
		{"key of another cert", natsnet.Options{TLSCert: p.file("worker.pem"), TLSKey: p.file("coordinator-key.pem")}, p.file("coordinator-key.pem")},
	} {
		tc.o.URL = "tls://127.0.0.1:1"
		_, err := tryConnect(tc.o)
		if !errors.Is(err, natsnet.ErrTLSFile) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: Connect = %v; want %v naming %s", tc.name, err, natsnet.ErrTLSFile, tc.want)
		}
	}
	for _, tc := range []struct {
		name string
		o    natsnet.ServerOptions
		want string
	}{
		{"missing server key", natsnet.ServerOptions{TLSCert: p.file("server.pem"), TLSKey: missing}, missing},
		{"garbage client CA", natsnet.ServerOptions{TLSCert: p.file("server.pem"), TLSKey: p.file("server-key.pem"), TLSCA: garbage, TLSVerify: true}, garbage},
	} {
		s, err := natsnet.StartServer(tc.o)
		if err == nil {
			s.Shutdown()
		}
		if !errors.Is(err, natsnet.ErrTLSFile) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: StartServer = %v; want %v naming %s", tc.name, err, natsnet.ErrTLSFile, tc.want)
		}
	}
	for _, o := range []natsnet.ServerOptions{
		{TLSCert: p.file("server.pem")},
		{TLSVerify: true},
		{TLSCert: p.file("server.pem"), TLSKey: p.file("server-key.pem"), TLSVerify: true},
	} {
		if s, err := natsnet.StartServer(o); !errors.Is(err, natsnet.ErrBadOptions) {
			if err == nil {
				s.Shutdown()
			}
			t.Errorf("StartServer(%+v) = %v; want %v", o, err, natsnet.ErrBadOptions)
		}
	}
}

func TestTLSOptionsValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		o    natsnet.Options
		ok   bool
	}{
		{"CA only", natsnet.Options{TLSCA: "ca.pem"}, true},
		{"cert and key", natsnet.Options{TLSCert: "w.pem", TLSKey: "w-key.pem"}, true},
		{"cert without key", natsnet.Options{TLSCert: "w.pem"}, false},
		{"key without cert", natsnet.Options{TLSKey: "w-key.pem"}, false},
	} {
		o := natsnet.DefaultOptions()
		o.TLSCA, o.TLSCert, o.TLSKey = tc.o.TLSCA, tc.o.TLSCert, tc.o.TLSKey
		if err := o.Validate(); (err == nil) != tc.ok || (err != nil && !errors.Is(err, natsnet.ErrBadOptions)) {
			t.Errorf("%s: Validate() = %v; want ok=%v", tc.name, err, tc.ok)
		}
	}
}
