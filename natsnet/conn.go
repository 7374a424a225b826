package natsnet

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
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
)

// Options configure a client connection.
type Options struct {
	// URL of the server(s), comma separated. Default nats.DefaultURL.
	URL string
	// User and Password, or Token, or the credentials file Creds (a JWT and
	// nkey seed) authenticate the client. Default none.
	User, Password, Token, Creds string
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
}

// DefaultOptions returns the defaults documented on Options.
func DefaultOptions() Options {
	return Options{URL: nats.DefaultURL, Name: "klring", ChunkBytes: 1 << 20, PartsInFlight: 1024,
		PingInterval: time.Second, ReconnectWait: 250 * time.Millisecond}
}

// Validate checks every field and names the one that is wrong.
func (o Options) Validate() error {
	switch {
	case o.URL == "":
		return fmt.Errorf("%w: URL is empty", ErrBadOptions)
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
}

// Connect connects to opts.URL, retrying until ctx ends while the server
// cannot be reached (an authorization error ends it at once), and checks
// that opts.ChunkBytes fits in the server's MaxPayload. Zero fields of opts
// take their defaults.
func Connect(ctx context.Context, opts Options) (*Conn, error) {
	opts = opts.fill()
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	c := &Conn{opts: opts, log: opts.Logger}
	no := []nats.Option{
		nats.Name(opts.Name),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(opts.ReconnectWait),
		nats.PingInterval(opts.PingInterval),
		nats.MaxPingsOutstanding(2),
		nats.NoEcho(),
		nats.SyncQueueLen(opts.PartsInFlight + 64),
		nats.ErrorHandler(c.onAsyncError),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil { // nil: the connection was closed on purpose
				c.log.Warn("nats disconnected", "name", opts.Name, "err", err)
			}
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) {
			c.log.Info("nats reconnected", "name", opts.Name, "url", nc.ConnectedUrlRedacted())
		}),
	}
	if opts.User != "" {
		no = append(no, nats.UserInfo(opts.User, opts.Password))
	}
	if opts.Token != "" {
		no = append(no, nats.Token(opts.Token))
	}
	if opts.Creds != "" {
		no = append(no, nats.UserCredentials(opts.Creds))
	}
	wait := opts.ReconnectWait
	for attempt := 1; ; attempt++ {
		dial := 5 * time.Second
		if d, ok := ctx.Deadline(); ok {
			dial = max(min(dial, time.Until(d)), time.Millisecond)
		}
		nc, err := nats.Connect(opts.URL, append(no, nats.Timeout(dial))...)
		if err == nil {
			if mp := nc.MaxPayload(); int64(opts.ChunkBytes) > mp {
				nc.Close()
				return nil, fmt.Errorf("natsnet: connecting to %s: %w: chunk_bytes %d > max_payload %d", opts.URL, ErrPayloadLimit, opts.ChunkBytes, mp)
			}
			c.NC = nc
			return c, nil
		}
		if errors.Is(err, nats.ErrAuthorization) || errors.Is(err, nats.ErrAuthExpired) || errors.Is(err, nats.ErrAuthRevoked) {
			return nil, fmt.Errorf("natsnet: connecting to %s: %w", opts.URL, err)
		}
		c.log.Debug("nats connect failed; retrying", "url", opts.URL, "attempt", attempt, "err", err)
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, fmt.Errorf("natsnet: connecting to %s after %d attempts: %w (last error: %v)", opts.URL, attempt, ctx.Err(), err)
		case <-t.C:
		}
		wait = min(2*wait, 2*time.Second)
	}
}

func (c *Conn) onAsyncError(_ *nats.Conn, sub *nats.Subscription, err error) {
	c.asyncErrs.Add(1)
	if errors.Is(err, nats.ErrSlowConsumer) {
		c.slow.Add(1)
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
