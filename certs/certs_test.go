package certs_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/klring/klring/certs"
	"github.com/klring/klring/natsnet"
)

func readCert(t *testing.T, path string) *x509.Certificate {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	blk, rest := pem.Decode(b)
	if blk == nil || blk.Type != "CERTIFICATE" || len(strings.TrimSpace(string(rest))) != 0 {
		t.Fatalf("%s: want exactly one CERTIFICATE block", path)
	}
	c, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return c
}

func generate(t *testing.T, r certs.Request) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "certs")
	if _, err := certs.Generate(dir, r); err != nil {
		t.Fatalf("Generate(%+v) = %v", r, err)
	}
	return dir
}

func TestChainVerifies(t *testing.T) {
	dir := generate(t, certs.Request{Hosts: []string{"nats", "head.example.com", "203.0.113.10", "::1"}, Clients: []string{"coordinator", "worker"}})
	ca := readCert(t, filepath.Join(dir, "ca.pem"))
	if !ca.IsCA || ca.MaxPathLen != 0 || !ca.MaxPathLenZero || ca.KeyUsage&x509.KeyUsageCertSign == 0 {
		t.Errorf("CA: IsCA %v, MaxPathLen %d (zero %v), KeyUsage %b; want a CA that signs end certificates only", ca.IsCA, ca.MaxPathLen, ca.MaxPathLenZero, ca.KeyUsage)
	}
	roots := x509.NewCertPool()
	roots.AddCert(ca)

	srv := readCert(t, filepath.Join(dir, "server.pem"))
	for _, h := range []string{"nats", "head.example.com", "203.0.113.10", "::1"} {
		if _, err := srv.Verify(x509.VerifyOptions{Roots: roots, DNSName: h, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err != nil {
			t.Errorf("server certificate for %s: Verify = %v", h, err)
		}
	}
	if !slices.Equal(srv.DNSNames, []string{"nats", "head.example.com"}) {
		t.Errorf("server DNS SANs = %v; want [nats head.example.com]", srv.DNSNames)
	}
	if len(srv.IPAddresses) != 2 || !srv.IPAddresses[0].Equal(net.ParseIP("203.0.113.10")) || !srv.IPAddresses[1].Equal(net.IPv6loopback) {
		t.Errorf("server IP SANs = %v; want [203.0.113.10 ::1]", srv.IPAddresses)
	}
	if err := srv.VerifyHostname("other.example.com"); err == nil {
		t.Error("server certificate verifies for other.example.com; want only its hosts")
	}
	if _, err := srv.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err == nil {
		t.Error("the server certificate verifies as a client certificate")
	}

	for _, c := range []string{"coordinator", "worker"} {
		cert := readCert(t, filepath.Join(dir, c+".pem"))
		if cert.Subject.CommonName != c {
			t.Errorf("%s.pem: common name %q", c, cert.Subject.CommonName)
		}
		if _, err := cert.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
			t.Errorf("%s.pem: Verify as a client = %v", c, err)
		}
		if _, err := cert.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err == nil {
			t.Errorf("%s.pem verifies as a server certificate", c)
		}
		pair, err := tls.LoadX509KeyPair(filepath.Join(dir, c+".pem"), filepath.Join(dir, c+"-key.pem"))
		if err != nil {
			t.Errorf("%s: the key does not match the certificate: %v", c, err)
			continue
		}
		if k, ok := pair.PrivateKey.(*ecdsa.PrivateKey); !ok || k.Curve != elliptic.P256() {
			t.Errorf("%s-key.pem: %T; want an ECDSA P-256 key", c, pair.PrivateKey)
		}
	}

	// A certificate of another set does not verify against this CA.
	other := readCert(t, filepath.Join(generate(t, certs.Request{Hosts: []string{"nats"}}), "server.pem"))
	if _, err := other.Verify(x509.VerifyOptions{Roots: roots, DNSName: "nats"}); err == nil {
		t.Error("a server certificate of another CA verifies")
	}
}

func TestValidity(t *testing.T) {
	dir := generate(t, certs.Request{Hosts: []string{"nats"}, Validity: 48 * time.Hour})
	for _, f := range []string{"ca.pem", "server.pem"} {
		c := readCert(t, filepath.Join(dir, f))
		if d := time.Until(c.NotAfter); d < 47*time.Hour || d > 48*time.Hour {
			t.Errorf("%s: valid for %v more; want 48h", f, d)
		}
		if !c.NotBefore.Before(time.Now().Add(-50 * time.Minute)) {
			t.Errorf("%s: NotBefore %v; want an hour back, against clock skew", f, c.NotBefore)
		}
	}
}

func TestKeyModesAndNoOverwrite(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "certs")
	r := certs.Request{Hosts: []string{"nats"}, Clients: []string{"coordinator", "worker"}}
	files, err := certs.Generate(dir, r)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, f := range files {
		names = append(names, filepath.Base(f.Path))
		st, err := os.Stat(f.Path)
		if err != nil {
			t.Fatal(err)
		}
		want := os.FileMode(0o644)
		if strings.HasSuffix(f.Path, "-key.pem") {
			want = 0o600
		}
		if st.Mode().Perm() != want || f.Mode != want {
			t.Errorf("%s: mode %04o (reported %04o); want %04o", f.Path, st.Mode().Perm(), f.Mode, want)
		}
	}
	if want := []string{"ca.pem", "server.pem", "server-key.pem", "coordinator.pem", "coordinator-key.pem", "worker.pem", "worker-key.pem"}; !slices.Equal(names, want) {
		t.Errorf("files = %v; want %v", names, want)
	}
	left, _ := filepath.Glob(filepath.Join(dir, ".certs-*"))
	if len(left) != 0 {
		t.Errorf("temporary files left: %v", left)
	}

	key := filepath.Join(dir, "worker-key.pem")
	before, _ := os.ReadFile(key)
	_, err = certs.Generate(dir, r)
	if !errors.Is(err, certs.ErrExists) || !strings.Contains(err.Error(), key) {
		t.Errorf("Generate again = %v; want %v naming %s", err, certs.ErrExists, key)
	}
	// One existing key is enough to refuse, and nothing is written.
	dir2 := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir2, "worker-key.pem"), []byte("precious"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := certs.Generate(dir2, r); !errors.Is(err, certs.ErrExists) {
		t.Errorf("Generate over an existing worker-key.pem = %v; want %v", err, certs.ErrExists)
	}
	if _, err := os.Stat(filepath.Join(dir2, "ca.pem")); err == nil {
		t.Error("Generate refused but wrote ca.pem")
	}

	r.Force = true
	if _, err := certs.Generate(dir, r); err != nil {
		t.Fatalf("Generate with Force = %v", err)
	}
	after, _ := os.ReadFile(key)
	if string(after) == string(before) {
		t.Error("Generate with Force kept the old key")
	}
	if st, _ := os.Stat(key); st.Mode().Perm() != 0o600 {
		t.Errorf("replaced key: mode %04o; want 0600", st.Mode().Perm())
	}
}

