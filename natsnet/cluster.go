package natsnet

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// ClusterOptions join an embedded server to a NATS cluster: servers joined
// by routes, over which each server forwards to the others what their
// clients subscribed to. With one server per node and each worker connected
// to the server of its node, a ring message crosses one route, between the
// servers of two neighbours, instead of going through one server that every
// flow shares.
type ClusterOptions struct {
	// Name names the cluster: every server of one cluster has the same.
	// Default "klring".
	Name string
	// Host and Port are where the server listens for routes from the
	// other servers. Default "127.0.0.1" and a free port (RouteURL says
	// which).
	Host string
	Port int
	// Routes are route URLs of other servers of the cluster,
	// nats-route://[user:password@]host:port; the server connects to them
	// (retrying while they are down) and learns the rest of the cluster
	// from them. A server with none waits for the others to connect.
	Routes []string
	// User and Password, when both set, are required of every route that
	// connects to this server, and presented on the routes it connects to
	// whose URL carries no credentials.
	User, Password string
	// PoolSize is the number of route connections between two servers.
	// Default 1: every ring message between two servers keeps to one
	// connection (nats-server's own default is 3).
	PoolSize int
	// TLSCert and TLSKey are the PEM files of the route certificate
	// (`coordinator certs --routes`: route.pem, valid for the servers' hosts
	// as a server and as a client). With them routes use mutual TLS: each
	// end verifies the other's route certificate against the server's
	// TLSCA, and the dialing end also the host of the route URL. Without
	// them routes are plain TCP (authenticated by User and Password).
	TLSCert, TLSKey string
}

// apply sets the cluster options of so (opts gives the CA of route TLS).
func (c *ClusterOptions) apply(so *server.Options, opts ServerOptions) error {
	switch {
	case (c.User == "") != (c.Password == ""):
		return fmt.Errorf("%w: cluster: set both of user and password, or neither", ErrBadOptions)
	case (c.TLSCert == "") != (c.TLSKey == ""):
		return fmt.Errorf("%w: cluster: set both of the route certificate and its key, or neither", ErrBadOptions)
	case c.TLSCert != "" && opts.TLSCA == "":
		return fmt.Errorf("%w: cluster: route TLS needs TLSCA, the CA of the route certificates", ErrBadOptions)
	}
	name := c.Name
	if name == "" {
		name = "klring"
	}
	host := c.Host
	if host == "" {
		host = "127.0.0.1"
	}
	port := c.Port
	if port == 0 {
		port = server.RANDOM_PORT
	}
	pool := c.PoolSize
	if pool == 0 {
		pool = 1
	}
	so.Cluster = server.ClusterOpts{Name: name, Host: host, Port: port, Username: c.User, Password: c.Password,
		PoolSize: pool, Compression: server.CompressionOpts{Mode: server.CompressionOff}}
	for _, r := range c.Routes {
		r = strings.TrimSpace(r)
		if r == "" {
			continue
		}
		u, err := url.Parse(r)
		if err != nil || u.Host == "" || u.Scheme != "nats-route" && u.Scheme != "nats" && u.Scheme != "tls" {
			return fmt.Errorf("%w: cluster route %q: want nats-route://[user:password@]host:port", ErrBadOptions, RedactURL(r))
		}
		if u.User == nil && c.User != "" {
			u.User = url.UserPassword(c.User, c.Password)
		}
		so.Routes = append(so.Routes, u)
	}
	if c.TLSCert != "" {
		cert, err := loadKeyPair(c.TLSCert, c.TLSKey)
		if err != nil {
			return err
		}
		ca, err := loadCAs(opts.TLSCA)
		if err != nil {
			return err
		}
		so.Cluster.TLSConfig = &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{cert},
			RootCAs: ca, ClientCAs: ca, ClientAuth: tls.RequireAndVerifyClientCert}
		so.Cluster.TLSTimeout = 2
	}
	return nil
}

// Name is the server's name, as its clients read it in INFO.
func (s *Server) Name() string { return s.srv.Name() }

