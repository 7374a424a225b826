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
// errors and slow-consumer events (SlowConsumers), and optional user/password
// or token authentication. It retries an unreachable server until its
// context ends, fails at once on an authorization error, and fails if the
// server's MaxPayload is smaller than ChunkBytes, so that no ring message can
// be refused later.
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
// natsnet knows nothing of models or training: it moves bytes for allreduce
// and hands the step protocol a configured *nats.Conn.
package natsnet
