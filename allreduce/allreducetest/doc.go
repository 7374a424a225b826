// Package allreducetest is the conformance suite every allreduce.Mailbox
// must pass, with the Transports its Begin returns: exact sums,
// bit-identical results on every rank, float tolerance against a float64
// reference, isolation between jobs, a neighbour that sends before the
// receiver begins the attempt, stale attempts dropped and counted, a new run
// after a higher epoch of an old one, a flood of future attempts held within
// the mailbox's limits, foreign garbage (a part whose checksum fails among
// it), a rank killed mid-way (an abort
// naming the missing part, not a hang), and the Begin/Close contract.
//
// Network is what an implementation supplies: persistent mailboxes by job
// and worker, a way to hand one a labelled message as a foreign client, and
// their limits. Run runs every case, each in a job of its own, so one
// Network serves them all. The in-memory mailbox runs it in package
// allreduce, the NATS mailbox in package natsnet (a real embedded server),
// the shaped mailbox in package netem. allreducetest knows nothing of any
// particular implementation.
package allreducetest
