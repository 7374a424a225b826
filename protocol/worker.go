package protocol

import (
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/klring/klring/shard"
)

// WorkerConfig configures a worker's state machine.
type WorkerConfig struct {
	Name string
	// CoordinatorTimeout is how long a worker that has joined a job waits
	// for a silent, paused or restarted coordinator before it ends
	// (ErrCoordinatorGone). A worker that never joined waits forever.
	CoordinatorTimeout time.Duration
	// HelloRetry is the pause between two hellos nobody answered.
	HelloRetry time.Duration
	// Job is the name of the job the worker joins and HelloSubject where
	// the runtime sends its hellos (klring.<job>.hello): both only name
	// what a worker that nobody welcomes is waiting for, in its log.
	// Optional.
	Job, HelloSubject string
}

// StillWaitingEvery is how often a worker that nobody welcomes says it is
// still waiting for a coordinator.
const StillWaitingEvery = 30 * time.Second

// Messages of a worker's logs that the runtime or its tests may look for.
const (
	// LogWaiting: nobody welcomed the worker's first hello.
	LogWaiting = "waiting for a coordinator"
	// LogStillWaiting: nobody has welcomed the worker for
	// StillWaitingEvery, and again every StillWaitingEvery after.
	LogStillWaiting = "still waiting for a coordinator: check the job name (job, --job, KLRING_JOB) and that a coordinator of this job is running"
)

// Validate checks the configuration.
func (c WorkerConfig) Validate() error {
	if err := ValidName(c.Name); err != nil {
		return fmt.Errorf("worker name: %w", err)
	}
	if c.Job != "" {
		if err := ValidName(c.Job); err != nil {
			return fmt.Errorf("job name: %w", err)
		}
	}
	if c.CoordinatorTimeout <= 0 || c.HelloRetry <= 0 {
		return fmt.Errorf("protocol: coordinator timeout %v, hello retry %v", c.CoordinatorTimeout, c.HelloRetry)
	}
	return nil
}

// Events of the worker's runtime.

// Welcomed says the coordinator of run Run answered a hello and the runtime
// built (or kept) the replica of its job: Windows is the number of windows of
// the job's data, Heartbeat the job's heartbeat interval.
type Welcomed struct {
	Run       string
	Windows   int
	Heartbeat time.Duration
}

// HelloFailed says a hello was not answered, or the job could not be joined;
// Fatal ends the worker (a refused join, a wrong password, another teacher).
type HelloFailed struct {
	Err   error
	Fatal bool
}

// StepDone says the computation of an attempt finished: Report is the done
// to send, with Err set when it failed. On success the summed gradient is
// staged in the replica (ApplyStaged divides it by the token count and
// applies it), waiting for the plan that commits it.
type StepDone struct{ Report Done }

// SnapshotLoaded says the snapshot of committed step Step was loaded (Err
// nil) or could not be.
type SnapshotLoaded struct {
	Step uint64
	Err  error
}

func (Welcomed) event()       {}
func (HelloFailed) event()    {}
func (StepDone) event()       {}
func (SnapshotLoaded) event() {}

// Actions of a worker.

// SayHello sends one hello and feeds its outcome back as Welcomed or
// HelloFailed.
type SayHello struct{}

// StartStep starts the computation of an attempt in the background: the
// gradient of Windows (this rank's shard), the ring all-reduce among
// Plan.Members, the segments to the coordinator; it ends with StepDone.
type StartStep struct {
	Plan    Plan
	Rank    int
	Windows []int32
}

// CancelStep cancels the computation of an attempt and waits for it to end;
// no StepDone follows.
type CancelStep struct{ Epoch, Step uint64 }

// ApplyStaged applies the update of attempt (Epoch, Step) as soon as the
// attempt is done and its report sent, before its commit is known, so that
// the optimizer step runs while the coordinator decides rather than after
// the plan that commits it: the replica's parameters become those step Step
// will have if this attempt commits. A plan that commits the attempt
// confirms them (ApplyPending); one that does not leaves parameters that
// are no committed step's, and the machine loads a snapshot before its next
// step. Nothing else is kept: no copy to roll back to.
type ApplyStaged struct {
	Epoch, Step uint64
	LR          float32
}

// ApplyPending commits the update of attempt (Epoch, Step), which
// ApplyStaged applied: the replica's parameters are those of committed
// step Step, and what the runtime staged with the update (an
// error-feedback residual) becomes its state. Checkpoint says
// the coordinator checkpoints step Step (Plan.Checkpoint): the runtime then
// sends it the worker's state a checkpoint keeps (its error-feedback
// residual of the attempt, tagged with it).
type ApplyPending struct {
	Epoch, Step uint64
	Checkpoint  bool
}

