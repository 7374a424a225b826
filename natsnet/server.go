package natsnet

import (
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// ServerOptions configure an embedded nats-server.
type ServerOptions struct {
	// Host is the address to listen on. Default "127.0.0.1".
	Host string
	// Port is the port to listen on; 0 picks a free one. Default 0.
	Port int
	// User and Password, when both set, are required of every client.
	// Exclusive with Users.
	User, Password string
	// Users, when not empty, are the only users the server admits, each
	// with its own password and permissions (CoordinatorPermissions,
	// WorkerPermissions). Exclusive with User and Password.
	Users []User
	// TLSCert and TLSKey are the PEM files of the server's certificate and
	// private key. With both set the server requires TLS of every client,
	// and URL returns a tls:// URL.
	TLSCert, TLSKey string
	// TLSCA is a PEM file of the CA certificate(s) client certificates must
	// be signed by (required by TLSVerify).
	TLSCA string
	// TLSVerify makes the server require a client certificate signed by
	// TLSCA (mutual TLS): a client without one is refused during the
	// handshake.
	TLSVerify bool
	// MaxPayload is the largest message the server accepts, in bytes.
	// Default 8 MiB (nats-server's own default is 1 MiB).
	MaxPayload int32
	// MaxPending is how many bytes the server queues for one client before
	// it cuts it off as a slow consumer. Default 256 MiB (nats-server's
	// own default is 64 MiB).
	MaxPending int64
	// ReadyTimeout bounds the wait for the server to accept connections.
	// Default 10s.
	ReadyTimeout time.Duration
	// Name is the server's name, which its clients read from the INFO it
	// sends them (nats.Conn.ConnectedServerName) and which klring's ring
	// placement plans with. Default: nats-server's own (its ID).
	Name string
	// Cluster, when not nil, joins the server to a cluster of servers
	// joined by routes (ClusterOptions).
	Cluster *ClusterOptions
	// Logger receives the server's warnings and errors at WARN: a route
	// refused by the other server (LogRouteRefused) or by this one
	// (LogRouteAuth), a route that cannot connect (LogRouteConnect), a
	// failed route TLS handshake, a refused client; the first of each kind,
	// then at most one every 10s with the number left out. Its notices go
	// at DEBUG. Default slog.Default().
	Logger *slog.Logger
}

// User is one user of an embedded server.
type User struct {
	Name, Password string
	// Permissions restrict what the user may publish and subscribe to;
	// nil: everything.
	Permissions *Permissions
}

// Permissions say which subjects a user may publish and subscribe to.
type Permissions struct {
	Publish, Subscribe SubjectRules
	// Responses lets the user publish one reply to each request it
	// received, within two minutes, to the request's reply subject even
	// though Publish does not allow it (nats-server's allow_responses): a
	// service replies to its clients' inboxes, and no one else may.
	Responses bool
}

// SubjectRules allow and deny subjects; NATS wildcards (* for one token,
// > for the rest) are allowed. A subject must match Allow (or Allow is
// empty) and match no Deny. Empty Allow and Deny allow everything.
type SubjectRules struct {
	Allow, Deny []string
}

// CoordinatorPermissions are the permissions of a coordinator of job ("*"
// for any job): it subscribes to what workers send (hello, hb, done, seg,
// snap, resid, seed), publishes plans, and answers hello (welcome), snap
// (snapshot chunks) and seed (error-feedback seed chunks) requests through
// Responses. It also asks, and answers, on coord whether a coordinator
// serves the job (the reply comes to an inbox). See docs/protocol.md.
func CoordinatorPermissions(job string) *Permissions {
	p := "klring." + job + "."
	return &Permissions{
		Publish:   SubjectRules{Allow: []string{p + "plan", p + "coord"}},
		Subscribe: SubjectRules{Allow: []string{p + "hello", p + "hb", p + "done", p + "seg", p + "snap", p + "resid", p + "seed", p + "coord", "_INBOX.>"}},
		Responses: true,
	}
}

// WorkerPermissions are the permissions of worker name ("*" for any
// worker) of job ("*" for any job): it publishes hello, snap and seed
// requests, heartbeats, reports, segments and error-feedback residuals, and
// ring messages to any worker; it
// subscribes to plans, its own ring subject and the replies to its
// requests (_INBOX.>). It may not publish plans or to any inbox, so it can
// forge neither a plan nor a welcome nor a snapshot chunk.
func WorkerPermissions(job, name string) *Permissions {
	p := "klring." + job + "."
	return &Permissions{
		Publish:   SubjectRules{Allow: []string{p + "hello", p + "hb", p + "done", p + "seg", p + "snap", p + "resid", p + "seed", p + "ring.*"}},
		Subscribe: SubjectRules{Allow: []string{p + "plan", p + "ring." + name, "_INBOX.>"}},
	}
}

func (p *Permissions) server() *server.Permissions {
	if p == nil {
		return nil
	}
	rules := func(r SubjectRules) *server.SubjectPermission {
		if len(r.Allow) == 0 && len(r.Deny) == 0 {
			return nil
		}
		return &server.SubjectPermission{Allow: append([]string(nil), r.Allow...), Deny: append([]string(nil), r.Deny...)}
	}
	sp := &server.Permissions{Publish: rules(p.Publish), Subscribe: rules(p.Subscribe)}
	if p.Responses {
		sp.Response = &server.ResponsePermission{MaxMsgs: server.DEFAULT_ALLOW_RESPONSE_MAX_MSGS, Expires: server.DEFAULT_ALLOW_RESPONSE_EXPIRATION}
	}
	return sp
}

// Server is an embedded nats-server running in this process.
type Server struct {
	srv    *server.Server
	url    string
	routes []string
}

// StartServer starts a nats-server in this process and waits until it
// accepts connections. The server logs to opts.Logger (its warnings and
// errors, rate-limited) and installs no signal handlers. When it cannot
// start, the error wraps ErrNotReady and what failed, as the *net.OpError of
// a port it cannot listen on ("listen tcp 127.0.0.1:6222: bind: address
// already in use"), returned as soon as the server fails. Stop it with
// Shutdown.
func StartServer(opts ServerOptions) (*Server, error) {
	if opts.Host == "" {
		opts.Host = "127.0.0.1"
	}
	if opts.MaxPayload == 0 {
		opts.MaxPayload = 8 << 20
	}
	if opts.MaxPending == 0 {
		opts.MaxPending = 256 << 20
	}
	if opts.ReadyTimeout == 0 {
		opts.ReadyTimeout = 10 * time.Second
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if (opts.User == "") != (opts.Password == "") {
		return nil, fmt.Errorf("%w: set both of user and password, or neither", ErrBadOptions)
	}
	if opts.User != "" && len(opts.Users) > 0 {
		return nil, fmt.Errorf("%w: set User/Password or Users, not both", ErrBadOptions)
	}
	port := opts.Port
	if port == 0 {
		port = server.RANDOM_PORT
	}
	so := &server.Options{
		Host:       opts.Host,
		Port:       port,
		NoLog:      true,
		NoSigs:     true,
		MaxPayload: opts.MaxPayload,
		MaxPending: opts.MaxPending,
		Username:   opts.User,
		Password:   opts.Password,
		ServerName: opts.Name,
		// An embedded server serves this process's own tests, simulations
		// and a node's worker: no monitoring, no JetStream.
		HTTPPort: 0,
		// A route that cannot connect is retried every second; report
		// every 10th failure of the first connection (nats-server's
		// default is every 3600th), serverLog every 10s at most.
		ConnectErrorReports: 10,
	}
	seen := map[string]bool{}
	for _, u := range opts.Users {
		if u.Name == "" || u.Password == "" {
			return nil, fmt.Errorf("%w: user %q: set both of name and password", ErrBadOptions, u.Name)
		}
		if seen[u.Name] {
			return nil, fmt.Errorf("%w: user %q named twice", ErrBadOptions, u.Name)
		}
		seen[u.Name] = true
		so.Users = append(so.Users, &server.User{Username: u.Name, Password: u.Password, Permissions: u.Permissions.server()})
	}
	scheme := "nats://"
	tc, err := opts.tlsConfig()
	if err != nil {
		return nil, err
	}
	if tc != nil {
		so.TLSConfig, so.TLSVerify, so.TLSTimeout = tc, opts.TLSVerify, 2
		scheme = "tls://"
	}
	if opts.Cluster != nil {
		if err := opts.Cluster.apply(so, opts); err != nil {
			return nil, err
		}
	}
	where := listenAddrs(so)
	var routes []string
	for _, u := range so.Routes {
		routes = append(routes, RedactURL(u.String()))
	}
	srv, err := server.NewServer(so)
	if err != nil {
		return nil, fmt.Errorf("natsnet: starting the embedded server: %w", err)
	}
	// NoLog keeps nats-server from installing its own logger (stderr);
	// this one goes to slog.
	sl := newServerLog(opts.Logger.With("nats_server", srv.Name()), logEvery, time.Now)
	srv.SetLoggerV2(sl, false, false, false)
	srv.Start()
	if err := waitReady(srv, sl, opts.ReadyTimeout); err != nil {
		srv.Shutdown()
		srv.WaitForShutdown()
		return nil, fmt.Errorf("%w: embedded server %s: %w", ErrNotReady, where, err)
	}
	addr, ok := srv.Addr().(*net.TCPAddr)
	if !ok {
		srv.Shutdown()
		srv.WaitForShutdown()
		return nil, fmt.Errorf("%w: embedded server %s: no TCP listener", ErrNotReady, where)
	}
	return &Server{srv: srv, url: scheme + net.JoinHostPort(addr.IP.String(), strconv.Itoa(addr.Port)), routes: routes}, nil
}

// waitReady waits until srv accepts connections (and routes, in a cluster),
// at most d, and returns at once the error that made it fail (a port it
// cannot listen on), which nats-server only logs.
func waitReady(srv *server.Server, sl *serverLog, d time.Duration) error {
	deadline := time.Now().Add(d)
	for {
		if err := sl.failed(); err != nil {
			return err
		}
		// ReadyForConnections polls every 25ms for up to its argument.
		if srv.ReadyForConnections(50 * time.Millisecond) {
			return sl.start()
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not accepting connections after %v", d)
		}
	}
}

// listenAddrs says where so listens, for errors: "(clients on host:port,
// routes on host:port)" (port 0: any free one).
func listenAddrs(so *server.Options) string {
	port := func(p int) string {
		if p == server.RANDOM_PORT {
			p = 0
		}
		return strconv.Itoa(p)
	}
	s := "(clients on " + net.JoinHostPort(so.Host, port(so.Port))
	if so.Cluster.Port != 0 {
		s += ", routes on " + net.JoinHostPort(so.Cluster.Host, port(so.Cluster.Port))
	}
	return s + ")"
}

// tlsConfig reads the TLS files of o into a server configuration; nil when
// o asks for no TLS.
func (o ServerOptions) tlsConfig() (*tls.Config, error) {
	switch {
	case (o.TLSCert == "") != (o.TLSKey == ""):
		return nil, fmt.Errorf("%w: set both of TLSCert and TLSKey, or neither", ErrBadOptions)
	case o.TLSCert == "" && (o.TLSCA != "" || o.TLSVerify):
		return nil, fmt.Errorf("%w: TLSCA and TLSVerify need TLSCert and TLSKey", ErrBadOptions)
	case o.TLSVerify && o.TLSCA == "":
		return nil, fmt.Errorf("%w: TLSVerify needs TLSCA, the CA of the client certificates", ErrBadOptions)
	case o.TLSCert == "":
		return nil, nil
	}
	cert, err := loadKeyPair(o.TLSCert, o.TLSKey)
	if err != nil {
		return nil, err
	}
	tc := &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{cert}}
	if o.TLSCA != "" {
		if tc.ClientCAs, err = loadCAs(o.TLSCA); err != nil {
			return nil, err
		}
	}
	if o.TLSVerify {
		tc.ClientAuth = tls.RequireAndVerifyClientCert
	}
	return tc, nil
}

// URL is the address clients connect to: nats://host:port, or
// tls://host:port when the server requires TLS.
func (s *Server) URL() string { return s.url }

// Shutdown stops the server and waits until it has stopped.
func (s *Server) Shutdown() {
	s.srv.Shutdown()
	s.srv.WaitForShutdown()
}

// NumClients is the number of clients connected now.
func (s *Server) NumClients() int { return s.srv.NumClients() }
