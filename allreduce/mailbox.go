package allreduce

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
)

// Mailbox is one worker's persistent end of a job's ring network. It
// listens from the moment it is made until Close, whatever attempt is
// running, and files every message under the attempt (run, epoch, step) it
// is labelled with, so a neighbour that starts an attempt earlier than this
// worker never loses a part to an address nobody listens on.
//
// Attempts of one run are ordered by (epoch, step) (Header.Less). A message
// of an attempt before the current one, or of a run a Begin has left, is
// dropped and counted; a message of a later attempt, or of a run not seen
// yet, waits in that attempt's queue. What a mailbox holds is bounded by its
// Limits; what does not fit is dropped and counted.
type Mailbox interface {
	// Begin starts attempt h among members, in ring order, of which
	// members[self] is this worker, and returns its Transport: rank i is
	// members[i]. Messages of h that arrived before Begin are delivered
	// first, in order. Queued messages of earlier attempts of h's run are
	// dropped and counted; a Begin with another run than the current one
	// drops everything queued for other runs, and from then on messages of
	// the run it left are stale, whatever their epoch (a restarted
	// coordinator starts epochs at 1 again). The Transport of the previous
	// Begin is superseded: its Recv returns ErrSuperseded. Begin fails, with
	// an error wrapping ErrBadHeader or ErrBadRing, for a header or a ring
	// that cannot be used, and with ErrClosed after Close.
	Begin(h Header, members []string, self int) (Transport, error)
	// Stats counts the messages the mailbox has seen and holds.
	Stats() MailboxStats
	// Dropped is Stats().Dropped(): messages dropped as stale, without a
	// readable attempt, over the limits, or below the mailbox (a slow
	// consumer).
	Dropped() uint64
	// Close stops listening: messages to this worker are lost from then on,
	// and Recv on any of its Transports returns ErrClosed. It may be called
	// more than once.
	Close() error
}

// Limits bound what one Mailbox holds, so that no flood of messages can
// exhaust memory: at most (Ahead+1)*Messages messages and (Ahead+1)*Bytes
// bytes of payload in all.
type Limits struct {
	// Ahead is the number of attempts besides the current one that may have
	// messages waiting. When they are all taken, a message of another
	// attempt of the current run replaces the farthest one if it is nearer,
	// and is dropped otherwise. Default 8.
	Ahead int
	// Messages bounds the messages waiting in the queue of one attempt.
	// Default 65536.
	Messages int
	// Bytes bounds the payload bytes waiting in the queue of one attempt.
	// Default 1 GiB.
	Bytes int
}

// DefaultLimits returns the defaults documented on Limits.
func DefaultLimits() Limits { return Limits{Ahead: 8, Messages: 1 << 16, Bytes: 1 << 30} }

// WithDefaults returns l with its zero fields replaced by their defaults.
func (l Limits) WithDefaults() Limits {
	d := DefaultLimits()
	if l.Ahead == 0 {
		l.Ahead = d.Ahead
	}
	if l.Messages == 0 {
		l.Messages = d.Messages
	}
	if l.Bytes == 0 {
		l.Bytes = d.Bytes
	}
	return l
}

// Validate checks every field and names the one that is wrong.
func (l Limits) Validate() error {
	switch {
	case l.Ahead < 1:
		return fmt.Errorf("%w: Ahead = %d, want >= 1", ErrBadLimits, l.Ahead)
	case l.Messages < 1:
		return fmt.Errorf("%w: Messages = %d, want >= 1", ErrBadLimits, l.Messages)
	case l.Bytes < 1:
		return fmt.Errorf("%w: Bytes = %d, want >= 1", ErrBadLimits, l.Bytes)
	}
	return nil
}

// MailboxStats counts what a Mailbox has seen since it was made, and what it
// holds now.
type MailboxStats struct {
	Received    uint64 // messages handed to the mailbox, filed or dropped
	Queued      int    // messages waiting now, over all attempts
	QueuedBytes int    // their payload bytes
	Stale       uint64 // dropped: of an attempt before the current one, or of a run that was left
	Unlabelled  uint64 // dropped: no readable attempt label
	OverLimit   uint64 // dropped: beyond the Limits, or replaced by a nearer attempt
	Lost        uint64 // dropped below the mailbox (nats.go's slow-consumer drops)
}