// LoadSnapshot loads the coordinator's snapshot of committed step Step in
// the background; it ends with SnapshotLoaded. CancelLoad stops it; no
// SnapshotLoaded follows.
type LoadSnapshot struct{ Step uint64 }
type CancelLoad struct{ Step uint64 }

// SendDone publishes a report; SendHeartbeat a heartbeat.
type SendDone struct{ Done Done }
type SendHeartbeat struct{ Heartbeat Heartbeat }

// Exit ends the worker: Err is nil when the job is over, ErrLeft after a
// Stop, ErrCoordinatorGone, or why it could not join.
type Exit struct{ Err error }

func (SayHello) action()      {}
func (StartStep) action()     {}
func (CancelStep) action()    {}
func (ApplyStaged) action()   {}
func (ApplyPending) action()  {}
func (LoadSnapshot) action()  {}
func (CancelLoad) action()    {}
func (SendDone) action()      {}
func (SendHeartbeat) action() {}
func (Exit) action()          {}

type workerPhase int

const (
	joining workerPhase = iota
	joined
	exited
)

// staged names an attempt and its learning rate.
type staged struct {
	epoch, step uint64
	lr          float32
}

// Worker is a worker's state machine: it joins a coordinator's run, follows
// its plans (commit, compute, resync, end), stages every update until a plan
// commits exactly that attempt, heartbeats, and leaves or ends. It does no
// I/O and reads no clock.
type Worker struct {
	cfg   WorkerConfig
	phase workerPhase

	helloOut  bool // a hello is in flight
	lastHello time.Time
	// waitSince is when the first hello of this wait for a welcome went
	// out (zero once welcomed), waitLogged when the wait was last logged
	// (zero: not yet).
	waitSince, waitLogged time.Time
	everRun               bool // joined a run once

	run       string
	windows   int
	heartbeat time.Duration
	lastPlan  time.Time // last plan of the run (or the welcome)
	lastHB    time.Time

	committed   uint64  // the replica's parameters are those of this step
	initialised bool    // ... once a snapshot was loaded in this run
	pending     *staged // the attempt done and applied (ApplyStaged), not yet committed
	// dirty says the parameters hold pending's update: discarding it
	// leaves them no committed step's, so the next step loads a snapshot.
	dirty     bool
	lastEpoch uint64 // the newest plan acted on
	lastStep  uint64
	inflight  *staged // attempt being computed
	loading   *uint64 // step whose snapshot is loading
	deferred  *StartStep
	early     *Plan // the newest plan heard while joining
	leaving   bool
	out       []Action
}

// NewWorker returns the machine of a worker that has not joined yet; the
// first Tick says hello.
func NewWorker(cfg WorkerConfig) (*Worker, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &Worker{cfg: cfg, heartbeat: time.Second}, nil
}

// Step applies one event at time now and returns the actions to carry out.
func (w *Worker) Step(ev Event, now time.Time) []Action {
	w.out = nil
	if w.phase == exited {
		return nil
	}
	switch e := ev.(type) {
	case Tick:
		w.onTick(now)
	case *Plan:
		w.onPlan(e, now)
	case Welcomed:
		w.onWelcomed(e, now)
	case HelloFailed:
		w.onHelloFailed(e, now)
	case StepDone:
		w.onStepDone(e, now)
	case SnapshotLoaded:
		w.onLoaded(e)
	case Stop:
		w.onStop(now)
	default:
		panic(fmt.Sprintf("protocol: worker given %T", ev))
	}
	return w.out
}

func (w *Worker) emit(a ...Action) { w.out = append(w.out, a...) }

func (w *Worker) log(l slog.Level, msg string, args ...any) {
	w.emit(Log{Level: l, Msg: msg, Args: args})
}

// Run is the run the worker follows ("" before it joined); Committed the
// step its parameters are at.
func (w *Worker) Run() string       { return w.run }
func (w *Worker) Committed() uint64 { return w.committed }
func (w *Worker) Exited() bool      { return w.phase == exited }

func (w *Worker) exit(err error) {
	w.cancelWork()
	w.emit(Exit{Err: err})
	w.phase = exited
}

func (w *Worker) onTick(now time.Time) {
	if w.everRun && now.Sub(w.lastPlan) > w.cfg.CoordinatorTimeout {
		w.log(slog.LevelWarn, "no coordinator", "for", now.Sub(w.lastPlan).String(), "run", w.run)
		w.exit(fmt.Errorf("%w: heard none for %v", ErrCoordinatorGone, w.cfg.CoordinatorTimeout))
		return
	}
	switch w.phase {
	case joining:
		if !w.helloOut && (w.lastHello.IsZero() || now.Sub(w.lastHello) >= w.cfg.HelloRetry) {
			w.hello(now)
		}
	case joined:
		if now.Sub(w.lastHB) >= w.heartbeat {
			w.sendHeartbeat(now)
		}
	}
}

