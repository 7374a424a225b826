package natsnet_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/klring/klring/certs"
	"github.com/klring/klring/natsnet"
)

// A server with mutual TLS and a user per role: the worker's certificate
// and password get it in, but it may not publish a plan.
func ExampleStartServer_tlsAndRoles() {
	dir, err := os.MkdirTemp("", "klring-example")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer os.RemoveAll(dir)
	if _, err := certs.Generate(dir, certs.Request{Hosts: []string{"127.0.0.1"}, Clients: []string{"coordinator", "worker"}}); err != nil {
		fmt.Println(err)
		return
	}
	file := func(name string) string { return filepath.Join(dir, name) }
	srv, err := natsnet.StartServer(natsnet.ServerOptions{
		TLSCert: file("server.pem"), TLSKey: file("server-key.pem"), TLSCA: file("ca.pem"), TLSVerify: true,
		Users: []natsnet.User{
			{Name: "coordinator", Password: "c-secret", Permissions: natsnet.CoordinatorPermissions("demo")},
			{Name: "worker", Password: "w-secret", Permissions: natsnet.WorkerPermissions("demo", "*")},
		},
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer srv.Shutdown()

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	w, err := natsnet.Connect(ctx, natsnet.Options{URL: srv.URL(), User: "worker", Password: "w-secret",
		TLSCA: file("ca.pem"), TLSCert: file("worker.pem"), TLSKey: file("worker-key.pem"), Logger: quiet})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer w.Close()
	st, _ := w.NC.TLSConnectionState()
	fmt.Println("TLS:", st.HandshakeComplete)

	w.NC.Publish("klring.demo.plan", []byte("forged"))
	w.NC.Flush()
	fmt.Println("plan refused:", errors.Is(w.NC.LastError(), nats.ErrPermissionViolation))
	// Output:
	// TLS: true
	// plan refused: true
}
