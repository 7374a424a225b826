package allreduce

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
)

// MemHub connects in-process Mailboxes directly: the in-memory counterpart
// of a NATS server for the ring, with the same semantics. Each MemMailbox
// files messages under the attempt they are labelled with, under the same
// rules and limits as the NATS mailbox (they share Inbox); a message to a
// worker with no open mailbox is lost; messages from one sender to one
// receiver keep their order; every message is copied, so no two workers
// share a payload (the copies' buffers are recycled, so a steady stream
// allocates nothing). It serves fast deterministic tests and the in-process
// ring of scaling experiments.
type MemHub struct {
	lim    Limits
	mu     sync.RWMutex
	boxes  map[memKey]*MemMailbox
	filter atomic.Pointer[MemFilter]
}

// MemFilter sees a message from worker from to worker to of job, labelled
// with attempt h, and drops it by returning false.
type MemFilter func(job, from, to string, h Header, msg []byte) bool

type memKey struct{ job, worker string }

// NewMemHub returns a hub whose mailboxes have limits lim (zero fields take
// their defaults).
func NewMemHub(lim Limits) *MemHub {
	return &MemHub{lim: lim.WithDefaults(), boxes: make(map[memKey]*MemMailbox)}
}

// Mailbox opens worker's mailbox in job. It listens when Mailbox returns. It
// fails if job or worker is empty, if the hub's limits are invalid, or if
// worker's mailbox in job is open already.
func (hub *MemHub) Mailbox(job, worker string) (*MemMailbox, error) {
	if job == "" || worker == "" {
		return nil, fmt.Errorf("%w: mem mailbox: empty job or worker name (%q, %q)", ErrBadRing, job, worker)
	}
	in, err := NewInbox(worker, hub.lim)
	if err != nil {
		return nil, fmt.Errorf("mem mailbox of %s in %s: %w", worker, job, err)
	}
	k := memKey{job, worker}
	hub.mu.Lock()
	defer hub.mu.Unlock()
	if _, ok := hub.boxes[k]; ok {
		return nil, fmt.Errorf("%w: mem mailbox of %s in %s is open already", ErrBadRing, worker, job)
	}
	mb := &MemMailbox{hub: hub, key: k, in: in}
	hub.boxes[k] = mb
	return mb, nil
}

// SetFilter installs f, which sees every message a mailbox's Transport sends
// before it is delivered and drops it by returning false. nil removes the
// filter. Messages put in with Inject do not pass it.
func (hub *MemHub) SetFilter(f MemFilter) {
	if f == nil {
		hub.filter.Store(nil)
		return
	}
	hub.filter.Store(&f)
}

// Inject delivers a copy of msg, labelled with attempt h, to worker's
// mailbox in job, as a client outside the ring would. It is lost if the
// mailbox is not open. It returns when the mailbox has filed or dropped it.
func (hub *MemHub) Inject(job, worker string, h Header, msg []byte) {
	hub.mu.RLock()
	mb := hub.boxes[memKey{job, worker}]
	hub.mu.RUnlock()
	if mb != nil {
		mb.in.FileCopy(h, msg)
	}
}

func (hub *MemHub) lookup(job, worker string) *MemMailbox {
	hub.mu.RLock()
	defer hub.mu.RUnlock()
	return hub.boxes[memKey{job, worker}]
}

// MemMailbox is one worker's Mailbox on a MemHub.
type MemMailbox struct {
	hub *MemHub
	key memKey
	in  *Inbox
}

// Begin implements Mailbox.
func (mb *MemMailbox) Begin(h Header, members []string, self int) (Transport, error) {
	rx, err := mb.in.Begin(h, members, self)
	if err != nil {
		return nil, err
	}
	return &memTransport{mb: mb, rx: rx, h: h, members: append([]string(nil), members...), dest: make([]atomic.Pointer[MemMailbox], len(members))}, nil
}

// Stats implements Mailbox.
func (mb *MemMailbox) Stats() MailboxStats { return mb.in.Stats() }

// Dropped implements Mailbox.
func (mb *MemMailbox) Dropped() uint64 { return mb.in.Stats().Dropped() }

// Limits are the mailbox's limits, defaults filled.
func (mb *MemMailbox) Limits() Limits { return mb.in.Limits() }

// Close implements Mailbox.
func (mb *MemMailbox) Close() error {
	mb.hub.mu.Lock()
	if mb.hub.boxes[mb.key] == mb {
		delete(mb.hub.boxes, mb.key)
	}
	mb.hub.mu.Unlock()
	mb.in.Close()
	return nil
}

// memTransport is one attempt's Transport of a MemMailbox.
type memTransport struct {
	mb      *MemMailbox
	rx      *Receiver
	h       Header
	members []string
	dest    []atomic.Pointer[MemMailbox] // cached destinations by rank
}

// Send copies msg into the mailbox of rank to; it is lost if that mailbox is
// not open. It is safe for concurrent use.
func (t *memTransport) Send(ctx context.Context, to int, msg []byte) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if t.mb.in.Closed() {
		return fmt.Errorf("mailbox of %s: %w", t.mb.key.worker, ErrClosed)
	}
	d := t.dest[to].Load()
	if d == nil || d.in.Closed() {
		d = t.mb.hub.lookup(t.mb.key.job, t.members[to])
		t.dest[to].Store(d)
	}
	if d == nil {
		return nil
	}
	if f := t.mb.hub.filter.Load(); f != nil && !(*f)(t.mb.key.job, t.mb.key.worker, t.members[to], t.h, msg) {
		return nil
	}
	d.in.FileCopy(t.h, msg)
	return nil
}

// Recv implements Transport.
func (t *memTransport) Recv(ctx context.Context) ([]byte, error) { return t.rx.Recv(ctx) }

// Dropped is the mailbox's count of dropped messages (see AbortError.Lost).
func (t *memTransport) Dropped() uint64 { return t.mb.Dropped() }