func (w *Worker) hello(now time.Time) {
	w.helloOut = true
	w.lastHello = now
	if w.waitSince.IsZero() {
		w.waitSince = now
	}
	w.emit(SayHello{})
}

func (w *Worker) sendHeartbeat(now time.Time) {
	w.lastHB = now
	w.emit(SendHeartbeat{Heartbeat{Run: w.run, Sender: w.cfg.Name, Step: w.committed, Leaving: w.leaving}})
}

func (w *Worker) onWelcomed(e Welcomed, now time.Time) {
	w.helloOut = false
	if w.phase != joining {
		return
	}
	w.phase = joined
	w.run, w.windows = e.Run, e.Windows
	if e.Heartbeat > 0 {
		w.heartbeat = e.Heartbeat
	}
	// A new run starts from the coordinator's snapshot, whatever this
	// replica held: nothing pending, no plan seen.
	w.initialised, w.pending, w.dirty = false, nil, false
	w.lastEpoch, w.lastStep = 0, 0
	w.lastPlan, w.everRun = now, true
	w.waitSince, w.waitLogged = time.Time{}, time.Time{}
	w.sendHeartbeat(now)
	if p := w.early; p != nil {
		w.early = nil
		if p.Run == w.run {
			w.onPlan(p, now)
		}
	}
}

func (w *Worker) onHelloFailed(e HelloFailed, now time.Time) {
	w.helloOut = false
	if e.Fatal {
		w.exit(fmt.Errorf("joining: %w", e.Err))
		return
	}
	if w.phase == joining {
		w.logWait(e.Err, now)
	}
}

// logWait says, at the first hello nobody answered and then every
// StillWaitingEvery, which job and subject the worker waits on and for how
// long: a worker given the wrong job name, or whose coordinator never
// comes, waits forever.
func (w *Worker) logWait(err error, now time.Time) {
	level, msg := slog.LevelInfo, LogWaiting
	switch {
	case w.waitLogged.IsZero():
	case now.Sub(w.waitLogged) >= StillWaitingEvery:
		level, msg = slog.LevelWarn, LogStillWaiting
	default:
		return
	}
	w.waitLogged = now
	var args []any
	if w.cfg.Job != "" {
		args = append(args, "job", w.cfg.Job)
	}
	if w.cfg.HelloSubject != "" {
		args = append(args, "subject", w.cfg.HelloSubject)
	}
	args = append(args, "for", now.Sub(w.waitSince).Round(time.Second).String(), "err", fmt.Sprint(err))
	w.log(level, msg, args...)
}

// cancelWork cancels the computation and the snapshot load in flight.
func (w *Worker) cancelWork() {
	if w.inflight != nil {
		w.emit(CancelStep{Epoch: w.inflight.epoch, Step: w.inflight.step})
		w.inflight = nil
	}
	if w.loading != nil {
		w.emit(CancelLoad{Step: *w.loading})
		w.loading = nil
	}
	w.deferred = nil
}

func (w *Worker) onPlan(p *Plan, now time.Time) {
	if w.phase != joined {
		if w.everRun {
			w.lastPlan = now
		}
		// The welcome decides which run to follow. A plan can overtake the
		// welcome that answers this worker's hello: keep the newest, and
		// act on it once welcomed into its run.
		if w.early == nil || w.early.Run != p.Run || after(p.Epoch, p.Step, w.early.Epoch, w.early.Step) {
			w.early = p
		}
		return
	}
	w.lastPlan = now // a coordinator of the job is there
	if w.leaveOn(p, now) || w.rejoinOn(p, now) {
		return
	}
	if !after(p.Epoch, p.Step, w.lastEpoch, w.lastStep) {
		return // an announcement, a repeat or a stale plan
	}
	if err := w.checkPlan(p); err != nil {
		w.log(slog.LevelWarn, "dropping a plan", "err", err.Error())
		return
	}
	w.lastEpoch, w.lastStep = p.Epoch, p.Step
	if w.inflight != nil {
		w.emit(CancelStep{Epoch: w.inflight.epoch, Step: w.inflight.step})
		w.inflight = nil
	}
	w.commit(p)
	switch {
	case p.Final:
		w.log(slog.LevelInfo, "job over", "step", w.committed)
		w.exit(nil)
		return
	case p.Pause:
		w.log(slog.LevelInfo, "the coordinator paused; waiting for it", "step", p.Base)
		w.cancelWork()
		return
	}
	rank := p.Rank(w.cfg.Name)
	if rank < 0 {
		w.cancelWork()
		return
	}
	lo, hi := shard.ShardRange(len(p.Batch), rank, len(p.Members))
	st := StartStep{Plan: *p, Rank: rank, Windows: p.Batch[lo:hi:hi]}
	if !w.initialised || w.committed != p.Base || slices.Contains(p.Resync, w.cfg.Name) {
		w.resync(st)
		return
	}
	w.start(st)
}

