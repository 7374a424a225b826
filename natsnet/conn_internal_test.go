package natsnet

import (
	"testing"
	"time"
)

// TestWarnConnectRetry checks which failed connection attempts Connect logs
// at WARN: the first, then one at least connectWarnEvery after the last.
func TestWarnConnectRetry(t *testing.T) {
	for _, tc := range []struct {
		attempt   int
		sinceWarn time.Duration
		want      bool
	}{
		{1, 0, true}, // the first attempt, whatever the time
		{1, time.Hour, true},
		{2, 250 * time.Millisecond, false},
		{5, connectWarnEvery - time.Millisecond, false},
		{6, connectWarnEvery, true},
		{7, time.Millisecond, false}, // just after the WARN of attempt 6
		{100, 3 * connectWarnEvery, true},
	} {
		if got := warnConnectRetry(tc.attempt, tc.sinceWarn); got != tc.want {
			t.Errorf("warnConnectRetry(attempt %d, %v since the last WARN) = %v; want %v", tc.attempt, tc.sinceWarn, got, tc.want)
		}
	}
	// A retry every 2s (the longest wait of Connect) for a minute: a WARN
	// at the first attempt and then every 10s, so 6 in all.
	var warned time.Duration
	n := 0
	for attempt, now := 1, time.Duration(0); now < time.Minute; attempt, now = attempt+1, now+2*time.Second {
		since := now - warned
		if attempt == 1 {
			since = 0
		}
		if warnConnectRetry(attempt, since) {
			warned = now
			n++
		}
	}
	if n != 6 {
		t.Errorf("WARNs over a minute of retries every 2s = %d; want 6", n)
	}
}
