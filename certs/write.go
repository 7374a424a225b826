package certs

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// Request says what Generate makes.
type Request struct {
	// Hosts are the server's DNS names and IP addresses: every name a
	// client puts in its NATS URL. At least one.
	Hosts []string
	// Clients are the names of the client certificates, e.g. "coordinator"
	// and "worker". Each must satisfy ValidClientName; none may repeat.
	Clients []string
	// Validity of every certificate. Default DefaultValidity.
	Validity time.Duration
	// Force replaces files that exist; without it Generate refuses to.
	Force bool
	// Route also makes a route certificate (route.pem, route-key.pem) for
	// the servers of a NATS cluster: valid for r.Hosts as a server and as a
	// client, since a server presents it on the routes it accepts and on
	// those it makes, and routes verify both ends.
	Route bool
}

// File is one file Generate writes.
type File struct {
	Path string
	Mode fs.FileMode // 0600 for keys, 0644 for certificates
}

// Files are the files Generate writes into dir for r, in order: ca.pem,
// server.pem, server-key.pem, then <client>.pem, <client>-key.pem per client,
// then route.pem and route-key.pem with r.Route.
func (r Request) Files(dir string) []File {
	names := []string{"server"}
	names = append(names, r.Clients...)
	if r.Route {
		names = append(names, "route")
	}
	files := []File{{filepath.Join(dir, "ca.pem"), 0o644}}
	for _, n := range names {
		files = append(files, File{filepath.Join(dir, n+".pem"), 0o644}, File{filepath.Join(dir, n+"-key.pem"), 0o600})
	}
	return files
}

func (r Request) validate() error {
	if len(r.Hosts) == 0 {
		return fmt.Errorf("%w: no hosts: name every DNS name or IP address clients use to reach the NATS server", ErrBadRequest)
	}
	seen := map[string]bool{}
	for _, c := range r.Clients {
		if err := ValidClientName(c); err != nil {
			return err
		}
		if seen[c] {
			return fmt.Errorf("%w: client %q named twice", ErrBadRequest, c)
		}
		seen[c] = true
	}
	if r.Validity < 0 {
		return fmt.Errorf("%w: validity %v, want > 0", ErrBadRequest, r.Validity)
	}
	if r.Route && seen["route"] {
		return fmt.Errorf("%w: a client named \"route\" and the route certificate would share route.pem", ErrBadRequest)
	}
	return nil
}

// Generate makes a new CA, a server certificate for r.Hosts, a client
// certificate per r.Clients and, with r.Route, a route certificate for
// r.Hosts, and writes them into dir (made, mode 0755, if
// missing) as listed by r.Files. It checks the request and, unless r.Force,
// that none of the files exists, before it writes anything. Each file is
// written to a temporary file of its final mode in dir and renamed into
// place, so a key is never readable by others, not even while it is being
// written. The CA's private key is not written.
func Generate(dir string, r Request) ([]File, error) {
	if r.Validity == 0 {
		r.Validity = DefaultValidity
	}
	if err := r.validate(); err != nil {
		return nil, err
	}
	files := r.Files(dir)
	if !r.Force {
		var exist []string
		for _, f := range files {
			if _, err := os.Lstat(f.Path); err == nil {
				exist = append(exist, f.Path)
			} else if !errors.Is(err, fs.ErrNotExist) {
				return nil, fmt.Errorf("certs: checking %s: %w", f.Path, err)
			}
		}
		if len(exist) > 0 {
			return nil, fmt.Errorf("%w: %s (replace with force, --force on the command line)", ErrExists, strings.Join(exist, ", "))
		}
	}

	ca, err := NewCA("klring CA", r.Validity)
	if err != nil {
		return nil, err
	}
	server, err := ca.Server(r.Hosts, r.Validity)
	if err != nil {
		return nil, err
	}
	contents := [][]byte{ca.CertPEM(), server.CertPEM, server.KeyPEM}
	for _, c := range r.Clients {
		p, err := ca.Client(c, r.Validity)
		if err != nil {
			return nil, err
		}
		contents = append(contents, p.CertPEM, p.KeyPEM)
	}
	if r.Route {
		p, err := ca.Route(r.Hosts, r.Validity)
		if err != nil {
			return nil, err
		}
		contents = append(contents, p.CertPEM, p.KeyPEM)
	}

	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("certs: making %s: %w", dir, err)
	}
	for i, f := range files {
		if err := writeFile(f, contents[i]); err != nil {
			return nil, err
		}
	}
	return files, nil
}

// writeFile writes data to f.Path with mode f.Mode through a temporary file
// in the same folder.
func writeFile(f File, data []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(f.Path), ".certs-*") // mode 0600
	if err != nil {
		return fmt.Errorf("certs: writing %s: %w", f.Path, err)
	}
	name := tmp.Name()
	fail := func(err error) error {
		tmp.Close()
		os.Remove(name)
		return fmt.Errorf("certs: writing %s: %w", f.Path, err)
	}
	if err := tmp.Chmod(f.Mode); err != nil {
		return fail(err)
	}
	if _, err := tmp.Write(data); err != nil {
		return fail(err)
	}
	if err := tmp.Sync(); err != nil {
		return fail(err)
	}
	if err := tmp.Close(); err != nil {
		return fail(err)
	}
	if err := os.Rename(name, f.Path); err != nil {
		os.Remove(name)
		return fmt.Errorf("certs: writing %s: %w", f.Path, err)
	}
	return nil
}
