// Package cluster is klring's training system: the coordinator and worker
// roles, the step protocol between them (docs/protocol.md), simulation mode
// (an embedded NATS server, or nats.servers of them in a cluster, the
// coordinator and N workers in one process), elastic membership, checkpoints
// and the run's outputs (metrics.jsonl, ledger.jsonl, loss.png, Prometheus
// metrics).
//
// A process may run its own NATS server (nats.embed), joined by routes to
// the cluster of nats.routes, so that a node's worker and its server are one
// process. Workers report the server they are on (its name, from INFO) in
// their hellos and heartbeats, and the coordinator places the ring on the
// servers (protocol.Place): docs/cluster.md.
//
// It composes the packages below it: lm (the model), loss (logits -> loss
// gradient), shard (which windows each rank computes) and allreduce (the ring).
// Those packages know nothing of each other or of cluster; cluster is where
// logits meet the loss and gradients meet the network.
//
// The coordinator's state is owned by the goroutine that runs it; NATS
// callbacks only hand messages over channels. A worker's step runs in a
// goroutine of its own so that a newer plan can cancel it.
//
// cluster must not know the command line: cmd/ builds a config.Config and
// calls Serve, Work, Simulate, EvaluateCheckpoint or SampleCheckpoint.
package cluster
