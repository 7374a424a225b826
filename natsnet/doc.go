// Package natsnet connects klring to NATS: the ring mailbox of package
// allreduce over core NATS (nats.go), the subjects of a job, a connection
// helper with the options every klring process uses, and an embedded
// nats-server for tests, the simulation mode and nats.embed.
//
// # Connections
//
// Connect dials the servers of its URL list in the order given (the nearest
// first: DontRandomize) with MaxReconnects(-1) (reconnect forever, to the
// next server of the list when it loses its own), a ping every
// PingInterval (1s) with two outstanding at most, NoEcho (a connection never
// receives what it publishes), an error handler that counts asynchronous
// errors, slow-consumer events (SlowConsumers) and refused subjects
// (PermissionViolations), and optional user/password or token
// authentication. It retries an unreachable server until its context ends,
// fails at once on an authorization error, and fails if the server's
// MaxPayload is smaller than ChunkBytes, so that no ring message can be
// refused later.
//
// # TLS
//
// A tls:// URL, a CA file (TLSCA) or a client certificate (TLSCert, TLSKey)
// makes the connection require TLS 1.2 or later, verifying the server's
// certificate against TLSCA (or the system's roots) and the host name in the
// URL; the client certificate is presented to a server that asks for one
// (mutual TLS). A file that cannot be read or parsed is an ErrTLSFile naming
// it. A TLS failure that a retry cannot mend ends Connect at once with
// ErrTLS and says what to fix: the server's certificate is not trusted or
// not valid for the host, the server refused the client certificate (or its
// absence), the server offers no TLS, or the server requires TLS and the
// client has no CA for it.
//
// Credentials in URLs (nats://user:password@host) are replaced by
// "redacted@" (RedactURL) in every log line and error natsnet writes.
//
// # Subjects
//
// Every subject of a job is spelled in one place, Subjects (NewSubjects(job)):
// klring.<job>.{hello,plan,done,seg,hb,snap,resid,seed,coord} for the step protocol,
// klring.<job>.ring.<worker> for each worker's ring mailbox (Ring(worker)),
// and the wildcards All and Rings for permissions. Job and worker names are
// 1 to 64 bytes of [A-Za-z0-9_-] (ValidName): NATS itself only rejects
// whitespace, and a dot or a wildcard in a name would change what a subject
// means.
//
// # Ring mailbox
//
// NewMailbox(ctx, conn, job, worker) is the NATS allreduce.Mailbox, the one
// transport of the ring in production, in tests and in benchmarks. It
// subscribes once, when the worker starts, to klring.<job>.ring.<worker>, and
// waits until the server has the subscription. Every ring message carries its
// attempt in the NATS header Klring-Attempt: <epoch>.<step>.<run>
// (FormatAttempt; ParseAttempt accepts exactly that, fuzzed), and the mailbox
// files it under that attempt (allreduce.Inbox), so a neighbour that starts an
// attempt before this worker does loses nothing; a message without a readable
// header is dropped and counted. A second header, Klring-Pad (1 to 8 dots),
// pads the header block to a multiple of 8 bytes, so the payload nats.go
// hands the receiver is aligned and allreduce reads its floats in place
// (without it, the floats of most attempts would be read byte by byte). Begin(h, members, self) returns the attempt's
// Transport: Send publishes to members[to]'s ring subject with the attempt
// header (nats.go copies the payload into its write buffer and flushes it from
// its own goroutine); Recv returns the payload nats.go allocated. The envelope
// inside is still checked by allreduce.
//
// Core NATS is at-most-once. The subscription's pending limits are the
// connection's PendingLimits (PartsInFlight messages, PartsInFlight*ChunkBytes
// bytes); beyond them nats.go drops messages as a slow consumer, and the
// mailbox reads those drops into Stats().Lost and Dropped(), so the all-reduce
// waiting on a lost part says so in its abort error. The mailbox holds the
// current attempt and 8 ahead, each within PartsInFlight messages and
// PartsInFlight*ChunkBytes bytes. Size PartsInFlight with
// allreduce.MaxMessages for the largest vector, and ChunkBytes as the
// all-reduce's chunk plus HeaderRoom (the attempt header's bytes on the wire).
// Sync waits until everything the server has sent has been filed (tests).
//
// One connection per worker carries both directions of its ring links and the
// rest of the step protocol.
//
// # Embedded server
//
// StartServer runs nats-server/v2 inside the process on a free loopback port
// (or a given one), named Name (default: its ID), with no signal handlers,
// max_payload 8 MiB and max_pending 256 MiB by default, and optional
// user/password authentication. The server's warnings and errors go to
// ServerOptions.Logger at WARN, each kind (a route refused by the other
// server or by this one, a route that cannot connect, a failed route TLS
// handshake, a refused client) the first time and then at most once every
// 10s with the number left out; its notices at DEBUG. A server that cannot
// start fails at once with the cause, as a port already in use ("listen tcp
// 127.0.0.1:6222: bind: address already in use"). Tests start one per test
// and fail if it cannot start.
// A client of the same process may reach it through an in-memory pipe
// instead of the loopback socket (Options.InProcess: nats.go's in-process
// connection; simulation mode does so with a single server).
//
// # Clusters
//
// Through one server the ring is physically a star: every flow of the
// all-reduce crosses it, so its throughput is shared by all n flows and
// busbw falls as 1/n. With ServerOptions.Cluster a server joins a cluster:
// servers joined by routes (nats-route://host:port, optional route user and
// password, TLS with the server's certificate), each forwarding to the
// others what their clients subscribed to. With one server per node and
// each worker on its node's server (its URL list starts with it: URLs), a
// ring message crosses one route, between the servers of two neighbours.
// StartCluster starts k clustered servers in this process (the simulation
// mode's nats.servers, the tests, the benchmarks nats-cluster); WaitPeers
// and WaitInterest wait until routes are up and a subscription has reached
// every server. Routes use one connection per pair of servers (PoolSize 1)
// and no compression.
//
// With TLSCert and TLSKey the server requires TLS (its URL is tls://); with
// TLSVerify also a client certificate signed by TLSCA. Users gives every
// role a user of its own with Permissions: CoordinatorPermissions and
// WorkerPermissions are the subjects of docs/protocol.md each role needs,
// the same lists as docker/nats-server.conf (a test keeps them equal); a
// worker can publish neither plans nor to any reply inbox.
//
// natsnet knows nothing of models or training: it moves bytes for allreduce
// and hands the step protocol a configured *nats.Conn and its subjects. The
// rules of the mailbox (attempts, limits, counting) are allreduce's; natsnet
// only supplies the wire.
package natsnet
