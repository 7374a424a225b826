package natsnet

import (
	"context"
	"fmt"
	"log/slog"
	"regexp"
	"strings"
	"sync"
	"time"
)

// Messages of the embedded server's log records (ServerOptions.Logger), one
// per kind of trouble: each kind is logged at most once every 10s
// (logEvery).
const (
	// LogRouteRefused: the server a route of this one connects to refused
	// it, so this server does not join that server's cluster.
	LogRouteRefused = "NATS route refused by the other server: wrong cluster user or password (this server's, or those in the route URL)"
	// LogRouteAuth: this server refused a route from another server.
	LogRouteAuth = "NATS route from another server refused: wrong cluster user or password"
	// LogRouteTLS: the TLS handshake of a route failed.
	LogRouteTLS = "NATS route TLS handshake failed: check the route certificates and their CA"
	// LogRouteConnect: a route cannot reach the server it routes to; the
	// server keeps trying.
	LogRouteConnect = "NATS route cannot connect to the other server; retrying"
	// LogRouteError: any other error of a route.
	LogRouteError = "NATS route error"
	// LogClientAuth: the server refused a client's credentials.
	LogClientAuth = "embedded NATS server refused a client: wrong user, password or certificate"
	// LogServerWarning: any other warning or error of the server.
	LogServerWarning = "embedded NATS server"
	// LogServerFailed: the server failed (a port it cannot listen on).
	LogServerFailed = "embedded NATS server failed"
)

// logEvery is the least time between two records of one kind: a refused
// route is retried every second, forever.
const logEvery = 10 * time.Second

// maxLogKinds bounds the kinds of records serverLog remembers for rate
// limiting; past it, it forgets them all.
const maxLogKinds = 1024

// connPrefix is the connection nats-server puts before a connection's
// records: "127.0.0.1:6222 - rid:5 - ", and the names it learnt.
var connPrefix = regexp.MustCompile(`^.*? - (cid|rid|gid|lid|wid|mid)(_ws)?:\d+( - "[^"]*")* - `)

// serverLog is an embedded server's logger (nats-server's server.Logger).
// Its warnings and errors go to slog at WARN with the server's own line
// ("nats"): the first of each kind (classify), then at most one per period
// every, with the number of records of that kind left out since the last
// one logged ("suppressed"). Notices go at DEBUG. The first fatal error (a
// port the server cannot listen on) is kept for StartServer, which returns
// it.
type serverLog struct {
	log   *slog.Logger
	every time.Duration
	now   func() time.Time

	mu      sync.Mutex
	last    map[string]time.Time // when a record of each kind was last logged
	skipped map[string]int       // records of each kind left out since
	fatal   error
	started bool // StartServer returned the server: it returns no error now
}

func newServerLog(log *slog.Logger, every time.Duration, now func() time.Time) *serverLog {
	return &serverLog{log: log, every: every, now: now, last: map[string]time.Time{}, skipped: map[string]int{}}
}

// Noticef logs at DEBUG what a nats-server logs as a notice (listening,
// routes made and closed, clients closed).
func (l *serverLog) Noticef(format string, v ...any) {
	l.log.Debug("embedded NATS server", "nats", fmt.Sprintf(format, v...))
}

func (l *serverLog) Warnf(format string, v ...any)  { l.warn(format, v) }
func (l *serverLog) Errorf(format string, v ...any) { l.warn(format, v) }

// Debugf and Tracef drop what the server only says when asked to debug or
// trace (StartServer does not).
func (l *serverLog) Debugf(string, ...any) {}
func (l *serverLog) Tracef(string, ...any) {}

// Fatalf keeps the server's failure: nats-server calls it when it cannot
// listen on a port, and then does not serve. StartServer returns it; once
// the server has started, it is logged at ERROR instead (at DEBUG before).
func (l *serverLog) Fatalf(format string, v ...any) {
	line := fmt.Sprintf(format, v...)
	err := fatalError(format, line, v)
	l.mu.Lock()
	if l.fatal == nil {
		l.fatal = err
	}
	started := l.started
	l.mu.Unlock()
	level := slog.LevelDebug
	if started {
		level = slog.LevelError
	}
	l.log.Log(context.Background(), level, LogServerFailed, "nats", line)
}

