// Package scale runs scaling experiments: sweeps of short training runs over
// worker counts, model presets and network profiles, and a report of how
// training scales (scaling.csv, scaling.json, PNG plots, and a projection to
// large clusters).
//
// On one machine N in-process workers share its cores, so wall time mixes
// CPU contention into communication. The report separates them: each worker
// computes on one thread of its own and is accounted in that thread's CPU
// time; each all-reduce is timed from the moment the last rank entered the
// ring, over links shaped by a network profile. The projected time of a step
// on a cluster of N machines is the measured compute plus the cost model of a
// ring all-reduce (RingAllReduce; RingAllReducePipelined with parts). The
// projection also models the ring overlapped with backward in buckets
// (OverlappedStep) and bfloat16 parts on the wire (half the bytes).
//
// VirtualAllReduce checks the model without a clock: it drives every rank's
// ring schedule (allreduce.Ring) through netem's link model in virtual time,
// so the model is tested deterministically (a timed test on a shared machine
// would not be); the real sweep's agreement with it is a benchmark
// (BenchmarkSweep), a measurement of the machine it runs on.
//
// The ring of simulated points can also go through the embedded NATS
// server (Options.Ring "nats"), or a cluster of them (Servers), and
// RunExternal runs the sweep over workers started elsewhere (real
// processes, marked so in the report). For points whose ring went through
// NATS the report fits two models (FitTopology): a single server, whose
// throughput all flows share (StarAllReduce: the time grows as 2(n-1) S),
// and a cluster with a route per ring hop (ClusterAllReduce: as 2(n-1)/n S),
// and says which one the measurements follow; the projection then compares
// the two for large clusters.
//
// scale knows the cluster layer's public API and nothing of NATS, models or
// losses.
package scale
