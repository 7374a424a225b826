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
// Reducer drives it over a Transport and reuses its buffers across calls.
//
// # Wire format
//
// A message is one msgpack array [run, epoch, step, phase, hop, segment,
// part, sender, data] with the floats as little-endian bytes in the bin field
// data (AppendMessage). It is decoded by hand, with every length checked
// against the bytes present and nothing allocated, and then matched against
// the receiver's Header, its left neighbour and the Plan; anything that does
// not match (another run, epoch or step, a wrong sender, hop, segment or
// part, a wrong length, a duplicate) is dropped and counted in Stats, never
// applied. Subject names the NATS subject a rank listens on:
// klring.<job>.ring.<epoch>.<rank>.
//
// # Failure
//
// Transports deliver in order from one sender, or lose messages. Every call
// has a deadline (Options.Deadline or the context's; with neither it refuses
// to run). A call that cannot finish returns an *AbortError naming the rank,
// the link and the (epoch, step, from, phase, hop, segment, part) it waited
// for. It never returns a partial sum as success.
//
// # Transports
//
// MemNetwork is an in-memory transport shaped like NATS core (messages to an
// address nobody listens on are lost; every message is copied). The NATS
// transport lives in package natsnet. Package allreducetest holds the
// conformance suite both pass.
//
// allreduce knows nothing of models, training or NATS: it imports no network
// client, and its only encoding is msgpack's format, written by hand.
package allreduce
