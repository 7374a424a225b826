package allreduce

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
)

// Transport moves encoded ring messages from one rank to the others of one
// ring (one attempt: run, membership epoch and step). Each rank has its own
// Transport; Mailbox.Begin makes them. Messages between two ranks arrive in
// the order they were sent, or not at all: a lost message is detected by the
// all-reduce's deadline.
//
// A Transport that also has a method Dropped() uint64 (a Mailbox's count of
// dropped messages) has the messages it dropped during an all-reduce named
// in the all-reduce's AbortError.
type Transport interface {
	// Send delivers msg to rank to of the ring. It must not keep msg
	// after it returns.
	Send(ctx context.Context, to int, msg []byte) error
	// Recv waits for the next message addressed to this rank. The message
	// is valid until the next call of Recv.
	Recv(ctx context.Context) ([]byte, error)
}

// Stats counts the messages a Reducer has seen, over all its calls.
type Stats struct {
	Applied     uint64 // parts added or copied into a vector
	Sent        uint64 // parts sent
	SentBytes   uint64 // bytes of the parts sent, envelopes included
	Malformed   uint64 // not a well-formed envelope
	ForeignRun  uint64 // another run id
	StaleEpoch  uint64 // another epoch
	StaleStep   uint64 // an earlier step
	FutureStep  uint64 // a later step (read only when the current step is failing)
	WrongSender uint64 // not from the left neighbour
	BadLength   uint64 // float bytes that do not match the part's length
	WrongWire   uint64 // a part encoded on another wire (Options.Wire) than this rank's
	BadChecksum uint64 // float bytes whose CRC-32C is not the envelope's: corrupted on the way
	Unexpected  uint64 // a part this rank does not receive, a duplicate or out of order
}

// Dropped is the number of messages dropped for any reason.
func (s Stats) Dropped() uint64 {
	return s.Malformed + s.ForeignRun + s.StaleEpoch + s.StaleStep + s.FutureStep + s.WrongSender + s.BadLength + s.WrongWire + s.BadChecksum + s.Unexpected
}

type counters struct {
	applied, sent, sentBytes, malformed, foreignRun, staleEpoch, staleStep, futureStep, wrongSender, badLength, wrongWire, badChecksum, unexpected atomic.Uint64
}

// AbortError is the error of an all-reduce that could not finish. It names
// the first part the rank was still waiting for and the link it should have
// come over.
type AbortError struct {
	Rank, N  int    // this rank, of N
	From     int    // the left neighbour: the link From -> Rank
	Header   Header // the all-reduce
	Missing  PartID // the first part not received
	Received int    // parts received
	Expected int    // parts expected in all
	Dropped  uint64 // messages dropped by the Reducer during the call
	// Corrupt is how many of them were dropped because their floats did not
	// match their CRC-32C (Stats.BadChecksum): the part waited for may have
	// arrived corrupted.
	Corrupt uint64
	// Wire is this rank's wire (Options.Wire).
	Wire Wire
	// WrongWire is how many of them were dropped because they were encoded
	// on another wire than this rank's (Stats.WrongWire): a neighbour runs
	// with another allreduce wire.
	WrongWire uint64
	// Lost is the number of messages the transport's mailbox dropped during
	// the call (stale, unlabelled, over its limits, nats.go's slow-consumer
	// drops), if the transport has a Dropped() uint64 method.
	Lost uint64
	Err  error // ErrDeadline, ErrClosed, ErrSuperseded, context.Canceled or a transport error
}

func (e *AbortError) Error() string {
	corrupt := ""
	if e.Corrupt > 0 {
		corrupt = fmt.Sprintf(" (%d with a bad checksum)", e.Corrupt)
	}
	if e.WrongWire > 0 {
		corrupt += fmt.Sprintf(" (%d encoded on another wire than this rank's %v)", e.WrongWire, e.Wire)
	}
	return fmt.Sprintf("allreduce: rank %d of %d waiting on link %d->%d for (epoch %d, step %d, from %d, %v): received %d of %d parts, dropped %d messages%s, mailbox dropped %d: %v",
		e.Rank, e.N, e.From, e.Rank, e.Header.Epoch, e.Header.Step, e.From, e.Missing, e.Received, e.Expected, e.Dropped, corrupt, e.Lost, e.Err)
}

func (e *AbortError) Unwrap() error { return e.Err }

// Reducer runs all-reduces and keeps their buffers: one message buffer of
// ChunkBytes, the schedule's bookkeeping and the copies of held parts,
// allocated again only when they must grow. A Reducer runs one all-reduce at
// a time; its Stats may be read at any time.
type Reducer struct {
	ring  Ring
	start []PartID
	held  []PartID
	keep  map[PartID][]byte // parts held for their bucket, by part
	spare [][]byte          // buffers of held parts, for reuse
	buf   []byte
	c     counters
}

