package natsnet_test

import (
	"context"
	"errors"
	"net"
	"net/url"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/klring/klring/natsnet"
)

const urlSecret = "pa55-never-logged"

func TestValidateURL(t *testing.T) {
	for _, tc := range []struct {
		url  string
		want string // "" if valid, else a part of the error
	}{
		{"nats://127.0.0.1:4222", ""},
		{"127.0.0.1:4222", ""},
		{"localhost", ""},
		{"tls://head.example.com:4443", ""},
		{"ws://h:8080", ""},
		{"wss://h", ""},
		{"NATS://H:1", ""},
		{"nats://u:" + urlSecret + "@h:1", ""},
		{"nats://tok3n@h", ""},
		{"nats://[::1]:4222", ""},
		{"nats://h:", ""}, // nats.go takes the default port
		{"nats://h:65535", ""},
		{"nats://a:1,nats://b:2", ""},
		{" nats://a:1 , tls://b:2 ", ""},
		{"nats://a:1,", ""},
		{"ws://a:1,b:2", ""}, // b takes the scheme ws
		{"bogus://x:y:z", `URL "bogus://x:y:z": invalid port ":z"`},
		{"nats://x:y:z", `URL "nats://x:y:z": invalid port ":z"`},
		{"bogus://h:4222", `URL "bogus://h:4222": scheme "bogus"`},
		{"http://h:80", `scheme "http"`},
		{"nats://h:0", "port 0"},
		{"nats://h:65536", "port 65536"},
		{"nats://:4222", `URL "nats://:4222": no host`},
		{"nats://", "no host"},
		{"nats://ho st:1", `URL "nats://ho st:1": invalid character " " in host name`},
		{"nats://a:1,bogus://b:2", `URL "bogus://b:2": scheme "bogus"`},
		{"nats://a:1,ws://b:2", `URL "ws://b:2": websocket`},
		{"b:2,ws://a:1", `URL "ws://a:1": websocket`},
		{",", `URL "," holds no server`},
		{" , ", "holds no server"},
		{"", "holds no server"},
		{"bogus://u:" + urlSecret + "@h:1", `URL "bogus://redacted@h:1": scheme`},
		{"nats://u:" + urlSecret + "@x:y:z", `URL "nats://redacted@x:y:z": invalid port`},
		{"nats://u:" + urlSecret + "%zz@h:1", `URL "nats://redacted@h:1": invalid %-escape`},
		{"u:" + urlSecret + "@:1", `URL "redacted@:1": no host`},
	} {
		err := natsnet.ValidateURL(tc.url)
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("ValidateURL(%q) = %v; want nil", tc.url, err)
		case tc.want != "" && (!errors.Is(err, natsnet.ErrBadOptions) || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("ValidateURL(%q) = %v; want %v with %q", tc.url, err, natsnet.ErrBadOptions, tc.want)
		case err != nil && strings.Contains(err.Error(), urlSecret):
			t.Errorf("ValidateURL(%q) = %v, which shows the password", tc.url, err)
		}
		o := natsnet.DefaultOptions()
		o.URL = tc.url
		if err := o.Validate(); (err == nil) != (tc.want == "") || err != nil && !errors.Is(err, natsnet.ErrBadOptions) {
			t.Errorf("Options{URL: %q}.Validate() = %v; want ok=%v", tc.url, err, tc.want == "")
		}
	}
}

