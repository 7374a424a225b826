package allreduce

import (
	"errors"
	"fmt"
	"time"
)

// Errors of the package. Abort errors (*AbortError) wrap one of ErrDeadline,
// ErrClosed, context.Canceled or a transport error.
var (
	ErrNoDeadline = errors.New("allreduce: no deadline (set Options.Deadline or a context deadline)")
	ErrDeadline   = errors.New("allreduce: deadline exceeded")
	ErrClosed     = errors.New("allreduce: transport closed")
	ErrBadOptions = errors.New("allreduce: invalid options")
	ErrBadHeader  = errors.New("allreduce: invalid header")
	ErrMalformed  = errors.New("allreduce: malformed message")
	ErrUnexpected = errors.New("allreduce: unexpected part")
	ErrDuplicate  = errors.New("allreduce: duplicate part")
	ErrOutOfOrder = errors.New("allreduce: part arrived before its reduction")
	ErrSuperseded = errors.New("allreduce: attempt superseded by a later Begin")
	ErrBadRing    = errors.New("allreduce: invalid ring")
	ErrBadLimits  = errors.New("allreduce: invalid mailbox limits")
	ErrBadBucket  = errors.New("allreduce: invalid bucket")
	ErrNotReady   = errors.New("allreduce: ready closed before every bucket was ready")
)

// Limits of the wire format.
const (
	// MaxRunLen is the longest run id, in bytes.
	MaxRunLen = 64
	// EnvelopeOverhead bounds the bytes a message spends on its envelope
	// (everything but the floats) for any run id of at most MaxRunLen bytes.
	EnvelopeOverhead = 128
	// MinChunkBytes and MaxChunkBytes bound Options.ChunkBytes.
	MinChunkBytes = 256
	MaxChunkBytes = 64 << 20
	// MaxBucketBytes bounds Options.BucketBytes.
	MaxBucketBytes = 1 << 30
)

// Header names one all-reduce, an attempt: every message of it carries
// these fields, and a receiver applies only messages whose header matches its
// own. Within a run, attempts are ordered by (Epoch, Step) (Less).
type Header struct {
	Run   string // run id (one coordinator incarnation): at most MaxRunLen bytes of printable ASCII, no space
	Epoch uint64 // membership epoch: fixes the ring order
	Step  uint64 // training step
}

// Validate reports whether h can be put on the wire (in the envelope and in
// a transport's attempt label): a run id of at most MaxRunLen bytes, each
// one of '!' to '~'.
func (h Header) Validate() error {
	if len(h.Run) > MaxRunLen {
		return fmt.Errorf("%w: run id of %d bytes, at most %d", ErrBadHeader, len(h.Run), MaxRunLen)
	}
	for i := 0; i < len(h.Run); i++ {
		if c := h.Run[i]; c < '!' || c > '~' {
			return fmt.Errorf("%w: run id %q has %q at byte %d (want printable ASCII, no space)", ErrBadHeader, h.Run, c, i)
		}
	}
	return nil
}

func (h Header) String() string {
	return fmt.Sprintf("(run %q, epoch %d, step %d)", h.Run, h.Epoch, h.Step)
}

// Less reports whether h comes before o in their run: a lower epoch, or the
// same epoch and a lower step. It ignores the run ids.
func (h Header) Less(o Header) bool {
	return h.Epoch < o.Epoch || h.Epoch == o.Epoch && h.Step < o.Step
}

