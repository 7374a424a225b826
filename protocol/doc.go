// Package protocol is klring's step protocol as two pure state machines,
// one for the coordinator and one for a worker, in the manner of etcd's raft:
// each has a Step(event, now) method that returns the actions to carry out.
//
// Events are decoded messages (Plan, Done, Segment, Heartbeat, HelloMsg,
// SnapRequestMsg), the passing of time (Tick, with the time handed in), and
// completions of what the runtime was asked to do (NextStep, Committed,
// CommitRefused, Applied; Welcomed, HelloFailed, StepDone, SnapshotLoaded;
// Stop).
// Actions are messages to send (SendPlan, Welcome, ServeSnap, SendDone,
// SendHeartbeat, ...), computations to start or cancel (StartStep,
// CancelStep, LoadSnapshot, ApplyStaged, ApplyPending, Commit), files to write
// (Checkpoint, Evaluate), and reports (Abort, Membership, Evicted, Drop, Log,
// End, Exit).
//
// Every rule of the protocol lives here and only here: membership and
// liveness (three missed heartbeats, judged after the runtime has drained
// the heartbeats that arrived), epoch formation and the ring's placement on
// the NATS servers the workers report (Place), the plan of every attempt,
// the checks of every report and segment (run, epoch, step, sender, rank,
// windows, checksum, finiteness, overflow-safe bounds, overlaps), commit,
// abort and retry, eviction of a worker that keeps failing, snapshots, pause
// and the end of the run, and what waits for the master's apply of a
// committed step, which runs concurrently with the next step (Committed,
// then Applied with the master's checksum); on the worker's side,
// following the coordinator's run, staging an update until a plan commits
// exactly that attempt (Plan.CommitEpoch) and knowing when the committed
// step is checkpointed (Plan.Checkpoint), resync, leaving, and giving up on
// a coordinator that is silent for too long. docs/protocol.md has the tables of states, events and
// actions.
//
// The machines do no I/O: no goroutines, channels, NATS, files or clocks.
// cluster/ is the runtime that feeds them. Their tests replay scenario files
// (testdata/scenarios) through an in-memory network with a fake clock, and
// play hundreds of runs with random faults checking the invariants of
// exactly-once (I2), replica agreement (I3) and all-or-nothing (I4) at every
// instant.
//
// protocol must not know models, losses, data files, NATS or the run's
// outputs; it imports shard and allreduce only for their pure arithmetic
// (a rank's shard of a batch, a rank's segment of the vector).
package protocol