// A URL that cannot be used fails Connect at once instead of being retried
// until ctx ends; a list with a dead server first still connects to the
// live one.
func TestConnectBadURL(t *testing.T) {
	checkGoroutines(t)
	s := startServer(t, natsnet.ServerOptions{})
	for _, u := range []string{"bogus://x:y:z", "bogus://" + strings.TrimPrefix(s.URL(), "nats://"), ",", s.URL() + ",ws://" + strings.TrimPrefix(s.URL(), "nats://")} {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		_, err := natsnet.Connect(ctx, natsnet.Options{URL: u, Logger: quiet})
		cancel()
		if !errors.Is(err, natsnet.ErrBadOptions) {
			t.Errorf("Connect(%q) = %v; want %v at once", u, err, natsnet.ErrBadOptions)
		}
	}

	// A credentials file that cannot be read fails at once too.
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	missing := filepath.Join(t.TempDir(), "none.creds")
	_, err := natsnet.Connect(ctx, natsnet.Options{URL: s.URL(), Creds: missing, Logger: quiet})
	cancel()
	if !errors.Is(err, natsnet.ErrBadOptions) || !strings.Contains(err.Error(), "none.creds") {
		t.Errorf("Connect with a missing credentials file = %v; want %v naming it", err, natsnet.ErrBadOptions)
	}

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := "nats://" + ln.Addr().String()
	ln.Close() // nothing listens there now
	c := connect(t, natsnet.Options{URL: dead + ", " + s.URL()})
	defer c.Close()
	if got := c.NC.ConnectedUrl(); got != s.URL() {
		t.Errorf("Connect(%s, %s) is on %s; want the live server", dead, s.URL(), got)
	}
}

// failingProvider stands for an in-process server that refuses every
// connection, so that nats.Connect parses its URLs but dials nothing.
type failingProvider struct{}

var errNoDial = errors.New("no dial in this test")

func (failingProvider) InProcessConn() (net.Conn, error) { return nil, errNoDial }

// nats.go's own verdict on a URL list: nil if it parses it (it then fails
// to dial), else the error that it returns before dialing.
func natsGoParse(urls string) error {
	nc, err := nats.Connect(urls, nats.InProcessServer(failingProvider{}), nats.DontRandomize(), nats.NoReconnect())
	if err == nil {
		nc.Close()
		return nil
	}
	if errors.Is(err, errNoDial) {
		return nil
	}
	return err
}

// FuzzValidateURL checks that ValidateURL never panics, rejects every list
// nats.go rejects, accepts only URLs of a known scheme with a host and a
// valid port, and never shows a password of the URL in its error.
func FuzzValidateURL(f *testing.F) {
	for _, s := range []string{"nats://127.0.0.1:4222", "bogus://x:y:z", "tls://u:p@h:1,nats://h2", "ws://a,b:2", "b:2,ws://a", ",",
		"nats://[::1]:4222", "nats://h:0", "nats://u:%zz@h", "nats://h:4222/p?q#f", "nats:h", "h:1/x://y", " nats://a , "} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		err := natsnet.ValidateURL(s)
		if err != nil && !errors.Is(err, natsnet.ErrBadOptions) {
			t.Fatalf("ValidateURL(%q) = %v; want an error wrapping %v", s, err, natsnet.ErrBadOptions)
		}
		if perr := natsGoParse(s); perr != nil && err == nil {
			t.Fatalf("ValidateURL(%q) = nil; nats.go refuses it: %v", s, perr)
		}
		if err == nil {
			n := 0
			for _, e := range strings.Split(s, ",") {
				if e = strings.TrimSpace(e); e == "" {
					continue
				}
				n++
				if !strings.Contains(e, "://") {
					e = "nats://" + e
				}
				u, perr := url.Parse(e)
				if perr != nil {
					t.Fatalf("ValidateURL(%q) = nil; url.Parse(%q) = %v", s, e, perr)
				}
				port, perr := strconv.Atoi(u.Port())
				if u.Hostname() == "" || u.Port() != "" && (perr != nil || port < 1 || port > 65535) ||
					u.Scheme != "nats" && u.Scheme != "tls" && u.Scheme != "ws" && u.Scheme != "wss" {
					t.Fatalf("ValidateURL(%q) = nil; want an error for %q (scheme %q, host %q, port %q)", s, e, u.Scheme, u.Hostname(), u.Port())
				}
			}
			if n == 0 {
				t.Fatalf("ValidateURL(%q) = nil for a list of no URL", s)
			}
		}
		if strings.Contains(s, urlSecret) {
			return
		}
		withPass := "nats://klring:" + urlSecret + "@" + s
		if err := natsnet.ValidateURL(withPass); err != nil && strings.Contains(err.Error(), urlSecret) {
			t.Fatalf("ValidateURL(%q) = %v, which shows the password", withPass, err)
		}
	})
}
