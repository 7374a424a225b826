// Package natsnet connects klring to NATS: the ring transport of package
// allreduce over core NATS (nats.go), a connection helper with the options
// every klring process uses, and an embedded nats-server for tests and the
// simulation mode.
//
// # Connections
//
// Connect dials with MaxReconnects(-1) (reconnect forever), a ping every
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
// # Ring transport
//
// (*Conn).Ring(ctx, job, epoch, rank) subscribes to
// klring.<job>.ring.<epoch>.<rank> (job checked by allreduce.ValidJob) and
// waits until the server has the subscription. Core NATS is at-most-once:
// a message published before the receiver subscribed is lost, so every rank
// makes its Ring when the epoch starts, before any rank starts an
// all-reduce. The subscription's pending limits are PartsInFlight messages
// and PartsInFlight*ChunkBytes bytes; size PartsInFlight with
// allreduce.MaxMessages so that a whole all-reduce fits, since messages
// beyond it are dropped by nats.go (counted by Ring.Dropped and reported in
// the all-reduce's abort error). Send publishes asynchronously (nats.go
// flushes from its own goroutine); Recv returns the payload nats.go
// allocated for the message.
//
// One connection per rank carries both directions of its ring links and the
// rest of the step protocol.
//
// # Embedded server
//
// StartServer runs nats-server/v2 inside the process on a free loopback port
// (or a given one), with no logging and no signal handlers, max_payload
// 8 MiB and max_pending 256 MiB by default, and optional user/password
// authentication. Tests start one per test and fail if it cannot start.
//
// With TLSCert and TLSKey the server requires TLS (its URL is tls://); with
// TLSVerify also a client certificate signed by TLSCA. Users gives every
// role a user of its own with Permissions: CoordinatorPermissions and
// WorkerPermissions are the subjects of docs/protocol.md each role needs,
// the same lists as docker/nats-server.conf (a test keeps them equal); a
// worker can publish neither plans nor to any reply inbox.
//
// natsnet knows nothing of models or training: it moves bytes for allreduce
// and hands the step protocol a configured *nats.Conn.
package natsnet