func TestBadRequests(t *testing.T) {
	for _, r := range []certs.Request{
		{},
		{Hosts: []string{""}},
		{Hosts: []string{"bad host"}},
		{Hosts: []string{"a..b"}},
		{Hosts: []string{"-a.b"}},
		{Hosts: []string{"nats"}, Clients: []string{"ca"}},
		{Hosts: []string{"nats"}, Clients: []string{"server"}},
		{Hosts: []string{"nats"}, Clients: []string{"../x"}},
		{Hosts: []string{"nats"}, Clients: []string{"w", "w"}},
		{Hosts: []string{"nats"}, Validity: -time.Hour},
	} {
		dir := t.TempDir()
		if _, err := certs.Generate(dir, r); !errors.Is(err, certs.ErrBadRequest) {
			t.Errorf("Generate(%+v) = %v; want %v", r, err, certs.ErrBadRequest)
		}
		if left, _ := os.ReadDir(dir); len(left) != 0 {
			t.Errorf("Generate(%+v) refused but wrote %d files", r, len(left))
		}
	}
}

// An embedded NATS server and a client talk over mutual TLS with a
// generated set.
func TestServerAndClientTalk(t *testing.T) {
	dir := generate(t, certs.Request{Hosts: []string{"localhost", "127.0.0.1"}, Clients: []string{"coordinator", "worker"}})
	file := func(n string) string { return filepath.Join(dir, n) }
	srv, err := natsnet.StartServer(natsnet.ServerOptions{TLSCert: file("server.pem"), TLSKey: file("server-key.pem"), TLSCA: file("ca.pem"), TLSVerify: true})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Shutdown()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	conns := map[string]*natsnet.Conn{}
	for _, role := range []string{"coordinator", "worker"} {
		c, err := natsnet.Connect(ctx, natsnet.Options{URL: srv.URL(), TLSCA: file("ca.pem"), TLSCert: file(role + ".pem"), TLSKey: file(role + "-key.pem"), Logger: quiet})
		if err != nil {
			t.Fatalf("Connect(%s) = %v", role, err)
		}
		defer c.Close()
		conns[role] = c
	}
	sub, err := conns["worker"].NC.SubscribeSync("klring.certs.plan")
	if err != nil {
		t.Fatal(err)
	}
	if err := conns["worker"].NC.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := conns["coordinator"].NC.Publish("klring.certs.plan", []byte("hello over mTLS")); err != nil {
		t.Fatal(err)
	}
	m, err := sub.NextMsg(10 * time.Second)
	if err != nil || string(m.Data) != "hello over mTLS" {
		t.Fatalf("NextMsg = %v, %v", m, err)
	}
	st, err := conns["worker"].NC.TLSConnectionState()
	if err != nil || len(st.VerifiedChains) == 0 {
		t.Errorf("worker's TLS state: %d verified chains, %v; want the server verified against ca.pem", len(st.VerifiedChains), err)
	}
}

