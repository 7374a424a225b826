// Package allreduce sums a []float32 across n ranks with a ring all-reduce,
// so that every rank ends with the bit-identical sum, over a small Transport
// interface.
//
// # Algorithm
//
// The vector of L floats is cut into n segments (Plan: balanced, the first
// L%n one float longer; some are empty when L < n), and every segment into
// parts of at most (ChunkBytes-EnvelopeOverhead)/4 floats. A reduce-scatter
// of n-1 hops leaves rank r owning segment (r+1) mod n fully reduced; an
// all-gather of n-1 hops copies every owned segment to every rank. Each rank
// sends 2(n-1)/n of the vector. A part is forwarded as soon as it has been
// applied, so parts pipeline around the ring. Each segment is reduced once,
// along one chain of ranks ending at its owner, and then only copied: the
// result is bit-identical everywhere. The owner can hand its fully reduced
// parts to a callback as they complete.
//
// Ring is the schedule of one rank as a pure state machine (no I/O): Start
// lists the first parts to send, Deliver says how to apply a received part
// and what to send next, and Missing names the first part still awaited.
// Reducer drives it over a Transport (one attempt of a Mailbox) and reuses
// its buffers across calls.
//
// # Wire format
//
// A message is one msgpack array [run, epoch, step, phase, hop, segment,
// part, sender, crc, data] with the floats as little-endian bytes in the bin
// field data and crc the CRC-32C (Castagnoli, hash/crc32, computed with the
// CPU's CRC32 instructions where it has them) of those bytes
// (AppendMessage). It is decoded by hand, with every length checked against
// the bytes present (package msgcheck) and nothing allocated, and then
// matched against the receiver's Header, its left neighbour and the Plan;
// anything that does not match (another run, epoch or step, a wrong sender,
// hop, segment or part, a wrong length, a duplicate) is dropped and counted
// in Stats, never applied. A part whose floats do not match their crc was
// corrupted on the way: it is dropped and counted (Stats.BadChecksum), so the
// part stays missing and the call ends in an abort that names it
// (AbortError.Corrupt says how many were dropped so), never in a wrong sum.
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
