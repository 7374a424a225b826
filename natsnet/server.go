package natsnet

import (
	"fmt"
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
	User, Password string
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
}

// Server is an embedded nats-server running in this process.
type Server struct {
	srv *server.Server
	url string
}

// StartServer starts a nats-server in this process and waits until it
// accepts connections. The server logs nothing and installs no signal
// handlers. Stop it with Shutdown.
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
	if (opts.User == "") != (opts.Password == "") {
		return nil, fmt.Errorf("%w: set both of user and password, or neither", ErrBadOptions)
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
		// An embedded server serves this process's own tests and
		// simulations: no monitoring, no clustering, no JetStream.
		HTTPPort: 0,
	}
	srv, err := server.NewServer(so)
	if err != nil {
		return nil, fmt.Errorf("natsnet: starting the embedded server: %w", err)
	}
	srv.Start()
	if !srv.ReadyForConnections(opts.ReadyTimeout) {
		srv.Shutdown()
		srv.WaitForShutdown()
		return nil, fmt.Errorf("natsnet: embedded server on %s: %w", opts.Host, ErrNotReady)
	}
	addr, ok := srv.Addr().(*net.TCPAddr)
	if !ok {
		srv.Shutdown()
		srv.WaitForShutdown()
		return nil, fmt.Errorf("natsnet: embedded server: %w", ErrNotReady)
	}
	return &Server{srv: srv, url: "nats://" + net.JoinHostPort(addr.IP.String(), strconv.Itoa(addr.Port))}, nil
}

// URL is the address clients connect to, nats://host:port.
func (s *Server) URL() string { return s.url }

// Shutdown stops the server and waits until it has stopped.
func (s *Server) Shutdown() {
	s.srv.Shutdown()
	s.srv.WaitForShutdown()
}

// NumClients is the number of clients connected now.
func (s *Server) NumClients() int { return s.srv.NumClients() }
