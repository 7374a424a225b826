package natsnet

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/klring/klring/allreduce"
)

// Errors of the package.
var (
	ErrBadOptions   = errors.New("natsnet: invalid options")
	ErrNotReady     = errors.New("natsnet: server not ready")
	ErrPayloadLimit = errors.New("natsnet: chunk larger than the server's max payload")
	// ErrTLSFile: a certificate, key or CA file cannot be read or parsed.
	ErrTLSFile = errors.New("natsnet: unusable TLS file")
	// ErrTLS: the TLS handshake failed or the two ends disagree about TLS.
	// Connect does not retry it.
	ErrTLS = errors.New("natsnet: TLS failed")
)

// Options configure a client connection.
type Options struct {
	// URL of the server(s), comma separated. Default nats.DefaultURL. Each
	// is [scheme://][user:password@]host[:port], scheme one of nats, tls,
	// ws and wss (default nats, port default 4222, 80 for ws, 443 for
	// wss); websocket and other servers do not mix (ValidateURL). The
	// client connects to the first that answers, in the order given (the
	// nearest server of a cluster first), and reconnects to the others in
	// that order when it loses its server. A tls:// URL requires TLS; so
	// does any TLS field below. Credentials in
	// the URL (nats://user:password@host) work but are never logged or put
	// in errors (RedactURL).
	URL string
	// User and Password, or Token, or the credentials file Creds (a JWT and
	// nkey seed) authenticate the client. Default none.
	User, Password, Token, Creds string
	// TLSCA is a PEM file of the CA certificate(s) the server's certificate
	// must be signed by; empty: the system's roots. Setting it requires TLS.
	TLSCA string
	// TLSCert and TLSKey are the PEM files of the client certificate and
	// its private key, presented to a server that asks for one (mutual
	// TLS). Set both or neither; setting them requires TLS.
	TLSCert, TLSKey string
	// Name names the connection on the server. Default "klring".
	Name string
	// ChunkBytes is the largest message the connection will publish;
	// Connect fails if the server's MaxPayload is smaller. Default 1 MiB.
	ChunkBytes int
	// PartsInFlight is how many messages of ChunkBytes a ring subscription
	// may hold before nats.go drops messages as a slow consumer: its pending
	// limits are PartsInFlight messages and PartsInFlight*ChunkBytes bytes.
	// Size it from allreduce.MaxMessages for the largest vector. Default 1024.
	PartsInFlight int
	// PingInterval is the interval of the client's pings; two unanswered
	// pings mark the connection stale. Default 1s.
	PingInterval time.Duration
	// ReconnectWait is the pause between reconnect attempts; the client
	// reconnects forever. Default 250ms.
	ReconnectWait time.Duration
	// Logger receives connection events. Default slog.Default().
	Logger *slog.Logger
	// InProcess, if not nil, is an embedded server of this process that
	// the client talks to through in-memory pipes (nats.go's in-process
	// connection) instead of a TCP socket, reconnects included; URL still
	// names it in logs. The server's users, permissions and limits apply
	// as on TCP, but a refused user shows as a closed pipe after the
	// server's auth timeout rather than as an authorization error, and is
	// retried until ctx ends (simulation mode, its only user, makes its own
	// credentials).
	InProcess *Server
}

// DefaultOptions returns the defaults documented on Options.
func DefaultOptions() Options {
	return Options{URL: nats.DefaultURL, Name: "klring", ChunkBytes: 1 << 20, PartsInFlight: 1024,
		PingInterval: time.Second, ReconnectWait: 250 * time.Millisecond}
}