// NewReducer returns a Reducer with no buffers yet.
func NewReducer() *Reducer { return new(Reducer) }

// Stats returns the counters accumulated over all calls.
func (r *Reducer) Stats() Stats {
	return Stats{
		Applied: r.c.applied.Load(), Sent: r.c.sent.Load(), SentBytes: r.c.sentBytes.Load(), Malformed: r.c.malformed.Load(),
		ForeignRun: r.c.foreignRun.Load(), StaleEpoch: r.c.staleEpoch.Load(), StaleStep: r.c.staleStep.Load(),
		FutureStep: r.c.futureStep.Load(), WrongSender: r.c.wrongSender.Load(), BadLength: r.c.badLength.Load(), WrongWire: r.c.wrongWire.Load(),
		BadChecksum: r.c.badChecksum.Load(), Unexpected: r.c.unexpected.Load(),
	}
}

// AllReduce is (*Reducer).AllReduce with a fresh Reducer: it allocates its
// buffers on every call.
func AllReduce(ctx context.Context, t Transport, h Header, rank, n int, data []float32, opts Options, owned func(offset int, seg []float32)) error {
	return new(Reducer).AllReduce(ctx, t, h, rank, n, data, opts, owned)
}

// AllReduce replaces data, on each of the n ranks, by the element-wise sum of
// data over all ranks, with a ring reduce-scatter followed by a ring
// all-gather over t. Every rank must call it with the same h, n, len(data)
// and opts.ChunkBytes, and its own rank in [0, n).
//
// Each segment of the vector is reduced once, by its owner, and then copied,
// so on success data is bit-identical on every rank. If owned is not nil it
// is called, on the calling goroutine, once for each part of the segment this
// rank owns once that part is fully reduced and sent on for the all-gather,
// with the part's offset into
// data and the part itself (a slice of data that AllReduce does not change
// again); the parts cover the owned segment exactly once. With n == 1 it is
// called once with the whole of data.
//
// The call ends by opts.Deadline after it starts or by ctx's deadline,
// whichever is first; with neither it returns ErrNoDeadline at once. If it
// cannot finish it returns an *AbortError naming the first part it was
// waiting for; data then holds a partial result and must not be used.
// Messages that do not belong to this all-reduce are dropped and counted in
// Stats, never applied. It panics if n < 1 or rank is not in [0, n).
func (r *Reducer) AllReduce(ctx context.Context, t Transport, h Header, rank, n int, data []float32, opts Options, owned func(offset int, seg []float32)) error {
	return r.run(ctx, t, h, rank, n, data, opts, nil, owned)
}

// AllReduceBuckets is AllReduce for a vector that becomes final bucket by
// bucket, such as a gradient that backward computes from the last layer to
// the first: the buckets are opts.Buckets(len(data), n), and ready receives
// each bucket's index once, as soon as the caller's floats in it are final.
// The call starts sending a bucket's parts when it comes through ready, and
// holds (copies) a part received for a bucket that has not come yet until
// it has. Until bucket b comes through ready the call neither reads nor
// writes data's floats in b, so the caller may still be writing them on
// another goroutine; a send on ready orders those writes before the call's
// reads.
//
// The sums are those of AllReduce, bit for bit, whatever the buckets, the
// order of the ready buckets and the moments they come (on every wire): a
// bucket changes when a rank sends a float, never the chain of ranks that
// sums it. Ranks need not even agree on opts.BucketBytes.
//
// A bucket index out of range or sent twice ends the call with an
// *AbortError wrapping ErrBadBucket; ready closed before every bucket came,
// with one wrapping ErrNotReady (the caller gave up: its vector will never
// be final).
func (r *Reducer) AllReduceBuckets(ctx context.Context, t Transport, h Header, rank, n int, data []float32, opts Options, ready <-chan int, owned func(offset int, seg []float32)) error {
	if ready == nil {
		panic("allreduce: AllReduceBuckets without a ready channel")
	}
	return r.run(ctx, t, h, rank, n, data, opts, ready, owned)
}

