package allreduce

import (
	"context"
	"fmt"
	"sync"
)

// MemNetwork is an in-memory ring of one job and epoch with addresses by
// rank, for unit tests of the Reducer (MemHub is the in-memory Mailbox, with
// the semantics of the NATS one). It is shaped like NATS core: a message
// sent to an address nobody listens on is lost, messages from one sender to
// one receiver keep their order, and every message is copied, so no two
// ranks share a payload. Receive queues are unbounded and their buffers
// recycled, so a steady stream of messages allocates nothing.
type MemNetwork struct {
	mu      sync.Mutex
	inboxes map[memAddr]*memInbox
	filter  func(job string, epoch uint64, from, to int, msg []byte) bool
}

type memAddr struct {
	job   string
	epoch uint64
	rank  int
}

// NewMemNetwork returns an empty network.
func NewMemNetwork() *MemNetwork {
	return &MemNetwork{inboxes: make(map[memAddr]*memInbox)}
}

// SetFilter installs f, which sees every message sent by an endpoint before
// it is delivered and drops it by returning false. nil removes the filter.
func (m *MemNetwork) SetFilter(f func(job string, epoch uint64, from, to int, msg []byte) bool) {
	m.mu.Lock()
	m.filter = f
	m.mu.Unlock()
}

// Endpoint starts listening as rank of job's ring in epoch and returns the
// rank's Transport. It panics if the address is already taken.
func (m *MemNetwork) Endpoint(job string, epoch uint64, rank int) *MemEndpoint {
	a := memAddr{job, epoch, rank}
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.inboxes[a]; ok {
		panic(fmt.Sprintf("allreduce: mem endpoint %s/%d/%d already listening", job, epoch, rank))
	}
	in := &memInbox{ready: make(chan struct{}, 1)}
	m.inboxes[a] = in
	return &MemEndpoint{net: m, addr: a, in: in}
}

// Publish delivers a copy of msg to rank's inbox of job's ring in epoch, as
// a client outside the ring would; the filter does not see it.
func (m *MemNetwork) Publish(job string, epoch uint64, rank int, msg []byte) {
	m.mu.Lock()
	in := m.inboxes[memAddr{job, epoch, rank}]
	m.mu.Unlock()
	if in != nil {
		in.put(msg)
	}
}

// MemEndpoint is one rank's Transport on a MemNetwork.
type MemEndpoint struct {
	net  *MemNetwork
	addr memAddr
	in   *memInbox
	// last destination, cached
	to   int
	toIn *memInbox
}

// Send copies msg into rank to's inbox; it is lost if to does not listen.
func (e *MemEndpoint) Send(ctx context.Context, to int, msg []byte) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	e.net.mu.Lock()
	if e.in.isClosed() {
		e.net.mu.Unlock()
		return ErrClosed
	}
	f := e.net.filter
	in := e.toIn
	if in == nil || e.to != to || in.isClosed() {
		in = e.net.inboxes[memAddr{e.addr.job, e.addr.epoch, to}]
		e.to, e.toIn = to, in
	}
	e.net.mu.Unlock()
	if in == nil || (f != nil && !f(e.addr.job, e.addr.epoch, e.addr.rank, to, msg)) {
		return nil
	}
	in.put(msg)
	return nil
}

// Recv waits for the next message. The message is valid until the next Recv.
func (e *MemEndpoint) Recv(ctx context.Context) ([]byte, error) {
	return e.in.get(ctx)
}

// Close stops listening; Send and Recv then return ErrClosed, and messages to
// this address are lost.
func (e *MemEndpoint) Close() error {
	e.net.mu.Lock()
	if e.net.inboxes[e.addr] == e.in {
		delete(e.net.inboxes, e.addr)
	}
	e.net.mu.Unlock()
	e.in.close()
	return nil
}

type memInbox struct {
	mu     sync.Mutex
	queue  [][]byte // FIFO: queue[head:]
	head   int
	free   [][]byte
	last   []byte // returned by the last get; recycled by the next
	closed bool
	ready  chan struct{} // a token when the queue may be non-empty
}

func (in *memInbox) isClosed() bool {
	in.mu.Lock()
	defer in.mu.Unlock()
	return in.closed
}

func (in *memInbox) put(msg []byte) {
	in.mu.Lock()
	if in.closed {
		in.mu.Unlock()
		return
	}
	var b []byte
	if k := len(in.free); k > 0 {
		b, in.free = in.free[k-1], in.free[:k-1]
	}
	b = append(b[:0], msg...)
	if in.head > 0 && in.head == len(in.queue) {
		in.queue, in.head = in.queue[:0], 0
	}
	in.queue = append(in.queue, b)
	in.mu.Unlock()
	select {
	case in.ready <- struct{}{}:
	default:
	}
}

func (in *memInbox) get(ctx context.Context) ([]byte, error) {
	for {
		in.mu.Lock()
		if in.last != nil {
			in.free = append(in.free, in.last)
			in.last = nil
		}
		if in.closed {
			in.mu.Unlock()
			return nil, ErrClosed
		}
		if in.head < len(in.queue) {
			b := in.queue[in.head]
			in.queue[in.head] = nil
			in.head++
			in.last = b
			in.mu.Unlock()
			return b, nil
		}
		in.mu.Unlock()
		select {
		case <-in.ready:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

func (in *memInbox) close() {
	in.mu.Lock()
	in.closed = true
	in.queue, in.free, in.last = nil, nil, nil
	in.mu.Unlock()
	select {
	case in.ready <- struct{}{}:
	default:
	}
}