// start says StartServer returned the server, and reports its failure if
// it failed first.
func (l *serverLog) start() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.started = l.fatal == nil
	return l.fatal
}

// failed is the first fatal error of the server, nil if none.
func (l *serverLog) failed() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.fatal
}

func (l *serverLog) warn(format string, v []any) {
	line := fmt.Sprintf(format, v...)
	kind, msg := classify(format, line)
	if kind == "route-write" {
		// The route's other end closed it: a refused route, or a server
		// that went down, which the records of its retries report.
		l.log.Debug(msg, "nats", line)
		return
	}
	ok, skipped := l.allow(kind)
	if !ok {
		return
	}
	args := []any{"nats", line}
	if skipped > 0 {
		args = append(args, "suppressed", skipped)
	}
	l.log.Warn(msg, args...)
}

// allow reports whether a record of kind is logged now (the first of its
// kind, or the first every l.every), and how many of that kind were left
// out since the last one logged.
func (l *serverLog) allow(kind string) (bool, int) {
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	if t, ok := l.last[kind]; ok && now.Sub(t) < l.every {
		l.skipped[kind]++
		return false, 0
	}
	if _, ok := l.last[kind]; !ok && len(l.last) >= maxLogKinds {
		clear(l.last)
		clear(l.skipped)
	}
	n := l.skipped[kind]
	l.last[kind], l.skipped[kind] = now, 0
	return true, n
}

// classify names the kind of a warning or error of nats-server from its
// format and line, and says what it means: the kind is the rate limit's
// key. A route's write error (kind route-write) follows its closing by the
// other end and is logged at DEBUG only.
func classify(format, line string) (kind, msg string) {
	m := connPrefix.FindStringSubmatch(line)
	conn := ""
	if m != nil {
		conn = m[1]
	}
	switch {
	case strings.Contains(line, "connect to route"):
		return "route-connect", LogRouteConnect
	case conn == "rid" && strings.Contains(line, "Authorization Violation"):
		return "route-refused", LogRouteRefused
	case conn == "rid" && strings.Contains(strings.ToLower(line), "authentication error"):
		return "route-auth", LogRouteAuth
	case conn == "rid" && strings.Contains(line, "TLS"):
		return "route-tls", LogRouteTLS
	case conn == "rid" && strings.Contains(line, "Error flushing"):
		return "route-write", LogRouteError
	case conn == "rid":
		return "route", LogRouteError
	case conn == "cid" && strings.Contains(strings.ToLower(line), "authentication error"):
		return "client-auth", LogClientAuth
	}
	// One kind per statement: the format without the connection nats-server
	// writes into it.
	return "server:" + connPrefix.ReplaceAllString(format, ""), LogServerWarning
}

// fatalError is the error of a fatal record of nats-server: what the server
// was doing, wrapping the error it logged (a *net.OpError naming the address
// and the cause, as "listen tcp 127.0.0.1:6222: bind: address already in
// use").
func fatalError(format, line string, v []any) error {
	var cause error
	for _, a := range v {
		if e, ok := a.(error); ok {
			cause = e
			break
		}
	}
	what := ""
	switch {
	case strings.Contains(format, "listening on router port"):
		what = "listening for routes"
	case strings.Contains(format, "listening on port"):
		what = "listening for clients"
	}
	switch {
	case cause != nil && what != "":
		return fmt.Errorf("%s: %w", what, cause)
	case cause != nil:
		return &serverError{line: line, err: cause}
	default:
		return &serverError{line: line}
	}
}

// serverError is a fatal record of nats-server whose statement does not say
// more than its line.
type serverError struct {
	line string
	err  error
}

func (e *serverError) Error() string { return "nats-server: " + e.line }
func (e *serverError) Unwrap() error { return e.err }
