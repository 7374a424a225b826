package protocol

import (
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"
)

// Event is an input of a state machine: a decoded message, a tick of the
// clock, or the completion of something the runtime was asked to do.
type Event interface{ event() }

// Action is an output of a state machine: a message to send, a computation
// to start or cancel, a file to write, the end of the run. The runtime
// carries actions out in the order they are returned.
type Action interface{ action() }

// Errors that end a run.
var (
	// ErrStopped ends a coordinator asked to stop: it paused at a step
	// boundary and may be restarted from its checkpoint.
	ErrStopped = errors.New("protocol: stopped at a step boundary")
	// ErrLeft ends a worker that left the job on request.
	ErrLeft = errors.New("protocol: left the job")
	// ErrCoordinatorGone ends a worker that heard no coordinator for
	// WorkerConfig.CoordinatorTimeout.
	ErrCoordinatorGone = errors.New("protocol: no coordinator for too long")
	// ErrStepFailed ends a run whose step failed too often in a row.
	ErrStepFailed = errors.New("protocol: step failed")
)

// Events common to both machines.

// Tick is the passing of time. The runtime feeds one at least every
// Heartbeat/2, after it has drained the messages that were waiting, so that
// liveness is judged on every heartbeat that had arrived.
type Tick struct{}

// Stop asks the machine to end at the next step boundary: a coordinator
// pauses the job (ErrStopped), a worker leaves it (ErrLeft).
type Stop struct{}

func (Tick) event()           {}
func (Stop) event()           {}
func (*Plan) event()          {}
func (*Done) event()          {}
func (*Segment) event()       {}
func (*Heartbeat) event()     {}
func (HelloMsg) event()       {}
func (SnapRequestMsg) event() {}

// HelloMsg is a hello with the address its answer goes to.
type HelloMsg struct {
	Hello
	Reply string
}

// SnapRequestMsg is a snapshot request with the address its answer goes to.
type SnapRequestMsg struct {
	SnapRequest
	Reply string
}

// Log is a line for the runtime's logger. Args alternate keys and values as
// slog's do.
type Log struct {
	Level slog.Level
	Msg   string
	Args  []any
}

func (Log) action() {}

func (l Log) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "log %s %q", strings.ToLower(l.Level.String()), l.Msg)
	for i := 0; i+1 < len(l.Args); i += 2 {
		fmt.Fprintf(&b, " %v=%v", l.Args[i], l.Args[i+1])
	}
	return b.String()
}

// Drop says a message was dropped (malformed, foreign, stale or out of
// bounds) and why; the runtime counts it.
type Drop struct {
	Kind   string // the message: plan, done, segment, heartbeat, hello, snap
	Reason string
}

func (Drop) action() {}

// after reports whether (e1, s1) comes after (e0, s0) in a run: epochs first.
func after(e1, s1, e0, s0 uint64) bool { return e1 > e0 || e1 == e0 && s1 > s0 }

func alive(lastSeen, now time.Time, hb time.Duration) bool {
	return now.Sub(lastSeen) <= 3*hb
}
