package natsnet

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/klring/klring/allreduce"
)

// AttemptHeader is the NATS header that labels every ring message with its
// attempt: "<epoch>.<step>.<run>" (FormatAttempt).
const AttemptHeader = "Klring-Attempt"

// PadHeader pads the header block of a ring message (with 1 to 8 dots) to a
// multiple of 8 bytes, so that the payload nats.go hands the receiver starts
// 8-byte aligned, as the envelope's floats need to be read in place.
// Receivers ignore it.
const PadHeader = "Klring-Pad"

// HeaderRoom bounds the bytes the attempt and pad headers add to a ring
// message on the wire, for any attempt: a connection's ChunkBytes must be at
// least the all-reduce's chunk plus HeaderRoom.
const HeaderRoom = 160

// ahead is how many attempts besides the current one a Mailbox holds
// messages for.
const ahead = 8

// Mailbox is one worker's allreduce.Mailbox over NATS. It subscribes once,
// for its whole life, to the worker's ring subject klring.<job>.ring.<worker>
// and files every message under the attempt its AttemptHeader names
// (allreduce.Inbox): a neighbour that starts an attempt before this worker
// does loses nothing. A message without a readable header is dropped and
// counted; so are the messages nats.go drops when the subscription's pending
// limits are exceeded (a slow consumer). The subscription survives
// reconnects (nats.go subscribes again); when the connection closes for good,
// the mailbox closes with it and a waiting Recv returns ErrClosed.
type Mailbox struct {
	conn   *Conn
	worker string
	subj   Subjects
	in     *allreduce.Inbox
	sub    *nats.Subscription
	done   chan struct{} // closed when the subscription's goroutine has ended

	closed    atomic.Bool
	closeOnce sync.Once
	closeErr  error
	lost      atomic.Uint64 // nats.go's drops, as last read
}

// NewMailbox subscribes to worker's ring subject of job on c and waits until
// the server has the subscription, so that every message sent to worker
// after NewMailbox returns reaches it. The subscription's pending limits
// are c's PendingLimits; the mailbox holds messages for the current attempt
// and up to 8 ahead, each of at most PartsInFlight messages and
// PartsInFlight*ChunkBytes bytes (allreduce.Limits). It fails with an error
// wrapping ErrBadName if job or worker is not a valid name. Close it before
// c.
func NewMailbox(ctx context.Context, c *Conn, job, worker string) (*Mailbox, error) {
	subj, err := NewSubjects(job)
	if err != nil {
		return nil, fmt.Errorf("natsnet: mailbox: %w", err)
	}
	ring, err := subj.Ring(worker)
	if err != nil {
		return nil, fmt.Errorf("natsnet: mailbox in job %s: %w", job, err)
	}
	msgs, bytes := c.PendingLimits()
	in, err := allreduce.NewInbox(worker, allreduce.Limits{Ahead: ahead, Messages: msgs, Bytes: bytes})
	if err != nil {
		return nil, fmt.Errorf("natsnet: mailbox of %s: %w", worker, err)
	}
	m := &Mailbox{conn: c, worker: worker, subj: subj, in: in, done: make(chan struct{})}
	sub, err := c.NC.Subscribe(ring, m.deliver)
	if err != nil {
		return nil, fmt.Errorf("natsnet: subscribing to %s: %w", ring, err)
	}
	// The subscription ends when the mailbox closes or, for good, when the
	// connection does: a Recv waiting then returns ErrClosed.
	sub.SetClosedHandler(func(string) {
		m.in.Close()
		close(m.done)
	})
	m.sub = sub
	fail := func(err error) (*Mailbox, error) {
		m.Close()
		return nil, fmt.Errorf("natsnet: subscribing to %s: %w", ring, err)
	}
	if err := sub.SetPendingLimits(msgs, bytes); err != nil {
		return fail(err)
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, 10*c.opts.PingInterval)
		defer cancel()
	}
	if err := c.NC.FlushWithContext(ctx); err != nil {
		return fail(err)
	}
	return m, nil
}

