package cli

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func runCoordinator(args ...string) (string, error) {
	c := Coordinator()
	var out bytes.Buffer
	c.SetOut(&out)
	c.SetErr(&out)
	c.SetArgs(args)
	err := c.ExecuteContext(context.Background())
	return out.String(), err
}

func TestCertsCommand(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "certs")
	out, err := runCoordinator("certs", "--out", dir, "--hosts", "nats,head.example.com,192.0.2.7", "--clients", "coordinator,worker,worker-b", "--days", "30")
	if err != nil {
		t.Fatalf("coordinator certs = %v\n%s", err, out)
	}
	for _, f := range []string{"ca.pem", "server.pem", "server-key.pem", "coordinator.pem", "coordinator-key.pem", "worker.pem", "worker-key.pem", "worker-b.pem", "worker-b-key.pem"} {
		p := filepath.Join(dir, f)
		st, err := os.Stat(p)
		if err != nil {
			t.Errorf("%s: %v", f, err)
			continue
		}
		want := os.FileMode(0o644)
		if strings.HasSuffix(f, "-key.pem") {
			want = 0o600
		}
		if st.Mode().Perm() != want {
			t.Errorf("%s: mode %04o; want %04o", f, st.Mode().Perm(), want)
		}
		if !strings.Contains(out, p) {
			t.Errorf("the output does not name %s:\n%s", p, out)
		}
	}
	b, _ := os.ReadFile(filepath.Join(dir, "server.pem"))
	blk, _ := pem.Decode(b)
	if blk == nil {
		t.Fatal("server.pem holds no PEM block")
	}
	srv, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(srv.DNSNames, ",") != "nats,head.example.com" || len(srv.IPAddresses) != 1 || srv.IPAddresses[0].String() != "192.0.2.7" {
		t.Errorf("server SANs = %v %v; want the --hosts", srv.DNSNames, srv.IPAddresses)
	}

	// Again: refused, naming a key; with --force: replaced.
	key := filepath.Join(dir, "server-key.pem")
	before, _ := os.ReadFile(key)
	if _, err := runCoordinator("certs", "--out", dir, "--hosts", "nats"); err == nil || !strings.Contains(err.Error(), key) || !strings.Contains(err.Error(), "--force") {
		t.Errorf("coordinator certs over existing files = %v; want a refusal naming %s and --force", err, key)
	}
	if after, _ := os.ReadFile(key); !bytes.Equal(before, after) {
		t.Error("a refused run changed server-key.pem")
	}
	if out, err := runCoordinator("certs", "--out", dir, "--hosts", "nats", "--force"); err != nil {
		t.Fatalf("coordinator certs --force = %v\n%s", err, out)
	}
	if after, _ := os.ReadFile(key); bytes.Equal(before, after) {
		t.Error("--force kept the old server-key.pem")
	}
}

func TestCertsCommandBadInput(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"certs", "--hosts", "nats"}, "--out is required"},
		{[]string{"certs", "--out", dir}, "no hosts"},
		{[]string{"certs", "--out", dir, "--hosts", "bad host"}, `"bad host"`},
		{[]string{"certs", "--out", dir, "--hosts", "nats", "--clients", "a/b"}, `"a/b"`},
		{[]string{"certs", "--out", dir, "--hosts", "nats", "--days", "0"}, "--days = 0"},
	} {
		if _, err := runCoordinator(tc.args...); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("coordinator %v = %v; want an error containing %q", tc.args, err, tc.want)
		}
	}
}