// Validate checks every field and names the one that is wrong.
func (o Options) Validate() error {
	if o.URL == "" {
		return fmt.Errorf("%w: URL is empty", ErrBadOptions)
	}
	if err := ValidateURL(o.URL); err != nil {
		return err
	}
	switch {
	case o.ChunkBytes < allreduce.MinChunkBytes || o.ChunkBytes > allreduce.MaxChunkBytes:
		return fmt.Errorf("%w: ChunkBytes = %d, want [%d, %d]", ErrBadOptions, o.ChunkBytes, allreduce.MinChunkBytes, allreduce.MaxChunkBytes)
	case o.PartsInFlight < 1:
		return fmt.Errorf("%w: PartsInFlight = %d, want >= 1", ErrBadOptions, o.PartsInFlight)
	case o.PingInterval <= 0:
		return fmt.Errorf("%w: PingInterval = %v, want > 0", ErrBadOptions, o.PingInterval)
	case o.ReconnectWait <= 0:
		return fmt.Errorf("%w: ReconnectWait = %v, want > 0", ErrBadOptions, o.ReconnectWait)
	case (o.User == "") != (o.Password == ""):
		return fmt.Errorf("%w: set both of User and Password, or neither", ErrBadOptions)
	case (o.User != "") && (o.Token != "" || o.Creds != "") || o.Token != "" && o.Creds != "":
		return fmt.Errorf("%w: set one of User/Password, Token and Creds", ErrBadOptions)
	case (o.TLSCert == "") != (o.TLSKey == ""):
		return fmt.Errorf("%w: set both of TLSCert and TLSKey, or neither", ErrBadOptions)
	}
	return nil
}

// fill replaces zero fields by their defaults.
func (o Options) fill() Options {
	d := DefaultOptions()
	if o.URL == "" {
		o.URL = d.URL
	}
	if o.Name == "" {
		o.Name = d.Name
	}
	if o.ChunkBytes == 0 {
		o.ChunkBytes = d.ChunkBytes
	}
	if o.PartsInFlight == 0 {
		o.PartsInFlight = d.PartsInFlight
	}
	if o.PingInterval == 0 {
		o.PingInterval = d.PingInterval
	}
	if o.ReconnectWait == 0 {
		o.ReconnectWait = d.ReconnectWait
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return o
}

// Conn is a NATS connection set up for klring: it reconnects forever, pings
// every PingInterval, does not receive its own messages (NoEcho), and counts
// the asynchronous errors nats.go reports, slow-consumer drops in particular.
type Conn struct {
	// NC is the underlying connection, for the subjects of the step
	// protocol. Do not close it directly: use Close.
	NC   *nats.Conn
	opts Options
	log  *slog.Logger

	slow      atomic.Uint64
	asyncErrs atomic.Uint64
	denied    atomic.Uint64

	reconnected, disconnected chan struct{}
}

// Connect connects to opts.URL, retrying until ctx ends while the server
// cannot be reached, and checks that opts.ChunkBytes fits in the server's
// MaxPayload. It logs the failed attempts at WARN, with the URL, the number
// of attempts and the last error, on the first one and then every
// connectWarnEvery (10s), and at DEBUG in between. Invalid options (a URL
// that cannot be parsed among them: Validate), an authorization error, a
// TLS file that cannot be read, and a TLS failure (the server's certificate
// is not trusted, the server refuses the client's certificate, one end
// requires TLS and the other does not offer it) end it at once, with an
// error that says which. Zero fields of opts take their defaults. Errors
// and logs show the URL without credentials.
func Connect(ctx context.Context, opts Options) (*Conn, error) {
	opts = opts.fill()
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	url := RedactURL(opts.URL)
	c := &Conn{opts: opts, log: opts.Logger, reconnected: make(chan struct{}, 1), disconnected: make(chan struct{}, 1)}
	no := []nats.Option{
		nats.Name(opts.Name),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(opts.ReconnectWait),
		nats.PingInterval(opts.PingInterval),
		nats.MaxPingsOutstanding(2),
		nats.NoEcho(),
		nats.DontRandomize(),
		nats.SyncQueueLen(opts.PartsInFlight + 64),
		nats.ErrorHandler(c.onAsyncError),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil { // nil: the connection was closed on purpose
				c.log.Warn("nats disconnected", "name", opts.Name, "err", err)
				select {
				case c.disconnected <- struct{}{}:
				default:
				}
			}
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) {
			c.log.Info("nats reconnected", "name", opts.Name, "url", RedactURL(nc.ConnectedUrl()))
			select {
			case c.reconnected <- struct{}{}:
			default:
			}
		}),
	}
	if opts.User != "" {
		no = append(no, nats.UserInfo(opts.User, opts.Password))
	}
	if opts.Token != "" {
		no = append(no, nats.Token(opts.Token))
	}
	if opts.Creds != "" {
		// nats.go reads the file at every attempt: one that cannot be read
		// would be retried for ever.
		if _, err := os.ReadFile(opts.Creds); err != nil {
			return nil, fmt.Errorf("%w: credentials file: %w", ErrBadOptions, err)
		}
		no = append(no, nats.UserCredentials(opts.Creds))
	}
	tc, err := opts.tlsConfig()
	if err != nil {
		return nil, err
	}
	if tc != nil {
		no = append(no, nats.Secure(tc))
	}
	if opts.InProcess != nil {
		no = append(no, nats.InProcessServer(opts.InProcess.srv))
	}
	wait := opts.ReconnectWait
	var warned time.Time // when the last WARN was logged
	for attempt := 1; ; attempt++ {
		dial := 5 * time.Second
		if d, ok := ctx.Deadline(); ok {
			dial = max(min(dial, time.Until(d)), time.Millisecond)
		}
		nc, err := nats.Connect(opts.URL, append(no, nats.Timeout(dial))...)
		if err == nil {
			if mp := nc.MaxPayload(); int64(opts.ChunkBytes) > mp {
				nc.Close()
				return nil, fmt.Errorf("natsnet: connecting to %s: %w: chunk_bytes %d > max_payload %d", url, ErrPayloadLimit, opts.ChunkBytes, mp)
			}
			c.NC = nc
			return c, nil
		}
		if errors.Is(err, nats.ErrAuthorization) || errors.Is(err, nats.ErrAuthExpired) || errors.Is(err, nats.ErrAuthRevoked) {
			return nil, fmt.Errorf("natsnet: connecting to %s: %w", url, err)
		}
		if why := opts.tlsFailure(err); why != "" {
			return nil, fmt.Errorf("natsnet: connecting to %s: %w: %s: %w", url, ErrTLS, why, err)
		}
		if now := time.Now(); warnConnectRetry(attempt, now.Sub(warned)) {
			warned = now
			c.log.Warn("cannot reach the NATS server, retrying", "url", url, "attempts", attempt, "err", err)
		} else {
			c.log.Debug("nats connect failed; retrying", "url", url, "attempt", attempt, "err", err)
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, fmt.Errorf("natsnet: connecting to %s after %d attempts: %w (last error: %v)", url, attempt, ctx.Err(), err)
		case <-t.C:
		}
		wait = min(2*wait, 2*time.Second)
	}
}

