// Package netem emulates network links for the ring of package allreduce:
// bandwidth, latency, jitter and loss, per link (one sender, one receiver),
// with the messages of a link kept in order. Scaling experiments run the
// ring of in-process workers over it, so that a modelled network, not this
// machine's CPU, sets the time of an all-reduce.
//
// LinkProfile describes a link; Profiles are the named ones (none, 10GbE,
// 1GbE, 100MBps, wan) and ParseProfile also reads "BANDWIDTH:LATENCY" such
// as "100MB/s:1ms". Shaper is the model itself, a pure function of the
// messages sent and a clock handed in: a message waits until its link is
// free, takes (payload + FrameOverhead) bytes over the bandwidth on the
// wire, and arrives a latency plus a uniform jitter later, never before the
// message sent on the link before it; a lost message does not occupy the
// link. Its random draws come from a seed, so a run repeats.
//
// Wrap puts a worker's allreduce.Mailbox (in-memory or NATS) behind the
// model: what its Transports send is copied onto a link per destination
// worker, and a goroutine per link hands each message to the wrapped
// mailbox's Transport at its modelled arrival time. A link holds at most
// LinkQueue messages in flight; a Send beyond waits, as on a full socket
// buffer. Receiving is the wrapped mailbox's. Close stops the links, drops
// what they still carry, joins their goroutines and closes the wrapped
// mailbox. The conformance suite of package allreducetest runs over a shaped
// in-memory mailbox.
//
// netem knows no NATS and no training: it wraps the allreduce.Mailbox
// interface and imports nothing else of klring.
package netem
