// Package allreduce sums a []float32 across n ranks with a ring all-reduce,
// so that every rank ends with the bit-identical sum, over a small Transport
// interface.
//
// # Algorithm
//
// The vector of L floats is cut into stripes of Plan.Stripe floats (the
// last one shorter): PartFloats = (ChunkBytes-EnvelopeOverhead)/4, or less
// for a vector too short for about 16 stripes per segment (StripeFloats),
// not below 256 floats unless PartFloats is or the vector has fewer than
// 256 floats a rank. Stripe s belongs to segment
// s mod n, so segment k is the stripes k, k+n, k+2n, ... (some segments are
// empty when the vector has fewer than n stripes), and a part, one message,
// is one stripe: part j of segment k is stripe k+jn. Row j is the stripes
// jn to jn+n-1, part j of every segment. A reduce-scatter of n-1 hops leaves
// rank r owning segment (r+1) mod n fully reduced; an all-gather of n-1
// hops copies every owned segment to every rank. Each rank sends 2(n-1)/n
// of the vector. A part is forwarded as soon as it has been applied, so
// parts pipeline around the ring. Each segment is reduced once, along one
// chain of ranks ending at its owner, and then only copied: the result is
// bit-identical everywhere. The owner can hand its fully reduced parts to a
// callback as they complete.
//
// # Buckets: overlap with backward
//
// A gradient is final piece by piece: backward finishes the last layers
// first. AllReduceBuckets takes the vector in buckets (Buckets: whole rows,
// about Options.BucketBytes each, contiguous; BucketBytes 0 is one bucket),
// each handed over on a channel as soon as the caller's floats in it are
// final: the rank then sends its own parts of that bucket, and a part it
// receives for a bucket not ready yet is held (copied) until the bucket is.
// The ring thus starts on the buckets backward finished first while it
// computes the others. Which chain of ranks sums a float depends only on
// its stripe, never on the buckets, and every hop applies the same float32
// (or bfloat16) operation to the same operands: the result of a bucketed
// all-reduce is the unbucketed one, bit for bit, on every wire, whatever
// the bucket sizes (ranks need not agree on them) and the order and moments
// the buckets become ready.
//
// Ring is the schedule of one rank as a pure state machine (no I/O): Start
// lists the first parts to send, Ready marks a bucket ready and lists the
// rank's parts of it to send and the parts held for it, Deliver says how to
// apply a received part (or to hold it) and what to send next, and Missing
// names the first part still awaited. Reducer drives it over a Transport
// (one attempt of a Mailbox) and reuses its buffers across calls; with
// buckets it receives on a goroutine of its own, so that a bucket made
// ready is sent at once.
//
// # Wire format
//
// A message is one msgpack array [run, epoch, step, phase, hop, segment,
// part, sender, wire, crc, data] with the floats as little-endian bytes in
// the bin field data, wire their encoding (0 float32, 1 bfloat16: Wire) and
// crc the CRC-32C (Castagnoli, hash/crc32, computed with the CPU's CRC32
// instructions where it has them) of those bytes (AppendMessage,
// AppendMessageWire). It is decoded by hand, with every length checked against
// the bytes present (package msgcheck) and nothing allocated, and then
// matched against the receiver's Header, its left neighbour and the Plan
// (the part's stripe, hence its offset and length, follows from segment and
// part; buckets are the sender's own schedule and are not on the wire);
// anything that does not match (another run, epoch or step, a wrong sender,
// hop, segment or part, another wire, a wrong length, a duplicate) is
// dropped and counted
// in Stats, never applied. A part whose floats do not match their crc was
// corrupted on the way: it is dropped and counted (Stats.BadChecksum), so the
// part stays missing and the call ends in an abort that names it
// (AbortError.Corrupt says how many were dropped so), never in a wrong sum.
//
// # The bf16 wire
//
// With Options.Wire = WireBF16 every float but the vector's last
// Options.ExactTail crosses the wire as a bfloat16 (BF16: the float32's high
// 16 bits, rounded to nearest, ties to even; infinities kept, overflow to
// infinity, every NaN made the quiet NaN of its sign), 2 bytes instead of 4;
// the tail (a loss sum and a token count, in cluster/) stays float32, so a
// part's data is its bfloat16 floats then its tail floats, and its length
// follows from the Plan. Parts are cut as on the f32 wire (PartFloats), in
// about half the bytes. Sums are accumulated in float32: a rank adds the
// bfloat16 it receives to its own float32 and rounds the sum again before it
// sends it on, so each float is rounded once by every rank, and the owner of
// a segment rounds the full sum in place before the all-gather: every rank,
// the owner included, ends with the same rounded reduced segment, bit for
// bit, and the owned callback sees those rounded values. Partial sums are
// rounded at every hop, so the result depends on the ring's size and order
// (cluster/ promises world-size invariance for the f32 wire only); with one
// rank nothing is rounded.
//
// Options.Residual receives the rank's rounding residual for error
// feedback: for every float the value v the rank held in float32 before it
// rounded it, minus RoundBF16(v) (exact in float32; 0 for the exact tail,
// for non-finite values and with one rank). Over the ranks, residuals plus
// the result are the inputs' sum up to float32's own additions, so a rank
// that adds its residual to its next input gives back what rounding lost.
// Keeping, staging and discarding residuals is the caller's business.
//
// # Failure
//
// Transports deliver in order from one sender, or lose messages. Every call
// has a deadline (Options.Deadline or the context's; with neither it refuses
// to run). A call that cannot finish returns an *AbortError naming the rank,
// the link and the (epoch, step, from, phase, hop, segment, part) it waited
// for, and how many messages the Reducer and the transport's mailbox dropped
// meanwhile. It never returns a partial sum as success.
//
// # Mailboxes
//
// A worker's end of a job's ring network is a Mailbox: it is made once, when
// the worker starts, and listens until Close, whatever attempt runs. Every
// message carries its attempt, a Header (run, epoch, step), and the mailbox
// files it under that attempt, so a neighbour that starts an attempt before
// this worker does loses nothing. Begin(h, members, self) makes h the
// current attempt and returns its Transport (rank i is members[i]):
//
//   - messages of h that arrived before Begin are delivered first, in order;
//   - attempts of one run are ordered by (epoch, step): messages of an
//     earlier attempt are dropped and counted, whether queued at Begin or
//     arriving later; messages of a later attempt wait in its queue;
//   - a Begin of another run drops everything queued for other runs, and
//     the runs a mailbox has left (the last 16) are stale whatever their
//     epochs: a restarted coordinator starts at epoch 1 again, and its
//     messages are never mistaken for stale ones of the old run's epoch 10;
//   - messages of a run not seen yet wait as a later attempt would;
//   - what a mailbox holds is bounded (Limits): the current attempt and at
//     most Ahead others, each of at most Messages messages and Bytes bytes;
//     a nearer attempt of the current run replaces the farthest when all
//     are taken; whatever does not fit is dropped and counted;
//   - a later Begin supersedes the previous Transport (Recv returns
//     ErrSuperseded); after Close, Recv returns ErrClosed;
//   - Dropped (and Stats) count what was dropped: stale, without a readable
//     attempt, over the limits, or below the mailbox (nats.go's slow-consumer
//     drops). A Transport with a Dropped method has the drops during a call
//     reported in its AbortError.
//
// Inbox implements these rules for every Mailbox; an implementation supplies
// the wire. MemHub connects in-process mailboxes (MemMailbox) directly: each
// message is copied (its buffer recycled), so no two workers share a
// payload, and the in-memory path still runs every part through the codec.
// It serves fast, deterministic tests and the in-process ring of scaling
// experiments. The NATS mailbox lives in package natsnet, the link model
// that wraps either in package netem. Package allreducetest holds the
// conformance suite all of them pass.
//
// MemNetwork is a simpler in-memory ring of one job and epoch, with
// addresses by rank, for unit tests of the Reducer that need a filter on
// single parts.
//
// allreduce knows nothing of models, training or NATS: it imports no network
// client, and its only encoding is msgpack's format, written by hand with
// msgcheck's readers.
package allreduce