// connectWarnEvery is how often Connect logs at WARN while it cannot reach
// the server: the retries come every 2s at most (a dial may take 5s more),
// so a WARN every 10s says the process is alive and waiting without
// flooding the log.
const connectWarnEvery = 10 * time.Second

// warnConnectRetry says whether the failed attempt number attempt (from 1),
// sinceWarn after the last WARN, is logged at WARN rather than DEBUG: the
// first one, and then the first one at least connectWarnEvery after the
// last WARN.
func warnConnectRetry(attempt int, sinceWarn time.Duration) bool {
	return attempt <= 1 || sinceWarn >= connectWarnEvery
}

// tlsConfig reads the TLS files of o into a client configuration; nil when o
// asks for no TLS (a tls:// URL alone makes nats.go use the system's roots).
func (o Options) tlsConfig() (*tls.Config, error) {
	if o.TLSCA == "" && o.TLSCert == "" {
		return nil, nil
	}
	tc := &tls.Config{MinVersion: tls.VersionTLS12}
	if o.TLSCA != "" {
		pool, err := loadCAs(o.TLSCA)
		if err != nil {
			return nil, err
		}
		tc.RootCAs = pool
	}
	if o.TLSCert != "" {
		cert, err := loadKeyPair(o.TLSCert, o.TLSKey)
		if err != nil {
			return nil, err
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	return tc, nil
}

// loadCAs reads a PEM file of CA certificates.
func loadCAs(path string) (*x509.CertPool, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("%w: reading the CA file: %w", ErrTLSFile, err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		return nil, fmt.Errorf("%w: the CA file %s holds no PEM certificate", ErrTLSFile, path)
	}
	return pool, nil
}

// loadKeyPair reads a PEM certificate and its PEM private key.
func loadKeyPair(certFile, keyFile string) (tls.Certificate, error) {
	for _, f := range []struct{ what, path string }{{"certificate", certFile}, {"key", keyFile}} {
		if _, err := os.ReadFile(f.path); err != nil {
			return tls.Certificate{}, fmt.Errorf("%w: reading the %s file: %w", ErrTLSFile, f.what, err)
		}
	}
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("%w: certificate %s with key %s: %w", ErrTLSFile, certFile, keyFile, err)
	}
	return cert, nil
}

// tlsFailure says why err, an error of nats.Connect, is a TLS failure that a
// retry cannot mend, or returns "" when it is not one.
func (o Options) tlsFailure(err error) string {
	asked := o.TLSCA != "" || o.TLSCert != "" || strings.Contains(o.URL, "tls://")
	var unknown x509.UnknownAuthorityError
	var host x509.HostnameError
	var invalid x509.CertificateInvalidError
	var op *net.OpError
	switch {
	case errors.Is(err, nats.ErrSecureConnWanted):
		return "TLS is required on this side (a tls:// URL or a TLS file is set) but the server does not offer TLS"
	case errors.As(err, &unknown) && o.TLSCA != "":
		return "the server's certificate is not trusted: it is not signed by a CA in " + o.TLSCA
	case errors.As(err, &unknown):
		what := "the server's certificate is not trusted"
		if !asked {
			what = "the server requires TLS and its certificate is not signed by a CA this host trusts"
		}
		return what + ": set the CA file (TLSCA, nats.tls_ca) to the CA that signed it (ca.pem of `coordinator certs`)"
	case errors.As(err, &host):
		return "the server's certificate is not valid for the host in the URL (give `coordinator certs --hosts` every name and address clients use)"
	case errors.As(err, &invalid):
		return "the server's certificate is invalid (expired, or not a server certificate)"
	case errors.As(err, &op) && op.Op == "remote error" && !strings.Contains(op.Err.Error(), "certificate"):
		return "the server refused the TLS handshake"
	case errors.As(err, &op) && op.Op == "remote error",
		errors.Is(err, nats.ErrTLS) && strings.Contains(err.Error(), "after TLS handshake"):
		// The server's alert ("certificate required", "unknown
		// certificate authority", "bad certificate"), or the connection
		// it closed right after the handshake.
		if o.TLSCert == "" {
			return "the server refused the TLS handshake: it requires a client certificate (TLSCert and TLSKey, nats.tls_cert and nats.tls_key)"
		}
		return "the server refused the client certificate " + o.TLSCert + ": it must be signed by the CA the server trusts"
	}
	// Any other TLS error (a handshake cut short or timed out) may pass:
	// retry it.
	return ""
}

// ValidateURL checks a comma-separated list of server URLs as nats.go
// parses them, and more strictly: at least one URL; each
// [scheme://][user:password@]host[:port] with scheme nats, tls, ws or wss
// (nats.go dials any other scheme as nats; a scheme-less URL takes nats, or
// ws after a websocket URL), a host, and a port in [1, 65535] if given; no
// mix of websocket and other URLs. Blanks around URLs and empty entries are
// skipped, as nats.go does. The error wraps ErrBadOptions and names the
// faulty URL without its credentials (RedactURL).
func ValidateURL(urls string) error {
	var n int
	var ws bool // the list is of websocket URLs (its first URL says)
	for _, raw := range strings.Split(urls, ",") {
		raw = strings.TrimSpace(raw)
		if raw == "" {
			continue
		}
		n++
		scheme := "nats"
		if n > 1 && ws {
			scheme = "ws"
		}
		u, why := parseServerURL(raw, scheme)
		if why == "" {
			isWS := u.Scheme == "ws" || u.Scheme == "wss"
			if n == 1 {
				ws = isWS
			} else if isWS != ws {
				why = "websocket (ws, wss) and other (nats, tls) URLs in one list, which nats.go refuses"
			}
		}
		if why != "" {
			return fmt.Errorf("%w: URL %q: %s", ErrBadOptions, RedactURL(raw), why)
		}
	}
	if n == 0 {
		return fmt.Errorf("%w: URL %q holds no server", ErrBadOptions, RedactURL(urls))
	}
	return nil
}

// parseServerURL parses one server URL of a list as nats.go does, with
// scheme the scheme of a URL that has none, and says what is wrong with it
// ("" if nothing is). The reason never holds the URL's credentials.
func parseServerURL(raw, scheme string) (*url.URL, string) {
	if !strings.Contains(raw, "://") {
		raw = scheme + "://" + raw
	}
	u, err := url.Parse(raw)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // without the URL, which may hold credentials
		}
		var esc url.EscapeError
		if errors.As(err, &esc) {
			return nil, "invalid %-escape" // it may be in the password
		}
		return nil, err.Error()
	}
	switch u.Scheme {
	case "nats", "tls", "ws", "wss":
	default:
		return nil, fmt.Sprintf("scheme %q, want nats, tls, ws or wss", u.Scheme)
	}
	if u.Hostname() == "" {
		return nil, "no host"
	}
	if p := u.Port(); p != "" {
		if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 {
			return nil, fmt.Sprintf("port %s, want [1, 65535]", p)
		}
	}
	return u, ""
}

