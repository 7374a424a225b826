package natsnet

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"
)

// records is a slog handler that keeps every record.
type records struct{ recs []slog.Record }

func (r *records) Enabled(context.Context, slog.Level) bool { return true }
func (r *records) Handle(_ context.Context, rec slog.Record) error {
	r.recs = append(r.recs, rec)
	return nil
}
func (r *records) WithAttrs([]slog.Attr) slog.Handler { return r }
func (r *records) WithGroup(string) slog.Handler      { return r }

func attr(rec slog.Record, key string) (slog.Value, bool) {
	var v slog.Value
	found := false
	rec.Attrs(func(a slog.Attr) bool {
		if a.Key == key {
			v, found = a.Value, true
			return false
		}
		return true
	})
	return v, found
}

// The statements below are nats-server 2.15.3's, as its connections write
// them (the connection first): what a route refused by the other server, a
// refused route, an unreachable route, a failed route TLS handshake and a
// refused client log.
const (
	fmtRouteRefused = "127.0.0.1:16222 - rid:%d - Route Error %s"
	fmtRouteAuth    = "127.0.0.1:37310 - rid:%d - authentication error - %s"
	fmtRouteConnect = "Error trying to connect to route (attempt %d): %v"
	fmtRouteTLS     = "127.0.0.1:16222 - rid:%d - TLS route handshake error: %v"
	fmtClientAuth   = "127.0.0.1:50000 - cid:%d - authentication error - %s"
)

func TestClassify(t *testing.T) {
	for _, tc := range []struct {
		format string
		args   []any
		kind   string
		msg    string
	}{
		{fmtRouteRefused, []any{5, "'Authorization Violation'"}, "route-refused", LogRouteRefused},
		{fmtRouteAuth, []any{7, `User "route"`}, "route-auth", LogRouteAuth},
		{fmtRouteConnect, []any{1, errors.New("dial tcp 127.0.0.1:16222: connect: connection refused")}, "route-connect", LogRouteConnect},
		{fmtRouteTLS, []any{3, errors.New("x509: certificate signed by unknown authority")}, "route-tls", LogRouteTLS},
		{"127.0.0.1:16222 - rid:4 - \"n1\" - Remote server has a duplicate name: %q", []any{"n1"}, "route", LogRouteError},
		{"127.0.0.1:16222 - rid:8 - Error flushing: %v", []any{errors.New("writev tcp 127.0.0.1:44974->127.0.0.1:16222: writev: broken pipe")}, "route-write", LogRouteError},
		{fmtClientAuth, []any{9, `User "klring"`}, "client-auth", LogClientAuth},
		{"127.0.0.1:50000 - cid:9 - Readloop processing time: %v", []any{time.Second}, "server:Readloop processing time: %v", LogServerWarning},
	} {
		line := fmt.Sprintf(tc.format, tc.args...)
		if kind, msg := classify(tc.format, line); kind != tc.kind || msg != tc.msg {
			t.Errorf("classify(%q) = %q, %q; want %q, %q", line, kind, msg, tc.kind, tc.msg)
		}
	}
}

// TestServerLogRateLimit: a route refused every second is logged at WARN
// the first time, then once every logEvery with the number left out; other
// kinds are logged on their own schedule, and the write error of each
// refused route only at DEBUG.
func TestServerLogRateLimit(t *testing.T) {
	rec := &records{}
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	l := newServerLog(slog.New(rec), logEvery, func() time.Time { return now })
	for i := range 25 {
		l.Errorf(fmtRouteRefused, i, "'Authorization Violation'") // a new route connection each time
		// A refused route's write error follows: DEBUG, not WARN.
		l.Errorf("127.0.0.1:16222 - rid:%d - Error flushing: %v", i, errors.New("writev: broken pipe"))
		if i == 3 {
			l.Errorf(fmtRouteConnect, 1, errors.New("dial tcp 127.0.0.1:16222: connect: connection refused"))
		}
		now = now.Add(time.Second)
	}
	var refused []int64
	connect := 0
	debug := 0
	for _, r := range rec.recs {
		if r.Level == slog.LevelDebug {
			debug++
			continue
		}
		if r.Level != slog.LevelWarn {
			t.Errorf("record %q at %v; want WARN", r.Message, r.Level)
		}
		switch r.Message {
		case LogRouteRefused:
			n := int64(0)
			if v, ok := attr(r, "suppressed"); ok {
				n = v.Int64()
			}
			refused = append(refused, n)
			if n, _ := attr(r, "nats"); !strings.Contains(n.String(), "Authorization Violation") {
				t.Errorf("record %q: nats=%q; want the server's line", r.Message, n)
			}
		case LogRouteConnect:
			connect++
		default:
			t.Errorf("unexpected record %q", r.Message)
		}
	}
	// At 0s, 10s (9 left out since) and 20s (9 more).
	if want := []int64{0, 9, 9}; fmt.Sprint(refused) != fmt.Sprint(want) {
		t.Errorf("the refused route logged with suppressed = %v; want %v (at 0s, 10s, 20s)", refused, want)
	}
	if debug != 25 {
		t.Errorf("%d records at DEBUG; want the 25 write errors", debug)
	}
	if connect != 1 {
		t.Errorf("the unreachable route logged %d times; want 1", connect)
	}
}

// TestFatalError: the fatal record of a port nats-server cannot listen on
// becomes an error that says which listener and wraps the cause.
func TestFatalError(t *testing.T) {
	inUse := &net.OpError{Op: "listen", Net: "tcp", Addr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 16222},
		Err: &os.SyscallError{Syscall: "bind", Err: syscall.EADDRINUSE}}
	for _, tc := range []struct {
		format string
		args   []any
		want   string
	}{
		{"Error listening on router port: %d - %v", []any{16222, inUse}, "listening for routes: listen tcp 127.0.0.1:16222: bind: address already in use"},
		{"Error listening on port: %s, %q", []any{"127.0.0.1:16222", inUse}, "listening for clients: listen tcp 127.0.0.1:16222: bind: address already in use"},
		{"Can't start monitoring: %v", []any{inUse}, "nats-server: Can't start monitoring: listen tcp 127.0.0.1:16222: bind: address already in use"},
	} {
		l := newServerLog(slog.New(slog.DiscardHandler), logEvery, time.Now)
		l.Fatalf(tc.format, tc.args...)
		l.Fatalf("a second failure: %v", errors.New("later"))
		err := l.failed()
		if err == nil || err.Error() != tc.want || !errors.Is(err, syscall.EADDRINUSE) {
			t.Errorf("Fatalf(%q) then failed() = %v; want %q wrapping EADDRINUSE", tc.format, err, tc.want)
		}
	}
}

// TestFatalLogged: a failure while the server starts is StartServer's error
// and only a DEBUG record; once the server has started, an ERROR record.
func TestFatalLogged(t *testing.T) {
	for _, started := range []bool{false, true} {
		rec := &records{}
		l := newServerLog(slog.New(rec), logEvery, time.Now)
		if started {
			if err := l.start(); err != nil {
				t.Fatalf("start() = %v; want nil before any failure", err)
			}
		}
		l.Fatalf("Error listening on router port: %d - %v", 16222, errors.New("bind: address already in use"))
		want := slog.LevelDebug
		if started {
			want = slog.LevelError
		}
		if len(rec.recs) != 1 || rec.recs[0].Level != want || rec.recs[0].Message != LogServerFailed {
			t.Errorf("started=%v: records %v; want one %v %q", started, rec.recs, want, LogServerFailed)
		}
		if err := l.start(); !started && err == nil {
			t.Errorf("start() after a failure = nil; want the failure")
		}
	}
}
