package cluster

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/klring/klring/allreduce"
)

// The ring's NATS transport for the cluster. Each worker listens, from the
// moment it joins, on one subject of its own, klring.<job>.ring.<worker>, and
// every ring message carries its (epoch, step) in a NATS header. Messages of
// an (epoch, step) this worker has not started yet wait in a queue of their
// own, so a fast neighbour that starts a step earlier never loses a part to a
// subscription that does not exist yet; messages of an attempt that is over
// are dropped and counted.

const ringHeader = "Klring-Attempt"

type attemptKey struct{ epoch, step uint64 }

func (k attemptKey) less(o attemptKey) bool {
	return k.epoch < o.epoch || k.epoch == o.epoch && k.step < o.step
}

// mailbox is one worker's end of the ring network.
type mailbox struct {
	nc     *nats.Conn
	prefix string // klring.<job>.ring.
	sub    *nats.Subscription
	max    int // messages buffered per attempt, at most

	id     string
	local  *localNet   // nil: ring messages travel over NATS
	shaper *linkShaper // nil: messages go out at once
	lmu    sync.Mutex
	links  map[string]chan delayedMsg
	lwg    sync.WaitGroup

	mu      sync.Mutex
	cur     attemptKey
	queues  map[attemptKey]*msgQueue
	dropped atomic.Uint64
}

type msgQueue struct {
	msgs  [][]byte
	ready chan struct{} // one token when msgs is not empty
}

// delayedMsg is a ring message held back by the network model until it
// arrives.
type delayedMsg struct {
	at  time.Time
	msg *nats.Msg
	key attemptKey
	to  string
}

func newMailbox(nc *nats.Conn, job, id string, maxBuffered int, profile LinkProfile, local *localNet) (*mailbox, error) {
	mb := &mailbox{nc: nc, prefix: "klring." + job + ".ring.", id: id, max: maxBuffered, queues: map[attemptKey]*msgQueue{}, local: local}
	if local != nil {
		local.add(id, mb)
	}
	if profile.shaped() || local != nil {
		mb.shaper = newLinkShaper(profile, uint64(len(id))*0x9e3779b97f4a7c15^uint64(id[0]))
		mb.links = map[string]chan delayedMsg{}
	}
	sub, err := nc.Subscribe(mb.prefix+id, mb.deliver)
	if err != nil {
		return nil, fmt.Errorf("subscribing to the ring: %w", err)
	}
	if err := sub.SetPendingLimits(-1, -1); err != nil {
		sub.Unsubscribe()
		return nil, fmt.Errorf("subscribing to the ring: %w", err)
	}
	if err := nc.Flush(); err != nil {
		sub.Unsubscribe()
		return nil, fmt.Errorf("subscribing to the ring: %w", err)
	}
	mb.sub = sub
	return mb, nil
}

func (mb *mailbox) close() {
	if mb == nil {
		return
	}
	if mb.sub != nil {
		mb.sub.Unsubscribe()
	}
	if mb.local != nil {
		mb.local.remove(mb.id, mb)
	}
	mb.lmu.Lock()
	for k, ch := range mb.links {
		close(ch)
		delete(mb.links, k)
	}
	mb.lmu.Unlock()
	mb.lwg.Wait()
}

// publish sends m (a ring message of attempt k) to worker to: now over NATS,
// or through the network model and/or the in-process links when there are.
func (mb *mailbox) publish(to string, k attemptKey, m *nats.Msg) error {
	if mb.shaper == nil && mb.local == nil {
		return mb.nc.PublishMsg(m)
	}
	var at time.Time
	if mb.shaper != nil {
		var lost bool
		at, lost = mb.shaper.schedule(mb.id, to, len(m.Data)+len(m.Subject)+64, time.Now())
		if lost {
			return nil
		}
	}
	m.Data = append([]byte(nil), m.Data...) // the caller reuses its buffer
	if mb.shaper == nil {
		mb.local.send(to, k, m.Data)
		return nil
	}
	mb.lmu.Lock()
	ch := mb.links[to]
	if ch == nil {
		ch = make(chan delayedMsg, 1<<14)
		mb.links[to] = ch
		mb.lwg.Add(1)
		go mb.deliverLink(ch)
	}
	mb.lmu.Unlock()
	ch <- delayedMsg{at: at, msg: m, key: k, to: to}
	return nil
}

// deliverLink hands one link's messages on in order, each at its arrival
// time: the network model's latency and bandwidth, not synchronisation.
func (mb *mailbox) deliverLink(ch chan delayedMsg) {
	defer mb.lwg.Done()
	t := time.NewTimer(0)
	defer t.Stop()
	for d := range ch {
		if wait := time.Until(d.at); wait > 0 {
			t.Reset(wait)
			<-t.C
		}
		if mb.local != nil {
			mb.local.send(d.to, d.key, d.msg.Data)
		} else {
			mb.nc.PublishMsg(d.msg)
		}
	}
}

// localNet connects the mailboxes of the workers of one process directly:
// in simulation mode's scaling experiments ring messages then cost a copy
// rather than a trip through the NATS server, so that the network model, not
// this machine's CPU, sets the time of the all-reduce.
type localNet struct {
	mu    sync.Mutex
	boxes map[string]*mailbox
}

func newLocalNet() *localNet { return &localNet{boxes: map[string]*mailbox{}} }

func (n *localNet) add(id string, mb *mailbox) {
	n.mu.Lock()
	n.boxes[id] = mb
	n.mu.Unlock()
}