// RedactURL replaces the credentials of every URL in a comma-separated list
// (user:password@ or token@) by "redacted@", so that a URL can be logged.
func RedactURL(urls string) string {
	if !strings.Contains(urls, "@") {
		return urls
	}
	parts := strings.Split(urls, ",")
	for i, u := range parts {
		start := 0
		if k := strings.Index(u, "://"); k >= 0 {
			start = k + 3
		}
		if at := strings.LastIndex(u[start:], "@"); at >= 0 {
			parts[i] = u[:start] + "redacted@" + u[start+at+1:]
		}
	}
	return strings.Join(parts, ",")
}

func (c *Conn) onAsyncError(_ *nats.Conn, sub *nats.Subscription, err error) {
	c.asyncErrs.Add(1)
	if errors.Is(err, nats.ErrSlowConsumer) {
		c.slow.Add(1)
	}
	if errors.Is(err, nats.ErrPermissionViolation) {
		c.denied.Add(1)
	}
	subj := ""
	if sub != nil {
		subj = sub.Subject
	}
	c.log.Warn("nats async error", "name", c.opts.Name, "subject", subj, "err", err)
}

// SlowConsumers is the number of slow-consumer events nats.go reported:
// each means a subscription dropped messages.
func (c *Conn) SlowConsumers() uint64 { return c.slow.Load() }