// RouteURL is the address other servers route to, nats-route://host:port
// (no credentials), or "" when the server is not in a cluster.
func (s *Server) RouteURL() string {
	a := s.srv.ClusterAddr()
	if a == nil {
		return ""
	}
	return "nats-route://" + net.JoinHostPort(a.IP.String(), strconv.Itoa(a.Port))
}

// Routes are the route URLs the server connects to (ClusterOptions.Routes,
// credentials redacted): the servers it was told to join, not where it
// listens for routes (RouteURL). Nil when it routes to none.
func (s *Server) Routes() []string { return append([]string(nil), s.routes...) }

// Peers is the number of other servers of the cluster this server has a
// route to now.
func (s *Server) Peers() int { return s.srv.NumRemotes() }

// HasInterest reports whether the server knows a subscription to subject,
// of one of its own clients or, through a route, of another server's.
func (s *Server) HasInterest(subject string) bool {
	return s.srv.GlobalAccount().SubscriptionInterest(subject)
}

// WaitPeers waits until the server has routes to n other servers, polling
// every 5ms, or ctx ends.
func (s *Server) WaitPeers(ctx context.Context, n int) error {
	return poll(ctx, func() bool { return s.Peers() >= n }, func() error {
		return fmt.Errorf("natsnet: server %s has routes to %d of %d servers: %w", s.Name(), s.Peers(), n, ctx.Err())
	})
}

// WaitInterest waits until every one of servers knows a subscription to
// subject (it has propagated over the routes), polling every 5ms, or ctx
// ends. A mailbox made on one server of a cluster hears messages published
// on another only from then on.
func WaitInterest(ctx context.Context, subject string, servers ...*Server) error {
	for _, s := range servers {
		if err := poll(ctx, func() bool { return s.HasInterest(subject) }, func() error {
			return fmt.Errorf("natsnet: server %s does not know of a subscription to %s: %w", s.Name(), subject, ctx.Err())
		}); err != nil {
			return err
		}
	}
	return nil
}

func poll(ctx context.Context, ok func() bool, fail func() error) error {
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for !ok() {
		select {
		case <-ctx.Done():
			return fail()
		case <-tick.C:
		}
	}
	return nil
}

// StartCluster starts k embedded servers in this process, joined by routes
// into one cluster, each with opts (Cluster's Routes and Port are chosen
// here: server 0 listens, the others route to it and learn of each other),
// named opts.Name-0 ... opts.Name-(k-1) ("s0" ... when opts.Name is empty),
// and waits until every server has a route to every other (within
// opts.ReadyTimeout). On failure it shuts down what it started.
func StartCluster(k int, opts ServerOptions) ([]*Server, error) {
	if k < 1 {
		return nil, fmt.Errorf("%w: a cluster of %d servers", ErrBadOptions, k)
	}
	co := ClusterOptions{}
	if opts.Cluster != nil {
		co = *opts.Cluster
	}
	co.Port, co.Routes = 0, nil
	prefix := opts.Name
	if prefix == "" {
		prefix = "s"
	} else {
		prefix += "-"
	}
	var out []*Server
	stop := func() {
		for _, s := range out {
			s.Shutdown()
		}
	}
	for i := range k {
		o := opts
		o.Name = prefix + strconv.Itoa(i)
		c := co
		if i > 0 {
			c.Routes = []string{out[0].RouteURL()}
		}
		o.Cluster = &c
		s, err := StartServer(o)
		if err != nil {
			stop()
			return nil, fmt.Errorf("natsnet: cluster server %d of %d: %w", i, k, err)
		}
		out = append(out, s)
	}
	wait := opts.ReadyTimeout
	if wait == 0 {
		wait = 10 * time.Second
	}
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	for _, s := range out {
		if err := s.WaitPeers(ctx, k-1); err != nil {
			stop()
			return nil, err
		}
	}
	return out, nil
}

// URLs is the comma-separated client URL list of servers that a client of
// the i-th should use: its own server first (a client prefers the first),
// then the others in order, to which it fails over.
func URLs(servers []*Server, i int) string {
	urls := make([]string, 0, len(servers))
	for j := range servers {
		urls = append(urls, servers[(i+j)%len(servers)].URL())
	}
	return strings.Join(urls, ",")
}