func (n *localNet) remove(id string, mb *mailbox) {
	n.mu.Lock()
	if n.boxes[id] == mb {
		delete(n.boxes, id)
	}
	n.mu.Unlock()
}

// send delivers data to worker to's mailbox; it is lost if to is gone, as
// on NATS.
func (n *localNet) send(to string, k attemptKey, data []byte) {
	n.mu.Lock()
	mb := n.boxes[to]
	n.mu.Unlock()
	if mb != nil {
		mb.file(k, data)
	}
}

func parseAttempt(s string) (attemptKey, bool) {
	e, st, ok := strings.Cut(s, ".")
	if !ok {
		return attemptKey{}, false
	}
	ep, err1 := strconv.ParseUint(e, 10, 64)
	sp, err2 := strconv.ParseUint(st, 10, 64)
	return attemptKey{ep, sp}, err1 == nil && err2 == nil
}

// deliver runs on the subscription's goroutine: it files the message under
// its attempt.
func (mb *mailbox) deliver(m *nats.Msg) {
	k, ok := parseAttempt(m.Header.Get(ringHeader))
	if !ok {
		mb.dropped.Add(1)
		return
	}
	mb.file(k, m.Data)
}

// file queues data under attempt k.
func (mb *mailbox) file(k attemptKey, data []byte) {
	mb.mu.Lock()
	defer mb.mu.Unlock()
	if k.less(mb.cur) {
		mb.dropped.Add(1)
		return
	}
	q := mb.queues[k]
	if q == nil {
		if len(mb.queues) >= 8 {
			mb.dropped.Add(1) // too many attempts ahead: not a ring we will run
			return
		}
		q = &msgQueue{ready: make(chan struct{}, 1)}
		mb.queues[k] = q
	}
	if len(q.msgs) >= mb.max {
		mb.dropped.Add(1)
		return
	}
	q.msgs = append(q.msgs, data)
	select {
	case q.ready <- struct{}{}:
	default:
	}
}

// begin starts attempt k: older queues are dropped; k's queue is returned.
func (mb *mailbox) begin(k attemptKey) *msgQueue {
	mb.mu.Lock()
	defer mb.mu.Unlock()
	if mb.cur.less(k) {
		mb.cur = k
	}
	for key, q := range mb.queues {
		if key.less(mb.cur) {
			mb.dropped.Add(uint64(len(q.msgs)))
			delete(mb.queues, key)
		}
	}
	q := mb.queues[k]
	if q == nil {
		q = &msgQueue{ready: make(chan struct{}, 1)}
		mb.queues[k] = q
	}
	return q
}

// ringTransport is an allreduce.Transport for one attempt.
type ringTransport struct {
	mb      *mailbox
	key     attemptKey
	q       *msgQueue
	members []string
	hdr     nats.Header
	sent    int
	onSend  func(sent int)
}

func (mb *mailbox) transport(k attemptKey, members []string) *ringTransport {
	return &ringTransport{mb: mb, key: k, q: mb.begin(k), members: members,
		hdr: nats.Header{ringHeader: []string{fmt.Sprintf("%d.%d", k.epoch, k.step)}}}
}

func (t *ringTransport) Send(ctx context.Context, to int, msg []byte) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	m := &nats.Msg{Subject: t.mb.prefix + t.members[to], Header: t.hdr, Data: msg}
	if t.mb.nc.IsClosed() {
		return fmt.Errorf("%w: %w", allreduce.ErrClosed, nats.ErrConnectionClosed)
	}
	if err := t.mb.publish(t.members[to], t.key, m); err != nil {
		if errors.Is(err, nats.ErrConnectionClosed) {
			return fmt.Errorf("%w: %w", allreduce.ErrClosed, err)
		}
		return err
	}
	t.sent++
	if t.onSend != nil {
		t.onSend(t.sent)
	}
	return nil
}

func (t *ringTransport) Recv(ctx context.Context) ([]byte, error) {
	for {
		t.mb.mu.Lock()
		if len(t.q.msgs) > 0 {
			m := t.q.msgs[0]
			t.q.msgs[0] = nil
			t.q.msgs = t.q.msgs[1:]
			t.mb.mu.Unlock()
			return m, nil
		}
		t.mb.mu.Unlock()
		if t.mb.nc.IsClosed() {
			return nil, allreduce.ErrClosed
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-t.q.ready:
		}
	}
}

// ringCall is one all-reduce of a step.
type ringCall struct {
	run     string
	epoch   uint64
	step    uint64
	rank    int
	members []string
	data    []float32
	onSend  func(sent int) // tests: called after each part sent
}

// stepRing runs one all-reduce.
type stepRing func(ctx context.Context, c ringCall, owned func(off int, seg []float32)) error

// ringFactory returns the ring of a worker for a chunk size.
type ringFactory func(chunkBytes int) stepRing

// natsRing builds a worker's ring over its mailbox.
func natsRing(mb *mailbox) ringFactory {
	red := allreduce.NewReducer()
	return func(chunkBytes int) stepRing {
		return func(ctx context.Context, c ringCall, owned func(off int, seg []float32)) error {
			k := attemptKey{c.epoch, c.step}
			t := mb.transport(k, c.members)
			t.onSend = c.onSend
			opts := allreduce.Options{ChunkBytes: chunkBytes}
			return red.AllReduce(ctx, t, allreduce.Header{Run: c.run, Epoch: c.epoch, Step: c.step}, c.rank, len(c.members), c.data, opts, owned)
		}
	}
}