// Reconnected receives a value after the connection was lost and made
// again (what was published to this client meanwhile is lost); reconnects
// that come faster than they are read count once.
func (c *Conn) Reconnected() <-chan struct{} { return c.reconnected }

// Disconnected receives a value when the connection is lost (it is being
// made again); see Reconnected.
func (c *Conn) Disconnected() <-chan struct{} { return c.disconnected }

// ServerName is the name of the server the connection is on now, as the
// server's INFO gives it ("" while disconnected). Workers report it so the
// coordinator can place the ring (protocol.Place).
func (c *Conn) ServerName() string { return c.NC.ConnectedServerName() }

// PermissionViolations is the number of publications and subscriptions the
// server refused because the connection's user may not use the subject.
func (c *Conn) PermissionViolations() uint64 { return c.denied.Load() }

// AsyncErrors is the number of asynchronous errors of any kind.
func (c *Conn) AsyncErrors() uint64 { return c.asyncErrs.Load() }

// Options returns the options the connection was made with, defaults filled.
func (c *Conn) Options() Options { return c.opts }

// PendingLimits are the pending limits of every ring subscription.
func (c *Conn) PendingLimits() (msgs, bytes int) {
	return c.opts.PartsInFlight, c.opts.PartsInFlight * c.opts.ChunkBytes
}

// Close flushes what was published (for a second at most), then closes the
// connection and waits until nats.go has called its closed handler. It
// replaces any closed handler set on NC.
func (c *Conn) Close() {
	closed := make(chan struct{})
	c.NC.SetClosedHandler(func(*nats.Conn) { close(closed) })
	if c.NC.IsClosed() {
		return
	}
	_ = c.NC.FlushTimeout(time.Second)
	c.NC.Close()
	<-closed
}
