// Package cluster is klring's training system at run time: the thin
// runtimes of the coordinator and the worker around the pure state machines
// of package protocol (docs/protocol.md), simulation mode (an embedded NATS
// server, or nats.servers of them in a cluster, the coordinator and N
// workers in one process), checkpoints and resume, the coordinator's
// background evaluations and checkpoints (side.go), and the audits of a run:
// chaos (a run with random faults, checked against the run without them)
// and verify (a run directory against its data and checkpoints).
//
// A runtime owns the I/O: NATS subscriptions, timers, the compute and
// snapshot goroutines, files. It turns what happens into protocol events,
// steps the state machine, and carries out the actions it returns; every
// decision (admit, plan, commit, abort, evict, resync, end) is taken in
// protocol, where it is tested by replaying events with a fake clock.
//
// A process may run its own NATS server (nats.embed), joined by routes to
// the cluster of nats.routes, so that a node's worker and its server are one
// process. Workers report the server they are on in their hellos and
// heartbeats, and the coordinator places the ring on the servers
// (protocol.Place): docs/cluster.md.
//
// It composes the packages below it: engine (the model and the loss over
// windows: gradients, evaluations, teachers), shard (the data and its
// fingerprint), allreduce over natsnet's mailbox (the ring), outputs
// (metrics, ledger, summary, Prometheus). Those packages know nothing of
// cluster.
//
// The ring's wire is the job's (allreduce.wire, in the job spec every worker
// is welcomed with): on bf16 the owners send the coordinator their rounded
// reduced segments, so its gradient is the workers' bit for bit; with
// allreduce.error_feedback each worker keeps its rounding residual, staged
// and committed with its update (worker.go; docs/protocol.md), and sends it
// to the coordinator for the steps it checkpoints; checkpoints keep the
// residuals of every rank (ResidualFile), and a resumed coordinator serves
// them back as the workers' seeds (resid.go).
//
// The coordinator's state is owned by the goroutine that runs it; NATS
// callbacks only hand messages over channels. Its own optimizer step is off
// the critical path: once a step's gradient is checked and committed the
// next plan goes out, and the master copy is updated in a goroutine of its
// own (one at a time, its gradient in a buffer of its own), whose end is
// the event Applied; snapshots, checkpoints, evaluations and the end of the
// run wait for it in the state machine. A worker's step and its
// snapshot loads run in goroutines of their own so that a newer plan can
// cancel them.
//
// cluster must not know the command line: cmd/ builds a config.Config and
// calls Serve, Work, Simulate, Chaos or Verify (and engine's
// EvaluateCheckpoint and SampleCheckpoint for the offline commands).
package cluster