// leaveOn ends a leaving worker on a plan newer than its step in flight: it
// stays only to report that step, and a newer plan (a retry without it,
// another incarnation) makes the report moot; waiting on would wait for a
// plan that never names it again. It reports whether the worker left.
func (w *Worker) leaveOn(p *Plan, now time.Time) bool {
	if !w.leaving || p.Run == w.run && !after(p.Epoch, p.Step, w.lastEpoch, w.lastStep) {
		return false
	}
	w.cancelWork()
	w.sendHeartbeat(now)
	w.exit(ErrLeft)
	return true
}

// rejoinOn joins another coordinator incarnation at once when p is its
// plan, and reports whether it did.
func (w *Worker) rejoinOn(p *Plan, now time.Time) bool {
	if p.Run == w.run {
		return false
	}
	w.log(slog.LevelInfo, "coordinator changed; joining again", "run", p.Run, "was", w.run)
	w.cancelWork()
	w.pending, w.dirty = nil, false
	w.phase = joining
	w.hello(now)
	return true
}

// checkPlan checks what Validate cannot: the windows exist in the data.
func (w *Worker) checkPlan(p *Plan) error {
	for _, id := range p.Batch {
		if int(id) >= w.windows {
			return fmt.Errorf("plan of step %d names window %d; the data has %d", p.Step, id, w.windows)
		}
	}
	return nil
}

// commit applies the pending update when p commits exactly its attempt, and
// discards it otherwise.
func (w *Worker) commit(p *Plan) {
	pd, dirty := w.pending, w.dirty
	w.pending, w.dirty = nil, false
	if pd == nil {
		return
	}
	if p.CommitEpoch != 0 && pd.step == p.Base && pd.epoch == p.CommitEpoch && w.committed+1 == p.Base {
		w.emit(ApplyPending{Epoch: pd.epoch, Step: pd.step, Checkpoint: p.Checkpoint})
		w.committed = pd.step
		return
	}
	if pd.step == p.Base {
		w.log(slog.LevelInfo, "discarding an update that was not committed", "step", pd.step, "epoch", pd.epoch, "committed_in", p.CommitEpoch)
	}
	if dirty {
		w.initialised = false // the parameters hold the discarded update
	}
}

// resync loads the snapshot of st's base, then starts st.
func (w *Worker) resync(st StartStep) {
	base := st.Plan.Base
	if w.loading == nil || *w.loading != base {
		if w.loading != nil {
			w.emit(CancelLoad{Step: *w.loading})
		}
		w.loading = &base
		w.emit(LoadSnapshot{Step: base})
	}
	w.deferred = &st
}

func (w *Worker) start(st StartStep) {
	w.inflight = &staged{epoch: st.Plan.Epoch, step: st.Plan.Step, lr: st.Plan.LR}
	w.emit(st)
}

func (w *Worker) onLoaded(e SnapshotLoaded) {
	if w.loading == nil || *w.loading != e.Step {
		return // cancelled
	}
	w.loading = nil
	st := w.deferred
	w.deferred = nil
	if e.Err != nil {
		// A load that failed half way leaves the parameters half written.
		w.initialised = false
		w.log(slog.LevelWarn, "could not load the snapshot", "step", e.Step, "err", e.Err.Error())
		if st != nil {
			p := st.Plan
			w.emit(SendDone{Done{Run: w.run, Epoch: p.Epoch, Step: p.Step, Sender: w.cfg.Name, Rank: st.Rank,
				Err: "loading the snapshot: " + e.Err.Error(), ErrKind: FailSnapshot, Leaving: w.leaving}})
		}
		return
	}
	w.committed, w.initialised = e.Step, true
	if st != nil && !w.leaving {
		w.start(*st)
	}
}

func (w *Worker) onStepDone(e StepDone, now time.Time) {
	r := e.Report
	if w.inflight == nil || w.inflight.epoch != r.Epoch || w.inflight.step != r.Step {
		return // cancelled
	}
	pd := w.inflight
	w.inflight = nil
	r.Leaving = w.leaving
	w.emit(SendDone{r})
	if w.leaving {
		w.sendHeartbeat(now)
		w.exit(ErrLeft)
		return
	}
	if r.Err == "" {
		// The report is out first: the update runs while the
		// coordinator decides.
		w.pending, w.dirty = pd, true
		w.emit(ApplyStaged{Epoch: pd.epoch, Step: pd.step, LR: pd.lr})
	}
}

func (w *Worker) onStop(now time.Time) {
	if w.leaving {
		return
	}
	w.leaving = true
	if w.phase != joined {
		w.exit(ErrLeft)
		return
	}
	if w.inflight != nil {
		return // finish the step in flight, report it, then leave
	}
	w.sendHeartbeat(now)
	w.exit(ErrLeft)
}