// run is AllReduce with ready nil (the whole vector ready at once), else
// AllReduceBuckets.
func (r *Reducer) run(ctx context.Context, t Transport, h Header, rank, n int, data []float32, opts Options, ready <-chan int, owned func(offset int, seg []float32)) error {
	if n < 1 || rank < 0 || rank >= n {
		panic(fmt.Sprintf("allreduce: rank %d of %d", rank, n))
	}
	if err := opts.Validate(); err != nil {
		return err
	}
	if err := h.Validate(); err != nil {
		return err
	}
	if opts.Deadline > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, opts.Deadline)
		defer cancel()
	} else if _, ok := ctx.Deadline(); !ok {
		return ErrNoDeadline
	}
	if opts.Residual != nil && len(opts.Residual) != len(data) {
		return fmt.Errorf("%w: a Residual of %d floats for a vector of %d", ErrBadOptions, len(opts.Residual), len(data))
	}
	clear(opts.Residual)
	plan := NewPlan(len(data), n, opts.PartFloats())
	c := r.newCall(ctx, t, h, rank, plan, data, opts, owned)
	if ready == nil {
		r.ring.Reset(rank, plan)
		return c.runAll()
	}
	r.ring.ResetBuckets(rank, plan.Buckets(opts.BucketFloats()))
	return c.runBuckets(ready)
}

// call is one all-reduce of a Reducer.
type call struct {
	r       *Reducer
	ctx     context.Context
	t       Transport
	h       Header
	rank    int
	plan    Plan
	data    []float32
	opts    Options
	owned   func(offset int, seg []float32)
	bf16    bool
	exact   int // floats from exact on travel as float32
	e       envelope
	dropped uint64 // the Reducer's drops, corrupt parts, parts of another wire and the transport's drops when the call began
	corrupt uint64
	wrongW  uint64
	lost    uint64
}

func (r *Reducer) newCall(ctx context.Context, t Transport, h Header, rank int, plan Plan, data []float32, opts Options, owned func(int, []float32)) *call {
	if cap(r.buf) < opts.ChunkBytes {
		r.buf = make([]byte, 0, opts.ChunkBytes)
	}
	return &call{r: r, ctx: ctx, t: t, h: h, rank: rank, plan: plan, data: data, opts: opts, owned: owned,
		bf16: opts.Wire == WireBF16, exact: len(data) - min(opts.ExactTail, len(data)),
		dropped: r.Stats().Dropped(), corrupt: r.c.badChecksum.Load(), wrongW: r.c.wrongWire.Load(), lost: transportDropped(t)}
}

// runAll runs an all-reduce whose vector is ready: it sends the rank's own
// parts, then applies what it receives until the ring is done.
func (c *call) runAll() error {
	ring := &c.r.ring
	if c.plan.N == 1 {
		if c.owned != nil {
			c.owned(0, c.data)
		}
		return nil
	}
	c.r.start = ring.Start(c.r.start[:0])
	if err := c.sendOwn(c.r.start); err != nil {
		return c.abort(err)
	}
	for !ring.Done() {
		msg, err := c.t.Recv(c.ctx)
		if err != nil {
			return c.abort(err)
		}
		if err := c.receive(msg, false); err != nil {
			return c.abort(err)
		}
	}
	return nil
}

// received is a message (or the error) of the receiving goroutine of
// runBuckets.
type received struct {
	msg []byte
	err error
}

// runBuckets runs an all-reduce whose buckets become ready through ready.
// Messages are received on a goroutine of their own, so that a bucket made
// ready is sent at once, whether a message is coming or not; each is
// handled before the next is received (a Transport's message is valid until
// the next Recv).
func (c *call) runBuckets(ready <-chan int) error {
	ring := &c.r.ring
	rctx, stop := context.WithCancel(c.ctx)
	msgs, next := make(chan received), make(chan struct{})
	var wg sync.WaitGroup
	defer func() { stop(); wg.Wait(); c.releaseHeld() }()
	if c.plan.N > 1 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				msg, err := c.t.Recv(rctx)
				select {
				case msgs <- received{msg, err}:
				case <-rctx.Done():
					return
				}
				if err != nil {
					return
				}
				select {
				case <-next:
				case <-rctx.Done():
					return
				}
			}
		}()
	}
	for pending := ring.Buckets().Count(); pending > 0 || !ring.Done(); {
		select {
		case b, ok := <-ready:
			if !ok {
				return c.abort(ErrNotReady)
			}
			if err := c.ready(b); err != nil {
				return c.abort(err)
			}
			pending--
		case m := <-msgs:
			if m.err != nil {
				return c.abort(m.err)
			}
			err := c.receive(m.msg, true)
			select {
			case next <- struct{}{}:
			case <-c.ctx.Done(): // the receiver has stopped with it
				return c.abort(c.ctx.Err())
			}
			if err != nil {
				return c.abort(err)
			}
		case <-c.ctx.Done():
			return c.abort(c.ctx.Err())
		}
	}
	if c.plan.N == 1 && c.owned != nil {
		c.owned(0, c.data)
	}
	return nil
}

