package allreduce

import (
	"context"
	"errors"
	"fmt"
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
// ChunkBytes and the schedule's bookkeeping, allocated again only when they
// must grow. A Reducer runs one all-reduce at a time; its Stats may be read
// at any time.
type Reducer struct {
	ring  Ring
	start []PartID
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
// rank owns as soon as that part is fully reduced, with the part's offset into
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
	resid := opts.Residual
	if resid != nil && len(resid) != len(data) {
		return fmt.Errorf("%w: a Residual of %d floats for a vector of %d", ErrBadOptions, len(resid), len(data))
	}
	clear(resid)
	if n == 1 {
		if owned != nil {
			owned(0, data)
		}
		return nil
	}
	plan := NewPlan(len(data), n, opts.PartFloats())
	ring := &r.ring
	ring.Reset(rank, plan)
	if cap(r.buf) < opts.ChunkBytes {
		r.buf = make([]byte, 0, opts.ChunkBytes)
	}
	right, left := ring.Right(), ring.Left()
	dropped0, corrupt0, wrongWire0 := r.Stats().Dropped(), r.c.badChecksum.Load(), r.c.wrongWire.Load()
	lost0 := transportDropped(t)
	bf16 := opts.Wire == WireBF16
	exact := len(data) - min(opts.ExactTail, len(data)) // floats from exact on travel as float32
	rounded := func(off, m int) int { return rounded(opts.Wire, exact, off, m) }
	// res is where the residuals of the part at off of nb rounded floats
	// go, nil when they are not kept.
	res := func(off, nb int) []float32 {
		if resid == nil {
			return nil
		}
		return resid[off : off+nb]
	}

	// send sends part id, at offset off, with the floats x, or x + in when
	// in is not nil; on the bf16 wire it rounds what it sends, keeping the
	// residuals when round is set. crc, when not nil, is the CRC-32C of the
	// bytes sent, known already (a copy forwarded unchanged).
	send := func(id PartID, off int, x []float32, in []byte, crc *uint32, round bool) error {
		var fl []byte
		nb := rounded(off, len(x))
		r.buf, fl = appendHeader(r.buf[:0], h, id, rank, opts.Wire, wireBytes(len(x), nb))
		var rs []float32
		if round {
			rs = res(off, nb)
		}
		switch {
		case !bf16 && in == nil:
			putFloats(fl, x)
		case !bf16:
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
		if err := t.Send(ctx, right, r.buf); err != nil {
			return err
		}
		r.c.sent.Add(1)
		r.c.sentBytes.Add(uint64(len(r.buf)))
		return nil
	}
	abort := func(err error) error {
		miss, _ := ring.Missing()
		switch {
		case errors.Is(err, context.DeadlineExceeded):
			err = fmt.Errorf("%w: %w", ErrDeadline, err)
		case errors.Is(err, ErrClosed) || errors.Is(err, ErrSuperseded) || errors.Is(err, context.Canceled):
		default:
			err = fmt.Errorf("transport: %w", err)
		}
		return &AbortError{Rank: rank, N: n, From: left, Header: h, Missing: miss,
			Received: ring.Received(), Expected: ring.Expected(), Dropped: r.Stats().Dropped() - dropped0, Corrupt: r.c.badChecksum.Load() - corrupt0,
			Wire: opts.Wire, WrongWire: r.c.wrongWire.Load() - wrongWire0, Lost: transportDropped(t) - lost0, Err: err}
	}

	r.start = ring.Start(r.start[:0])
	for _, id := range r.start {
		off, m := plan.Part(id.Segment, id.Part)
		if err := send(id, off, data[off:off+m], nil, nil, true); err != nil {
			return abort(err)
		}
	}
	var e envelope
	for !ring.Done() {
		msg, err := t.Recv(ctx)
		if err != nil {
			return abort(err)
		}
		if err := decodeEnvelope(msg, &e); err != nil {
			r.c.malformed.Add(1)
			continue
		}
		id, off, m, nb, bad := accept(&e, h, left, plan, opts.Wire, exact, &r.c)
		if bad != nil {
			bad.Add(1)
			continue
		}
		if !ring.Awaits(id) {
			r.c.unexpected.Add(1)
			continue
		}
		if checksum(e.data) != uint32(e.crc) {
			// Corrupted on the way: never applied. The part stays
			// missing, and the call ends in an abort naming it.
			r.c.badChecksum.Add(1)
			continue
		}
		st, err := ring.Deliver(id)
		if err != nil {
			r.c.unexpected.Add(1)
			continue
		}
		x := data[off : off+m : off+m]
		r.c.applied.Add(1)
		var in []byte
		switch {
		case st.Add && !st.Owned:
			// A partial sum on its way: this rank's copy of the segment is
			// overwritten in the all-gather, so the sum is written into
			// the outgoing message only (rounded there, on the bf16 wire).
			in = e.data
		case st.Add && bf16:
			// The owner rounds the full sum in place: the all-gather
			// copies exactly these bits to every other rank, and the owned
			// callback sees them too.
			addBF16(x, e.data, nb, res(off, nb))
			if owned != nil {
				owned(off, x)
			}
		case st.Add:
			addFloats(x, e.data)
			if owned != nil {
				owned(off, x)
			}
		case bf16:
			copyBF16(x, e.data, nb)
		default:
			copyFloats(x, e.data)
		}
		var same *uint32
		if !st.Add {
			// A copy goes on as it came: its checksum is the one just
			// verified (x holds exactly the floats of its bytes).
			c := uint32(e.crc)
			same = &c
		}
		if st.Send {
			if err := send(st.Next, off, x, in, same, in != nil); err != nil {
				return abort(err)
			}
		}
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