// Dropped is the number of messages dropped for any reason.
func (s MailboxStats) Dropped() uint64 { return s.Stale + s.Unlabelled + s.OverLimit + s.Lost }

// retiredRuns is how many runs a mailbox remembers having left.
const retiredRuns = 16

// freeBuffers is how many message buffers an Inbox that copies keeps for
// reuse.
const freeBuffers = 64

// Inbox is the filing half of a Mailbox, for its implementations: it queues
// messages by attempt under the rules and Limits documented on Mailbox, and
// hands the current attempt's messages to a Receiver. A transport calls File
// (or FileCopy) from its receiving side, Unlabelled for a message without a
// readable attempt, and Begin when the worker starts an attempt. All methods
// are safe for concurrent use.
type Inbox struct {
	worker string
	lim    Limits
	closed atomic.Bool

	mu      sync.Mutex
	started bool
	cur     Header
	curQ    *attemptQueue
	rx      *Receiver
	queues  map[Header]*attemptQueue // the current attempt's and those ahead
	retired []string                 // runs left, oldest first, at most retiredRuns
	copies  bool                     // FileCopy was used: buffers are recycled
	free    [][]byte                 // buffers for FileCopy, for reuse
	spare   []*attemptQueue
	st      MailboxStats
}

// attemptQueue is the FIFO of one attempt: msgs[head:].
type attemptQueue struct {
	h     Header
	msgs  [][]byte
	head  int
	bytes int
}

func (q *attemptQueue) len() int { return len(q.msgs) - q.head }

// NewInbox returns the inbox of worker (members[self] in every Begin) with
// limits lim; zero fields of lim take their defaults.
func NewInbox(worker string, lim Limits) (*Inbox, error) {
	lim = lim.WithDefaults()
	if err := lim.Validate(); err != nil {
		return nil, err
	}
	return &Inbox{worker: worker, lim: lim, queues: make(map[Header]*attemptQueue)}, nil
}

// Worker is the name the inbox was made for.
func (in *Inbox) Worker() string { return in.worker }

// Limits are the inbox's limits, defaults filled.
func (in *Inbox) Limits() Limits { return in.lim }

// File queues msg, labelled with attempt h, and takes ownership of it; it is
// dropped and counted if it is stale or does not fit.
func (in *Inbox) File(h Header, msg []byte) {
	if in.closed.Load() {
		return
	}
	in.mu.Lock()
	in.file(h, msg)
	in.mu.Unlock()
}

// FileCopy is File with a copy of msg, made in a buffer the inbox recycles
// once its Receiver has moved past it: msg may be reused when FileCopy
// returns.
func (in *Inbox) FileCopy(h Header, msg []byte) {
	if in.closed.Load() {
		return
	}
	in.mu.Lock()
	in.copies = true
	var b []byte
	if k := len(in.free); k > 0 {
		b, in.free[k-1] = in.free[k-1], nil
		in.free = in.free[:k-1]
	}
	in.mu.Unlock()
	// Copy outside the lock, so the receiver is never kept waiting on it.
	b = append(b[:0], msg...)
	in.mu.Lock()
	if !in.file(h, b) {
		in.recycle(b)
	}
	in.mu.Unlock()
}

// Unlabelled counts a message the transport could not file: it had no
// readable attempt label.
func (in *Inbox) Unlabelled() {
	in.mu.Lock()
	in.st.Received++
	in.st.Unlabelled++
	in.mu.Unlock()
}

// recycle keeps b for FileCopy if the inbox copies. in.mu is held.
func (in *Inbox) recycle(b []byte) {
	if in.copies && len(in.free) < freeBuffers && cap(b) > 0 {
		in.free = append(in.free, b)
	}
}