// ready marks bucket b ready: it sends the rank's own parts of b and applies
// the parts of b held so far.
func (c *call) ready(b int) error {
	r := c.r
	var err error
	r.start, r.held, err = r.ring.Ready(b, r.start[:0], r.held[:0])
	if err != nil {
		return err
	}
	if err := c.sendOwn(r.start); err != nil {
		return err
	}
	for _, id := range r.held {
		msg := r.keep[id]
		delete(r.keep, id)
		err := c.receive(msg, false)
		r.spare = append(r.spare, msg[:0])
		if err != nil {
			return err
		}
	}
	return nil
}

// releaseHeld keeps the buffers of parts still held for reuse.
func (c *call) releaseHeld() {
	for id, msg := range c.r.keep {
		c.r.spare = append(c.r.spare, msg[:0])
		delete(c.r.keep, id)
	}
}

// sendOwn sends the rank's own parts ids, on hop 0 of the reduce-scatter.
func (c *call) sendOwn(ids []PartID) error {
	for _, id := range ids {
		off, m := c.plan.Part(id.Segment, id.Part)
		if err := c.send(id, off, c.data[off:off+m], nil, nil, true); err != nil {
			return err
		}
	}
	return nil
}

// res is where the residuals of the part at off of nb rounded floats go,
// nil when they are not kept.
func (c *call) res(off, nb int) []float32 {
	if c.opts.Residual == nil {
		return nil
	}
	return c.opts.Residual[off : off+nb]
}

// send sends part id, at offset off, with the floats x, or x + in when in is
// not nil; on the bf16 wire it rounds what it sends, keeping the residuals
// when round is set. crc, when not nil, is the CRC-32C of the bytes sent,
// known already (a copy forwarded unchanged).
func (c *call) send(id PartID, off int, x []float32, in []byte, crc *uint32, round bool) error {
	r := c.r
	var fl []byte
	nb := rounded(c.opts.Wire, c.exact, off, len(x))
	r.buf, fl = appendHeader(r.buf[:0], c.h, id, c.rank, c.opts.Wire, wireBytes(len(x), nb))
	var rs []float32
	if round {
		rs = c.res(off, nb)
	}
	switch {
	case !c.bf16 && in == nil:
		putFloats(fl, x)
	case !c.bf16:
		sumFloats(fl, x, in)
	case in == nil:
		putBF16(fl, x, nb, rs)
	default:
		sumBF16(fl, x, in, nb, rs)
	}
	if crc != nil {
		sealMessageWith(r.buf, fl, *crc)
	} else {
		sealMessage(r.buf, fl)
	}
	if err := c.t.Send(c.ctx, c.r.ring.Right(), r.buf); err != nil {
		return err
	}
	r.c.sent.Add(1)
	r.c.sentBytes.Add(uint64(len(r.buf)))
	return nil
}

// abort returns the AbortError of err.
func (c *call) abort(err error) error {
	ring := &c.r.ring
	miss, _ := ring.Missing()
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		err = fmt.Errorf("%w: %w", ErrDeadline, err)
	case errors.Is(err, ErrClosed) || errors.Is(err, ErrSuperseded) || errors.Is(err, context.Canceled) ||
		errors.Is(err, ErrBadBucket) || errors.Is(err, ErrNotReady):
	default:
		err = fmt.Errorf("transport: %w", err)
	}
	r := c.r
	return &AbortError{Rank: c.rank, N: c.plan.N, From: ring.Left(), Header: c.h, Missing: miss,
		Received: ring.Received(), Expected: ring.Expected(), Dropped: r.Stats().Dropped() - c.dropped, Corrupt: r.c.badChecksum.Load() - c.corrupt,
		Wire: c.opts.Wire, WrongWire: r.c.wrongWire.Load() - c.wrongW, Lost: transportDropped(c.t) - c.lost, Err: err}
}

