// Package outputs writes what a training run leaves behind in its run
// directory and serves while it runs: metrics.jsonl (one line per committed
// step), ledger.jsonl (which worker computed which windows of every
// committed step, fsynced per line), summary.json, loss.png, and the
// Prometheus endpoint. Files are written atomically (temporary file, fsync,
// rename) or appended line by line; a restart from an older checkpoint
// truncates both logs to that step.
//
// outputs knows nothing of NATS, the protocol or models: the cluster layer
// hands it finished records.
package outputs
