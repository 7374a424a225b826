package netem

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/klring/klring/allreduce"
)

// LinkQueue is how many messages one link holds in flight; a Send beyond
// waits, as on a full socket buffer.
const LinkQueue = 1024

// freeBuffers is how many message copies a Mailbox keeps for reuse.
const freeBuffers = 64

// Mailbox wraps an allreduce.Mailbox so that what its Transports send
// travels over modelled links: one link per destination worker, each with a
// goroutine that hands the link's messages, in order, to the wrapped
// mailbox's Transport at their modelled arrival time (Shaper). Receiving is
// the wrapped mailbox's own. Close stops the links, drops what they still
// carry, joins their goroutines and closes the wrapped mailbox.
type Mailbox struct {
	inner  allreduce.Mailbox
	worker string
	shaper *Shaper // nil: unshaped, Begin returns the wrapped Transport

	mu     sync.Mutex
	closed bool
	links  map[string]chan delayed
	free   [][]byte
	quit   chan struct{}
	wg     sync.WaitGroup
	lost   atomic.Uint64
	failed atomic.Uint64
}

// delayed is a message on a link: sent through t to rank to at time at.
type delayed struct {
	at  time.Time
	t   allreduce.Transport
	to  int
	msg []byte
}

// Wrap returns worker's mailbox inner with its outgoing links shaped by p.
// The random draws of the links (loss, jitter) come from seed mixed with
// worker's name, so a run repeats. The Mailbox owns inner from then on. A
// profile that shapes nothing adds nothing: Begin returns inner's
// Transports.
func Wrap(inner allreduce.Mailbox, worker string, p LinkProfile, seed uint64) (*Mailbox, error) {
	if err := p.Validate(); err != nil {
		return nil, err
	}
	m := &Mailbox{inner: inner, worker: worker, links: map[string]chan delayed{}, quit: make(chan struct{})}
	if p.Shaped() {
		m.shaper = NewShaper(p, seedFor(seed, worker))
	}
	return m, nil
}

// Begin implements allreduce.Mailbox.
func (m *Mailbox) Begin(h allreduce.Header, members []string, self int) (allreduce.Transport, error) {
	t, err := m.inner.Begin(h, members, self)
	if err != nil || m.shaper == nil {
		return t, err
	}
	return &transport{m: m, inner: t, members: append([]string(nil), members...)}, nil
}

// Stats implements allreduce.Mailbox: the wrapped mailbox's.
func (m *Mailbox) Stats() allreduce.MailboxStats { return m.inner.Stats() }

// Dropped implements allreduce.Mailbox: the wrapped mailbox's.
func (m *Mailbox) Dropped() uint64 { return m.inner.Dropped() }

// Lost is the number of messages the model lost (LinkProfile.Loss).
func (m *Mailbox) Lost() uint64 { return m.lost.Load() }

// Failed is the number of messages the wrapped Transport refused when they
// arrived (its mailbox closed, or the connection).
func (m *Mailbox) Failed() uint64 { return m.failed.Load() }

// Close implements allreduce.Mailbox.
func (m *Mailbox) Close() error {
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return nil
	}
	m.closed = true
	close(m.quit)
	m.mu.Unlock()
	m.wg.Wait()
	m.mu.Lock()
	m.links, m.free = nil, nil
	m.mu.Unlock()
	return m.inner.Close()
}

// link returns the queue of the link to worker to, starting it if needed.
func (m *Mailbox) link(to string) (chan delayed, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return nil, fmt.Errorf("netem: mailbox of %s: %w", m.worker, allreduce.ErrClosed)
	}
	ch := m.links[to]
	if ch == nil {
		ch = make(chan delayed, LinkQueue)
		m.links[to] = ch
		m.wg.Add(1)
		go m.run(ch)
	}
	return ch, nil
}

// run delivers one link's messages in order, each at its arrival time.
func (m *Mailbox) run(ch chan delayed) {
	defer m.wg.Done()
	t := time.NewTimer(time.Hour)
	t.Stop()
	for {
		select {
		case <-m.quit:
			return
		case d := <-ch:
			if wait := time.Until(d.at); wait > 0 {
				t.Reset(wait)
				select {
				case <-t.C:
				case <-m.quit:
					t.Stop()
					return
				}
			}
			if err := d.t.Send(context.Background(), d.to, d.msg); err != nil {
				m.failed.Add(1)
			}
			m.putBuf(d.msg)
		}
	}
}

func (m *Mailbox) getBuf() []byte {
	m.mu.Lock()
	defer m.mu.Unlock()
	if k := len(m.free); k > 0 {
		b := m.free[k-1]
		m.free[k-1] = nil
		m.free = m.free[:k-1]
		return b
	}
	return nil
}

func (m *Mailbox) putBuf(b []byte) {
	m.mu.Lock()
	if !m.closed && len(m.free) < freeBuffers {
		m.free = append(m.free, b[:0])
	}
	m.mu.Unlock()
}

// transport is one attempt's shaped Transport.
type transport struct {
	m       *Mailbox
	inner   allreduce.Transport
	members []string
}

// Send puts a copy of msg on the link to rank to, or loses it as the model
// says. It waits while the link holds LinkQueue messages.
func (t *transport) Send(ctx context.Context, to int, msg []byte) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	m := t.m
	ch, err := m.link(t.members[to])
	if err != nil {
		return err
	}
	at, lost := m.shaper.Schedule(m.worker, t.members[to], len(msg), time.Now())
	if lost {
		m.lost.Add(1)
		return nil
	}
	d := delayed{at: at, t: t.inner, to: to, msg: append(m.getBuf(), msg...)}
	select {
	case ch <- d:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-m.quit:
		return fmt.Errorf("netem: mailbox of %s: %w", m.worker, allreduce.ErrClosed)
	}
}

// Recv implements allreduce.Transport: the wrapped Transport's.
func (t *transport) Recv(ctx context.Context) ([]byte, error) { return t.inner.Recv(ctx) }

// Dropped is the wrapped mailbox's count (allreduce.AbortError reports it).
func (t *transport) Dropped() uint64 { return t.m.Dropped() }