// Options tune an all-reduce.
type Options struct {
	// ChunkBytes is the largest message, envelope included, in bytes; it
	// must not exceed the transport's payload limit (NATS MaxPayload).
	// Default 1 MiB. Range [MinChunkBytes, MaxChunkBytes].
	ChunkBytes int
	// Deadline is the longest an all-reduce may take. Zero means the
	// context's deadline alone; with neither, AllReduce refuses to start.
	// Default 10s.
	Deadline time.Duration
	// Wire is how the floats cross the wire: WireF32 (the default, exact)
	// or WireBF16 (half the bytes: every part rounded to bfloat16, sums
	// still accumulated in float32, and every rank, the owner of a segment
	// included, keeping the same rounded reduced segment, so the result is
	// still bit-identical on every rank). Every rank of a ring must use the
	// same Wire; a part of another wire is dropped (Stats.WrongWire).
	Wire Wire
	// ExactTail is how many of the vector's last floats cross the wire as
	// float32 whatever Wire says: sums that bfloat16's 8 bits of mantissa
	// would spoil, such as a loss sum and a token count. Every rank must
	// use the same ExactTail. Default 0; more than the vector's length
	// means the whole vector.
	ExactTail int
	// Residual, when not nil, must have the vector's length and WireBF16 be
	// set: AllReduce then stores into it this rank's rounding residual.
	// Each float of the vector is rounded to bfloat16 by each rank exactly
	// once in the reduce-scatter: the value v the rank holds in float32
	// (its own float, for its own segment on hop 0; the partial sum
	// received plus its own float, for a segment it passes on; the full sum,
	// for the segment it owns) is sent as RoundBF16(v), and Residual[i] =
	// v - RoundBF16(v), which is exact in float32; it is 0 for the exact
	// tail, where v or its rounding is not finite, and everywhere when the
	// ring has one rank (nothing crosses a wire). Summed over the ranks,
	// the residuals plus the reduced vector are the sum of the inputs (up to
	// float32's own rounding of the additions): adding a rank's residual
	// to its next input (error feedback) gives back what rounding lost. On
	// an abort Residual holds a partial result and must not be used.
	Residual []float32
	// BucketBytes is the size of the buckets of AllReduceBuckets, in bytes
	// of float32: rounded down to whole rows of the Plan (N stripes), at
	// least one. Zero means one bucket, the whole vector (no overlap).
	// AllReduce ignores it, and the sums never depend on it.
	BucketBytes int
}

// DefaultOptions returns the defaults documented on Options.
func DefaultOptions() Options {
	return Options{ChunkBytes: 1 << 20, Deadline: 10 * time.Second}
}

// Validate checks every field and names the one that is wrong.
func (o Options) Validate() error {
	if o.ChunkBytes < MinChunkBytes || o.ChunkBytes > MaxChunkBytes {
		return fmt.Errorf("%w: ChunkBytes = %d, want [%d, %d]", ErrBadOptions, o.ChunkBytes, MinChunkBytes, MaxChunkBytes)
	}
	if o.Deadline < 0 {
		return fmt.Errorf("%w: Deadline = %v, want >= 0", ErrBadOptions, o.Deadline)
	}
	if o.Wire != WireF32 && o.Wire != WireBF16 {
		return fmt.Errorf("%w: Wire = %v, want f32 or bf16", ErrBadOptions, o.Wire)
	}
	if o.ExactTail < 0 {
		return fmt.Errorf("%w: ExactTail = %d, want >= 0", ErrBadOptions, o.ExactTail)
	}
	if o.BucketBytes < 0 || o.BucketBytes > MaxBucketBytes {
		return fmt.Errorf("%w: BucketBytes = %d, want [0, %d] (0: one bucket)", ErrBadOptions, o.BucketBytes, MaxBucketBytes)
	}
	if o.Residual != nil && o.Wire != WireBF16 {
		return fmt.Errorf("%w: a Residual with Wire = %v (only the bf16 wire rounds)", ErrBadOptions, o.Wire)
	}
	return nil
}

// PartFloats is the number of floats one message carries at most. It does
// not depend on Wire: a part on the bf16 wire has the same floats, in about
// half the bytes, so that every wire cuts the vector the same way.
func (o Options) PartFloats() int { return (o.ChunkBytes - EnvelopeOverhead) / 4 }

// BucketFloats is BucketBytes in floats (0: one bucket).
func (o Options) BucketFloats() int {
	if o.BucketBytes <= 0 {
		return 0
	}
	return max(1, o.BucketBytes/4)
}

// Buckets returns the buckets of AllReduceBuckets for a vector of length
// floats over n ranks.
func (o Options) Buckets(length, n int) Buckets {
	return NewPlan(length, n, o.PartFloats()).Buckets(o.BucketFloats())
}
