package certs_test

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/klring/klring/certs"
)

// Generate writes a CA, a server certificate and client certificates.
func ExampleGenerate() {
	dir, err := os.MkdirTemp("", "klring-certs")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer os.RemoveAll(dir)
	files, err := certs.Generate(dir, certs.Request{Hosts: []string{"nats", "head.example.com", "192.0.2.7"}, Clients: []string{"coordinator", "worker"}})
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, f := range files {
		fmt.Printf("%-20s %04o\n", filepath.Base(f.Path), f.Mode)
	}
	// Output:
	// ca.pem               0644
	// server.pem           0644
	// server-key.pem       0600
	// coordinator.pem      0644
	// coordinator-key.pem  0600
	// worker.pem           0644
	// worker-key.pem       0600
}
