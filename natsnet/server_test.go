package natsnet_test

import (
	"errors"
	"net"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/klring/klring/natsnet"
)

// TestStartServerPortInUse: a server whose client or route port is taken
// fails at once, long before its ReadyTimeout, with an error that names the
// address and says it is in use.
func TestStartServerPortInUse(t *testing.T) {
	checkGoroutines(t)
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	addr := taken.Addr().String()
	port := taken.Addr().(*net.TCPAddr).Port
	const timeout = time.Minute
	for _, tc := range []struct {
		name string
		opts natsnet.ServerOptions
		what string
	}{
		{"client port", natsnet.ServerOptions{Port: port}, "listening for clients"},
		{"route port", natsnet.ServerOptions{Cluster: &natsnet.ClusterOptions{Port: port}}, "listening for routes"},
	} {
		tc.opts.ReadyTimeout, tc.opts.Logger = timeout, quiet
		start := time.Now()
		s, err := natsnet.StartServer(tc.opts)
		if s != nil {
			s.Shutdown()
		}
		took := time.Since(start)
		if err == nil || !errors.Is(err, syscall.EADDRINUSE) || !errors.Is(err, natsnet.ErrNotReady) ||
			!strings.Contains(err.Error(), tc.what) || !strings.Contains(err.Error(), addr) {
			t.Errorf("%s: StartServer(port %s taken) = %v; want ErrNotReady, %s, %s, EADDRINUSE", tc.name, addr, err, tc.what, addr)
		}
		if took >= timeout/2 {
			t.Errorf("%s: StartServer took %v to fail; want it to fail as soon as it cannot listen", tc.name, took)
		}
		t.Logf("%s: %v (after %v)", tc.name, err, took)
	}
}
