package natsnet_test

import (
	"bytes"
	"context"
	"log/slog"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/klring/klring/natsnet"
)

func TestRedactURL(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"nats://127.0.0.1:4222", "nats://127.0.0.1:4222"},
		{"nats://klring:s3cret@nats:4222", "nats://redacted@nats:4222"},
		{"tls://tok3n@head.example.com:4222", "tls://redacted@head.example.com:4222"},
		{"nats://u:p@ss/w@rd@h:1", "nats://redacted@h:1"},
		{"u:s3cret@h:1", "redacted@h:1"},
		{"nats://a:x1@h1:1,nats://h2:2, tls://b:x2@h3:3", "nats://redacted@h1:1,nats://h2:2, tls://redacted@h3:3"},
		{"", ""},
	} {
		if got := natsnet.RedactURL(tc.in); got != tc.want {
			t.Errorf("RedactURL(%q) = %q; want %q", tc.in, got, tc.want)
		}
	}
}

// recorder is a slog handler that keeps every record's text and signals
// when a record with a given message arrives.
type recorder struct {
	mu   sync.Mutex
	buf  bytes.Buffer
	text slog.Handler
	wait string
	seen chan struct{} // closed at the first record with message wait
	once sync.Once
}

func newRecorder(wait string) *recorder {
	r := &recorder{wait: wait, seen: make(chan struct{})}
	r.text = slog.NewTextHandler(&r.buf, &slog.HandlerOptions{Level: slog.LevelDebug})
	return r
}

func (r *recorder) Enabled(context.Context, slog.Level) bool { return true }
func (r *recorder) Handle(ctx context.Context, rec slog.Record) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	err := r.text.Handle(ctx, rec)
	if rec.Message == r.wait {
		r.once.Do(func() { close(r.seen) })
	}
	return err
}
func (r *recorder) WithAttrs([]slog.Attr) slog.Handler { return r }
func (r *recorder) WithGroup(string) slog.Handler      { return r }
func (r *recorder) String() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.buf.String()
}

// Credentials in the URL never reach an error or a log line: not when the
// server cannot be reached, not when it refuses them, not on a reconnect.
func TestCredentialsNeverLogged(t *testing.T) {
	checkGoroutines(t)
	const pass = "pa55-never-logged"
	rec := newRecorder("")
	log := slog.New(rec)

	// Unreachable: Connect retries (logging each attempt) until its deadline.
	s := startServer(t, natsnet.ServerOptions{})
	dead := strings.Replace(s.URL(), "nats://", "nats://klring:"+pass+"@", 1)
	s.Shutdown()
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	_, err := natsnet.Connect(ctx, natsnet.Options{URL: dead, Logger: log, ReconnectWait: 10 * time.Millisecond})
	cancel()
	if err == nil || strings.Contains(err.Error(), pass) || !strings.Contains(err.Error(), "redacted@") {
		t.Errorf("Connect(unreachable %s) = %v; want an error with the URL redacted", natsnet.RedactURL(dead), err)
	}

	// Refused: a wrong password in the URL.
	s = startServer(t, natsnet.ServerOptions{User: "klring", Password: "right"})
	wrong := strings.Replace(s.URL(), "nats://", "nats://klring:"+pass+"@", 1)
	_, err = natsnet.Connect(context.Background(), natsnet.Options{URL: wrong, Logger: log})
	if err == nil || strings.Contains(err.Error(), pass) {
		t.Errorf("Connect(wrong password in the URL) = %v; want an error without the password", err)
	}

	// Reconnected: the right password in the URL, across a server restart.
	u, err := url.Parse(s.URL())
	if err != nil {
		t.Fatal(err)
	}
	port, _ := strconv.Atoi(u.Port())
	rc := newRecorder("nats reconnected")
	c, err := natsnet.Connect(context.Background(), natsnet.Options{URL: strings.Replace(s.URL(), "nats://", "nats://klring:right@", 1),
		Logger: slog.New(rc), ReconnectWait: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	s.Shutdown()
	s2 := startServer(t, natsnet.ServerOptions{Port: port, User: "klring", Password: "right"})
	defer s2.Shutdown()
	select {
	case <-rc.seen:
	case <-time.After(20 * time.Second):
		t.Fatalf("no reconnect within 20s; log:\n%s", rc)
	}
	if logs := rc.String(); strings.Contains(logs, ":right@") || !strings.Contains(logs, "redacted@") {
		t.Errorf("log of a reconnect shows the credentials or no redacted URL:\n%s", logs)
	}

	logs := rec.String()
	if !strings.Contains(logs, "cannot reach the NATS server") {
		t.Errorf("no log of the failed attempts; the test did not exercise the log:\n%s", logs)
	}
	if strings.Contains(logs, pass) {
		t.Errorf("the password appears in the log:\n%s", logs)
	}
}