// deliver runs on the subscription's goroutine: it files m under its
// attempt.
func (mb *Mailbox) deliver(m *nats.Msg) {
	v := m.Header[AttemptHeader]
	if len(v) != 1 {
		mb.in.Unlabelled()
		return
	}
	h, ok := parseAttempt(v[0])
	if !ok {
		mb.in.Unlabelled()
		return
	}
	mb.in.File(h, m.Data)
}

// Worker is the worker the mailbox listens for.
func (mb *Mailbox) Worker() string { return mb.worker }

// Subjects are the subjects of the mailbox's job.
func (mb *Mailbox) Subjects() Subjects { return mb.subj }

// Limits are what the mailbox holds at most.
func (mb *Mailbox) Limits() allreduce.Limits { return mb.in.Limits() }

// Begin implements allreduce.Mailbox. Every member must be a valid name
// (ErrBadName, wrapped with allreduce.ErrBadRing).
func (mb *Mailbox) Begin(h allreduce.Header, members []string, self int) (allreduce.Transport, error) {
	subj := make([]string, len(members))
	for i, w := range members {
		s, err := mb.subj.Ring(w)
		if err != nil {
			return nil, fmt.Errorf("natsnet: %w: members[%d]: %w", allreduce.ErrBadRing, i, err)
		}
		subj[i] = s
	}
	rx, err := mb.in.Begin(h, members, self)
	if err != nil {
		return nil, fmt.Errorf("natsnet: %w", err)
	}
	return &transport{mb: mb, rx: rx, subj: subj, hdr: ringHeader(h)}, nil
}

// ringHeader is the NATS header of attempt h's messages. Its block, as
// nats.go writes it ("NATS/1.0\r\n", then "Key: value\r\n" per field, then
// "\r\n"), is 44 bytes plus the two values: the pad makes it a multiple of 8.
func ringHeader(h allreduce.Header) nats.Header {
	v := FormatAttempt(h)
	pad := 8 - (44+len(v))%8 // 1 to 8
	return nats.Header{AttemptHeader: []string{v}, PadHeader: []string{"........"[:pad]}}
}

// Stats implements allreduce.Mailbox; Lost is nats.go's count of messages
// the subscription dropped as a slow consumer.
func (mb *Mailbox) Stats() allreduce.MailboxStats {
	st := mb.in.Stats()
	st.Lost = mb.slowDrops()
	return st
}

// Dropped implements allreduce.Mailbox.
func (mb *Mailbox) Dropped() uint64 { return mb.Stats().Dropped() }

// slowDrops reads nats.go's drop count of the subscription; once it is
// closed, the last count read.
func (mb *Mailbox) slowDrops() uint64 {
	if !mb.closed.Load() {
		if n, err := mb.sub.Dropped(); err == nil && n >= 0 {
			mb.lost.Store(uint64(n))
		}
	}
	return mb.lost.Load()
}

// Sync returns once every message the server had sent to this mailbox
// before the call has been filed or dropped: it flushes the connection and
// waits for a barrier through its subscriptions.
func (mb *Mailbox) Sync(ctx context.Context) error {
	if err := mb.conn.NC.FlushWithContext(ctx); err != nil {
		return fmt.Errorf("natsnet: mailbox of %s: sync: %w", mb.worker, err)
	}
	done := make(chan struct{})
	if err := mb.conn.NC.Barrier(func() { close(done) }); err != nil {
		return fmt.Errorf("natsnet: mailbox of %s: sync: %w", mb.worker, err)
	}
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("natsnet: mailbox of %s: sync: %w", mb.worker, ctx.Err())
	}
}

// Close implements allreduce.Mailbox: it unsubscribes and waits until the
// subscription's goroutine has ended (10s at most).
func (mb *Mailbox) Close() error {
	mb.closeOnce.Do(func() {
		mb.slowDrops()
		mb.closed.Store(true)
		mb.in.Close()
		if err := mb.sub.Unsubscribe(); err != nil && !errors.Is(err, nats.ErrBadSubscription) && !errors.Is(err, nats.ErrConnectionClosed) {
			mb.closeErr = fmt.Errorf("natsnet: unsubscribing %s: %w", mb.sub.Subject, err)
			return
		}
		t := time.NewTimer(10 * time.Second)
		defer t.Stop()
		select {
		case <-mb.done:
		case <-t.C:
			mb.closeErr = fmt.Errorf("natsnet: mailbox of %s: the subscription's goroutine has not ended after 10s", mb.worker)
		}
	})
	return mb.closeErr
}