// The route certificate verifies for every host both as a server's and as
// a client's certificate (routes verify both ends); it is written only on
// request, after the others.
func TestRouteCertificate(t *testing.T) {
	dir := t.TempDir()
	hosts := []string{"nats-a", "nats-b", "10.0.0.3"}
	files, err := certs.Generate(dir, certs.Request{Hosts: hosts, Clients: []string{"worker"}, Route: true})
	if err != nil {
		t.Fatal(err)
	}
	if n := len(files); n != 7 || filepath.Base(files[5].Path) != "route.pem" || filepath.Base(files[6].Path) != "route-key.pem" || files[6].Mode != 0o600 {
		t.Fatalf("Generate(Route) wrote %v; want ca, server, worker, then route.pem and route-key.pem (0600)", files)
	}
	roots := x509.NewCertPool()
	caPEM, _ := os.ReadFile(filepath.Join(dir, "ca.pem"))
	roots.AppendCertsFromPEM(caPEM)
	b, _ := os.ReadFile(filepath.Join(dir, "route.pem"))
	blk, _ := pem.Decode(b)
	cert, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range hosts {
		for _, u := range []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth} {
			if _, err := cert.Verify(x509.VerifyOptions{Roots: roots, DNSName: h, KeyUsages: []x509.ExtKeyUsage{u}}); err != nil {
				t.Errorf("route.pem for %s, usage %v: Verify = %v", h, u, err)
			}
		}
	}
	if _, err := certs.Generate(t.TempDir(), certs.Request{Hosts: hosts, Clients: []string{"route"}, Route: true}); !errors.Is(err, certs.ErrBadRequest) {
		t.Errorf("Generate(a client named route, Route) = %v; want %v", err, certs.ErrBadRequest)
	}
	if files, err := certs.Generate(t.TempDir(), certs.Request{Hosts: hosts}); err != nil || len(files) != 3 {
		t.Errorf("Generate without Route wrote %d files (%v); want 3", len(files), err)
	}
}