// receive checks a received message and applies it, or drops and counts
// it; with keep, a part of a bucket not ready yet is copied and held (the
// message itself is not kept). It returns only the errors of sending.
func (c *call) receive(msg []byte, keep bool) error {
	r, ring, e := c.r, &c.r.ring, &c.e
	if err := decodeEnvelope(msg, e); err != nil {
		r.c.malformed.Add(1)
		return nil
	}
	id, off, m, nb, bad := accept(e, c.h, ring.Left(), c.plan, c.opts.Wire, c.exact, &r.c)
	if bad != nil {
		bad.Add(1)
		return nil
	}
	if !ring.Awaits(id) {
		r.c.unexpected.Add(1)
		return nil
	}
	if checksum(e.data) != uint32(e.crc) {
		// Corrupted on the way: never applied. The part stays missing,
		// and the call ends in an abort naming it.
		r.c.badChecksum.Add(1)
		return nil
	}
	st, err := ring.Deliver(id)
	if err != nil {
		r.c.unexpected.Add(1)
		return nil
	}
	if st.Hold {
		if !keep {
			panic("allreduce: a part held twice") // Ready made its bucket ready
		}
		var b []byte
		if k := len(r.spare); k > 0 {
			b, r.spare = r.spare[k-1], r.spare[:k-1]
		}
		if r.keep == nil {
			r.keep = make(map[PartID][]byte)
		}
		r.keep[id] = append(b, msg...)
		return nil
	}
	return c.apply(st, off, m, nb, e.data, uint32(e.crc))
}

// apply applies the floats of a delivered part (at off, of m floats, nb of
// them rounded, encoded in in, with CRC-32C crc) as st says, and sends the
// next part.
func (c *call) apply(st Step, off, m, nb int, in []byte, crc uint32) error {
	x := c.data[off : off+m : off+m]
	c.r.c.applied.Add(1)
	var sum []byte
	switch {
	case st.Add && !st.Owned:
		// A partial sum on its way: this rank's copy of the segment is
		// overwritten in the all-gather, so the sum is written into the
		// outgoing message only (rounded there, on the bf16 wire).
		sum = in
	case st.Add && c.bf16:
		// The owner rounds the full sum in place: the all-gather copies
		// exactly these bits to every other rank, and the owned callback
		// sees them too.
		addBF16(x, in, nb, c.res(off, nb))
	case st.Add:
		addFloats(x, in)
	case c.bf16:
		copyBF16(x, in, nb)
	default:
		copyFloats(x, in)
	}
	var same *uint32
	if !st.Add {
		// A copy goes on as it came: its checksum is the one just verified
		// (x holds exactly the floats of its bytes).
		same = &crc
	}
	if st.Send {
		if err := c.send(st.Next, off, x, sum, same, sum != nil); err != nil {
			return err
		}
	}
	if st.Add && st.Owned && c.owned != nil {
		// After the part's all-gather has gone on: the owner's own use
		// of its segment is off the ring's path.
		c.owned(off, x)
	}
	return nil
}

// rounded is how many floats of the part at off of m floats travel as
// bfloat16 on wire w when the floats from exact on travel as float32.
func rounded(w Wire, exact, off, m int) int {
	if w != WireBF16 {
		return 0
	}
	return min(max(exact-off, 0), m)
}

// accept checks a decoded envelope against the all-reduce a rank is in (its
// header h, its left neighbour, the plan, its wire and where the exact tail
// starts) and returns the part's id, offset, length and bfloat16 floats, or
// the counter of the reason it must be dropped. Whether the ring awaits the
// part and its checksum are checked after.
func accept(e *envelope, h Header, left int, plan Plan, w Wire, exact int, c *counters) (id PartID, off, m, nb int, bad *atomic.Uint64) {
	n := plan.N
	switch {
	case string(e.run) != h.Run:
		return id, 0, 0, 0, &c.foreignRun
	case e.epoch != h.Epoch:
		return id, 0, 0, 0, &c.staleEpoch
	case e.step < h.Step:
		return id, 0, 0, 0, &c.staleStep
	case e.step > h.Step:
		return id, 0, 0, 0, &c.futureStep
	case e.sender != uint64(left):
		return id, 0, 0, 0, &c.wrongSender
	case e.phase > uint64(AllGather) || e.hop >= uint64(n) || e.segment >= uint64(n) || e.part > uint64(plan.Len):
		return id, 0, 0, 0, &c.unexpected
	case e.wire != uint64(w):
		return id, 0, 0, 0, &c.wrongWire
	}
	id = PartID{Phase(e.phase), int(e.hop), int(e.segment), int(e.part)}
	if id.Part >= plan.Parts(id.Segment) {
		return id, 0, 0, 0, &c.unexpected
	}
	off, m = plan.Part(id.Segment, id.Part)
	nb = rounded(w, exact, off, m)
	if len(e.data) != wireBytes(m, nb) {
		return id, 0, 0, 0, &c.badLength
	}
	return id, off, m, nb, nil
}

// transportDropped is t's count of dropped messages, if it keeps one.
func transportDropped(t Transport) uint64 {
	if d, ok := t.(interface{ Dropped() uint64 }); ok {
		return d.Dropped()
	}
	return 0
}