// transport is one attempt's allreduce.Transport of a Mailbox.
type transport struct {
	mb   *Mailbox
	rx   *allreduce.Receiver
	subj []string // ring subject of each rank
	hdr  nats.Header
}

// Send publishes msg, labelled with the attempt, to rank to's ring subject.
// nats.go copies it into its write buffer and flushes it from its own
// goroutine. It is safe for concurrent use.
func (t *transport) Send(ctx context.Context, to int, msg []byte) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if t.mb.closed.Load() {
		return fmt.Errorf("natsnet: mailbox of %s: %w", t.mb.worker, allreduce.ErrClosed)
	}
	m := nats.Msg{Subject: t.subj[to], Header: t.hdr, Data: msg}
	if err := t.mb.conn.NC.PublishMsg(&m); err != nil {
		return fmt.Errorf("natsnet: publishing to %s: %w", t.subj[to], closedErr(err))
	}
	return nil
}

// Recv implements allreduce.Transport.
func (t *transport) Recv(ctx context.Context) ([]byte, error) { return t.rx.Recv(ctx) }

// Dropped is the mailbox's count of dropped messages (allreduce.AbortError
// reports it).
func (t *transport) Dropped() uint64 { return t.mb.Dropped() }

func closedErr(err error) error {
	if errors.Is(err, nats.ErrConnectionClosed) || errors.Is(err, nats.ErrBadSubscription) {
		return fmt.Errorf("%w: %w", allreduce.ErrClosed, err)
	}
	return err
}

// FormatAttempt is the value of AttemptHeader for h: "<epoch>.<step>.<run>",
// the numbers in decimal. h must be valid (allreduce.Header.Validate).
func FormatAttempt(h allreduce.Header) string {
	b := make([]byte, 0, 42+len(h.Run))
	b = strconv.AppendUint(b, h.Epoch, 10)
	b = append(b, '.')
	b = strconv.AppendUint(b, h.Step, 10)
	b = append(b, '.')
	b = append(b, h.Run...)
	return string(b)
}

// ErrBadAttempt is the error of an AttemptHeader value ParseAttempt cannot
// read.
var ErrBadAttempt = errors.New("natsnet: malformed attempt header")

// ParseAttempt reads an AttemptHeader value written by FormatAttempt. It
// accepts exactly what FormatAttempt writes for a valid header: decimal
// numbers without sign or leading zeros that fit in 64 bits, and a valid
// run id.
func ParseAttempt(s string) (allreduce.Header, error) {
	h, ok := parseAttempt(s)
	if !ok {
		return allreduce.Header{}, fmt.Errorf("%w: %q (want <epoch>.<step>.<run>)", ErrBadAttempt, s)
	}
	return h, nil
}

// parseAttempt is ParseAttempt without an error to allocate, for the
// receive path.
func parseAttempt(s string) (allreduce.Header, bool) {
	epoch, s, ok := parseDecimal(s)
	if !ok || len(s) == 0 || s[0] != '.' {
		return allreduce.Header{}, false
	}
	step, s, ok := parseDecimal(s[1:])
	if !ok || len(s) == 0 || s[0] != '.' {
		return allreduce.Header{}, false
	}
	h := allreduce.Header{Run: s[1:], Epoch: epoch, Step: step}
	if h.Validate() != nil {
		return allreduce.Header{}, false
	}
	return h, true
}

// parseDecimal reads a uint64 in canonical decimal from the start of s.
func parseDecimal(s string) (v uint64, rest string, ok bool) {
	i := 0
	for i < len(s) && '0' <= s[i] && s[i] <= '9' {
		d := uint64(s[i] - '0')
		if v > (1<<64-1-d)/10 {
			return 0, s, false // overflow
		}
		v = 10*v + d
		i++
	}
	if i == 0 || i > 1 && s[0] == '0' {
		return 0, s, false
	}
	return v, s[i:], true
}