// file queues msg under h and reports whether it did. in.mu is held.
func (in *Inbox) file(h Header, msg []byte) bool {
	if in.closed.Load() {
		return false
	}
	in.st.Received++
	if in.started {
		if h.Run == in.cur.Run && h.Less(in.cur) || h.Run != in.cur.Run && in.isRetired(h.Run) {
			in.st.Stale++
			return false
		}
	}
	if len(msg) > in.lim.Bytes {
		in.st.OverLimit++
		return false
	}
	q := in.queues[h]
	if q == nil {
		if len(in.queues)-in.curCount() >= in.lim.Ahead && !in.evictFor(h) {
			in.st.OverLimit++
			return false
		}
		q = in.newQueue(h)
	}
	if q.len() >= in.lim.Messages || q.bytes+len(msg) > in.lim.Bytes {
		in.st.OverLimit++
		return false
	}
	if q.head > 0 && q.head == len(q.msgs) {
		clear(q.msgs)
		q.msgs, q.head = q.msgs[:0], 0
	}
	q.msgs = append(q.msgs, msg)
	q.bytes += len(msg)
	in.st.Queued++
	in.st.QueuedBytes += len(msg)
	if q == in.curQ && in.rx != nil {
		in.rx.wake()
	}
	return true
}

// curCount is 1 when the current attempt has a queue (it does not count
// against Limits.Ahead), else 0.
func (in *Inbox) curCount() int {
	if in.curQ != nil {
		return 1
	}
	return 0
}

// evictFor makes room for a queue of h by dropping the farthest queue ahead
// of the current run, if h is of the current run and nearer than it.
func (in *Inbox) evictFor(h Header) bool {
	if !in.started || h.Run != in.cur.Run {
		return false
	}
	var far *attemptQueue
	for k, q := range in.queues {
		if q != in.curQ && k.Run == in.cur.Run && (far == nil || far.h.Less(k)) {
			far = q
		}
	}
	if far == nil || !h.Less(far.h) {
		return false
	}
	in.st.OverLimit += uint64(far.len())
	in.dropQueue(far)
	return true
}

func (in *Inbox) newQueue(h Header) *attemptQueue {
	var q *attemptQueue
	if k := len(in.spare); k > 0 {
		q, in.spare = in.spare[k-1], in.spare[:k-1]
	} else {
		q = new(attemptQueue)
	}
	q.h = h
	in.queues[h] = q
	return q
}

// dropQueue removes q and its messages (uncounted: the caller counts them).
func (in *Inbox) dropQueue(q *attemptQueue) {
	for i := q.head; i < len(q.msgs); i++ {
		in.recycle(q.msgs[i])
	}
	in.st.Queued -= q.len()
	in.st.QueuedBytes -= q.bytes
	delete(in.queues, q.h)
	clear(q.msgs)
	q.msgs, q.head, q.bytes, q.h = q.msgs[:0], 0, 0, Header{}
	if len(in.spare) < in.lim.Ahead+1 {
		in.spare = append(in.spare, q)
	}
}

func (in *Inbox) isRetired(run string) bool {
	for _, r := range in.retired {
		if r == run {
			return true
		}
	}
	return false
}

// retire remembers that the mailbox left run, forgetting the oldest run
// left when it remembers retiredRuns already.
func (in *Inbox) retire(run string) {
	if in.isRetired(run) {
		return
	}
	if len(in.retired) == retiredRuns {
		in.retired = append(in.retired[:0], in.retired[1:]...)
	}
	in.retired = append(in.retired, run)
}

// unretire forgets that the mailbox left run: a Begin returns to it.
func (in *Inbox) unretire(run string) {
	for i, r := range in.retired {
		if r == run {
			in.retired = append(in.retired[:i], in.retired[i+1:]...)
			return
		}
	}
}

// CheckRing checks the arguments of a Begin of worker: a valid header, at
// least one member, self in range with members[self] == worker, and no
// member empty or named twice.
func CheckRing(h Header, members []string, self int, worker string) error {
	if err := h.Validate(); err != nil {
		return err
	}
	if len(members) == 0 {
		return fmt.Errorf("%w: no members", ErrBadRing)
	}
	if self < 0 || self >= len(members) {
		return fmt.Errorf("%w: self = %d of %d members", ErrBadRing, self, len(members))
	}
	if members[self] != worker {
		return fmt.Errorf("%w: members[%d] = %q, but this is worker %q", ErrBadRing, self, members[self], worker)
	}
	seen := make(map[string]int, len(members))
	for i, m := range members {
		if m == "" {
			return fmt.Errorf("%w: members[%d] is empty", ErrBadRing, i)
		}
		if j, ok := seen[m]; ok {
			return fmt.Errorf("%w: %q is members[%d] and members[%d]", ErrBadRing, m, j, i)
		}
		seen[m] = i
	}
	return nil
}

// Begin makes h the current attempt, drops what is queued for earlier
// attempts of its run and for other runs (counted as stale), supersedes the
// previous Receiver and returns h's. It checks h, members and self with
// CheckRing.
func (in *Inbox) Begin(h Header, members []string, self int) (*Receiver, error) {
	if err := CheckRing(h, members, self, in.worker); err != nil {
		return nil, err
	}
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.closed.Load() {
		return nil, fmt.Errorf("mailbox of %s: %w", in.worker, ErrClosed)
	}
	if in.started && h.Run != in.cur.Run {
		in.retire(in.cur.Run)
	}
	in.unretire(h.Run)
	in.cur, in.started = h, true
	for k, q := range in.queues {
		if k.Run != h.Run || k.Less(h) {
			in.st.Stale += uint64(q.len())
			in.dropQueue(q)
		}
	}
	q := in.queues[h]
	if q == nil {
		q = in.newQueue(h)
	}
	in.curQ = q
	if in.rx != nil {
		in.rx.superseded = true
		in.rx.wake()
	}
	in.rx = &Receiver{in: in, h: h, q: q, ready: make(chan struct{}, 1)}
	return in.rx, nil
}

// Stats returns the inbox's counters; Lost is always 0 (the transport
// below adds its own).
func (in *Inbox) Stats() MailboxStats {
	in.mu.Lock()
	defer in.mu.Unlock()
	return in.st
}

// Close drops everything queued and wakes the Receiver, whose Recv returns
// ErrClosed from then on. Messages filed later are ignored.
func (in *Inbox) Close() {
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.closed.Swap(true) {
		return
	}
	for _, q := range in.queues {
		in.dropQueue(q)
	}
	in.curQ, in.free, in.spare, in.copies = nil, nil, nil, false
	if in.rx != nil {
		in.rx.wake()
	}
}

// Closed reports whether Close was called.
func (in *Inbox) Closed() bool { return in.closed.Load() }

// Receiver hands out the messages of one attempt of an Inbox, in the order
// they were filed.
type Receiver struct {
	in         *Inbox
	h          Header
	q          *attemptQueue // valid while neither superseded nor closed
	ready      chan struct{} // a token when a message may be waiting, or the receiver was stopped
	superseded bool          // guarded by in.mu
	last       []byte        // returned by the last Recv; recycled by the next
}

// wake leaves a token for a waiting Recv. in.mu is held.
func (r *Receiver) wake() {
	select {
	case r.ready <- struct{}{}:
	default:
	}
}

// Recv waits for the next message of the attempt. The message is valid until
// the next call of Recv. It returns ErrClosed once the inbox is closed,
// ErrSuperseded once a later Begin has replaced this Receiver, and ctx's
// error when ctx ends first. Only one goroutine may call Recv at a time.
func (r *Receiver) Recv(ctx context.Context) ([]byte, error) {
	in := r.in
	for {
		in.mu.Lock()
		if r.last != nil {
			in.recycle(r.last)
			r.last = nil
		}
		switch {
		case in.closed.Load():
			in.mu.Unlock()
			return nil, fmt.Errorf("mailbox of %s: %w", in.worker, ErrClosed)
		case r.superseded:
			in.mu.Unlock()
			return nil, fmt.Errorf("mailbox of %s: %v: %w", in.worker, r.h, ErrSuperseded)
		case r.q.len() > 0:
			q := r.q
			b := q.msgs[q.head]
			q.msgs[q.head] = nil
			q.head++
			q.bytes -= len(b)
			in.st.Queued--
			in.st.QueuedBytes -= len(b)
			if in.copies {
				r.last = b
			}
			in.mu.Unlock()
			return b, nil
		}
		in.mu.Unlock()
		select {
		case <-r.ready:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}
