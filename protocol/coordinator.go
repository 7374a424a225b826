package protocol

import (
	"fmt"
	"log/slog"
	"math"
	"slices"
	"time"

	"github.com/klring/klring/allreduce"
	"github.com/klring/klring/shard"
)

// CoordinatorConfig is what the coordinator's state machine needs to know of
// the job. Durations are of the clock the runtime hands to Step.
type CoordinatorConfig struct {
	Run          string        // this incarnation's id
	Base         uint64        // the committed step it starts from (0, or a checkpoint's)
	BaseChecksum uint64        // checksum of the parameters of Base
	Steps        uint64        // the last step of the run
	MinWorkers   int           // fewest workers a step may run with
	StartWorkers int           // workers the first step of this incarnation waits for (>= MinWorkers)
	Heartbeat    time.Duration // workers' heartbeat; three missed ones mean dead
	StepDeadline time.Duration // longest an attempt may take
	MaxAttempts  int           // attempts of one step before the run fails
	MaxNonFinite int           // non-finite attempts of one step in a row before the run fails
	EvictAfter   int           // failed attempts in a row after which a worker is evicted
	VectorLen    int           // floats of the all-reduced vector (parameters + loss sum + token count)
	PartFloats   int           // floats of one ring part (allreduce.Options.PartFloats)
	SnapBytes    int64         // bytes of a snapshot (parameters and optimizer state)
	// LoadAllowance is added to the deadline of an attempt in which a
	// member must first load the snapshot (it is new to this run, or
	// resynced): the time a snapshot of SnapBytes takes to arrive.
	LoadAllowance time.Duration
	// CheckpointEvery and EvalEvery ask for a checkpoint or an evaluation
	// after every so many committed steps (0: never); the last step's are
	// the runtime's, at End.
	CheckpointEvery, EvalEvery uint64
	// MaxWorkers, when > 0, caps the members of an epoch: the current
	// members first, then newcomers by name (a sweep over workers started
	// elsewhere runs each point with exactly its number of them).
	MaxWorkers int
	// Linger ends the run with a pause plan instead of a final one: the
	// workers apply the last commit and wait for the next coordinator (the
	// next run of a sweep) instead of exiting.
	Linger bool
}

// Validate checks the configuration.
func (c CoordinatorConfig) Validate() error {
	switch {
	case validRun(c.Run) != nil || c.Run == "":
		return fmt.Errorf("protocol: run id %q", c.Run)
	case c.MinWorkers < 1 || c.StartWorkers < c.MinWorkers:
		return fmt.Errorf("protocol: min workers %d, start workers %d", c.MinWorkers, c.StartWorkers)
	case c.Heartbeat <= 0 || c.StepDeadline <= 0:
		return fmt.Errorf("protocol: heartbeat %v, step deadline %v", c.Heartbeat, c.StepDeadline)
	case c.MaxAttempts < 1 || c.MaxNonFinite < 1 || c.EvictAfter < 1:
		return fmt.Errorf("protocol: max attempts %d, max non-finite %d, evict after %d", c.MaxAttempts, c.MaxNonFinite, c.EvictAfter)
	case c.VectorLen < 3 || c.PartFloats < 1 || c.SnapBytes < 0:
		return fmt.Errorf("protocol: vector %d floats, parts of %d, snapshot %d bytes", c.VectorLen, c.PartFloats, c.SnapBytes)
	case c.Base > c.Steps:
		return fmt.Errorf("protocol: base step %d beyond the last step %d", c.Base, c.Steps)
	case c.MaxWorkers < 0 || c.MaxWorkers > 0 && c.MaxWorkers < c.StartWorkers:
		return fmt.Errorf("protocol: max workers %d, start workers %d", c.MaxWorkers, c.StartWorkers)
	}
	return nil
}

// Events of the coordinator's runtime.

// NextStep gives the work of the next step: the window ids of its global
// batch and its learning rate. The runtime sends it at the start and after
// every Committed that leaves the machine waiting for work (WantsWork).
type NextStep struct {
	Step  uint64
	Batch []int32
	LR    float32
}

// Committed says the runtime accepted the assembled gradient of step Step
// (its segments are what their owners reduced, it and its loss are finite)
// and started recording it and applying it to the master copy in the
// background. The next plan may go out at once: the workers compute
// step Step+1 while the master takes step Step.
type Committed struct {
	Step uint64
}

// Applied says the runtime finished applying the update of committed step
// Step to the master copy. Checksum is of the new parameters: the workers'
// reports of step Step+1 are checked against it. Until Applied, whatever
// needs the master at Step (snapshots, checkpoints, evaluations, the end
// of the run, the commit of the next step) waits in the machine.
type Applied struct {
	Step     uint64
	Checksum uint64
}

// CommitRefused says the runtime did not apply the assembled gradient of
// step Step (Kind: nonfinite when the gradient or its loss is not finite).
// The attempt is aborted and retried.
type CommitRefused struct {
	Step         uint64
	Kind, Reason string
}

// Disconnected says the coordinator's connection to the server is lost:
// until Reconnected, silence says nothing of the workers, so neither
// liveness nor the step deadline is judged.
type Disconnected struct{}

// Reconnected says the connection was made again: whatever the workers sent
// meanwhile is lost. Liveness is judged afresh and the attempt in flight is
// retried at once.
type Reconnected struct{}

func (Disconnected) event()  {}
func (Reconnected) event()   {}
func (NextStep) event()      {}
func (Committed) event()     {}
func (Applied) event()       {}
func (CommitRefused) event() {}

// Actions of the coordinator.

// SendPlan publishes a plan to every worker.
type SendPlan struct{ Plan Plan }

// BeginAttempt starts collecting the gradient of an attempt: the runtime
// clears the vector the segments are stored into.
type BeginAttempt struct {
	Epoch, Step uint64
	Members     []string
}

// Welcome answers a hello with the job's description.
type Welcome struct {
	Reply  string
	Worker string
}

// ServeSnap answers a snapshot request with bytes [Offset, Offset+Len) of
// the snapshot of committed step Step.
type ServeSnap struct {
	Reply       string
	Step        uint64
	Offset, Len int64
}

// RefuseSnap answers a snapshot request with an error.
type RefuseSnap struct {
	Reply, Reason string
}

// StoreSegment copies a segment's floats into the attempt's vector at float
// Offset. The machine has checked that it lies inside the sender's own
// segment and overlaps nothing stored before.
type StoreSegment struct {
	Offset int
	Data   []byte
}

// Commit asks the runtime to commit an attempt: check the assembled vector
// (segments, finiteness) and send Committed, or CommitRefused; then, off
// the protocol's path, one update at a time, record the ledger line, divide
// by the global token count, clip and apply the optimizer step to the
// master copy, and send Applied. The machine emits Commit only when no
// apply is pending. Dones are in rank order.
type Commit struct {
	Step, Epoch uint64
	Attempt     int
	Members     []string
	Batch       []int32
	Dones       []Done
}

// Abort reports an aborted attempt: Kind is one of the Abort* constants;
// Blame lists the workers it is counted against.
type Abort struct {
	Step, Epoch  uint64
	Kind, Reason string
	Blame        []string
}

// Membership reports a new epoch. Servers are the NATS servers the members
// last reported, in ring order ("": unknown).
type Membership struct {
	Epoch   uint64
	Members []string
	Servers []string
}

// Evicted reports a worker dropped from the membership until Until.
type Evicted struct {
	Worker string
	Until  time.Time
	Reason string
}

// Checkpoint asks for a checkpoint of committed step Step; Evaluate for an
// evaluation of it on held-out windows.
type Checkpoint struct{ Step uint64 }
type Evaluate struct{ Step uint64 }

// End ends the run: Err is nil when every step is committed, ErrStopped
// after a Stop, or an error naming the step that failed.
type End struct{ Err error }

func (SendPlan) action()     {}
func (BeginAttempt) action() {}
func (Welcome) action()      {}
func (ServeSnap) action()    {}
func (RefuseSnap) action()   {}
func (StoreSegment) action() {}
func (Commit) action()       {}
func (Abort) action()        {}
func (Membership) action()   {}
func (Evicted) action()      {}
func (Checkpoint) action()   {}
func (Evaluate) action()     {}
func (End) action()          {}

// Kinds of aborted attempts.
const (
	AbortDeadline    = "deadline"     // the step deadline passed
	AbortHeartbeat   = "heartbeat"    // a member missed three heartbeats
	AbortLeft        = "left"         // a member left (or restarted) before it reported
	AbortWorkerError = "worker_error" // a member reported an error
	AbortNonFinite   = "nonfinite"    // the loss or the gradient is not finite
	AbortChecksum    = "checksum"     // a member computed from other parameters
	AbortShard       = "shard"        // a member computed other windows than its shard
	AbortSegments    = "segments"     // two segments overlap: one of them is not its owner's
	AbortPaused      = "paused"       // the coordinator itself was paused past the deadline
	AbortReconnect   = "reconnect"    // the coordinator's connection was lost and made again
)

type coordPhase int

const (
	waitWork   coordPhase = iota // no work given for the next step yet
	forming                      // waiting for enough workers
	running                      // an attempt is in flight
	committing                   // the runtime is checking an attempt's gradient
	ending                       // the run ends once the pending apply is done
	ended
)

// member is what the coordinator knows of a worker.
type member struct {
	lastSeen     time.Time
	stale        bool // not heard from since the coordinator reconnected
	leaving      bool
	resync       bool
	synced       bool // has been a member of this run: it holds the run's parameters
	failures     int  // attempts failed in a row
	evictions    int
	evictedUntil time.Time
	server       string // the NATS server it last reported (hello, heartbeat)
}

// attempt is the attempt in flight.
type attempt struct {
	epoch, step uint64
	started     time.Time
	deadline    time.Time
	limit       time.Duration // deadline - started, without the load allowance
	rank        map[string]int
	dones       []*Done // by rank
	ndone       int
	covered     intervals
	plan        allreduce.Plan
}

// Coordinator is the coordinator's state machine: it admits and drops
// workers, forms membership epochs, plans every attempt, checks every report
// and segment, and decides commit, abort, retry, eviction and the end of the
// run. It does no I/O and reads no clock: Step is handed the time.
type Coordinator struct {
	cfg     CoordinatorConfig
	phase   coordPhase
	base    uint64 // committed step
	baseSum uint64 // checksum of its parameters
	// commitEpoch is the epoch in which base was committed (0 when this
	// incarnation has committed nothing).
	commitEpoch uint64
	work        *NextStep
	epoch       uint64
	members     []string
	workers     map[string]*member
	att         *attempt
	attempts    int // attempts of the current step
	nonFinite   int // non-finite attempts of the current step in a row
	retry       bool
	lateAborts  int              // deadline aborts of this step in a row in which no member reported
	recent      [8]time.Duration // durations of the last committed attempts
	nrecent     int
	regroup     bool // a member said hello again: its next attempt is a new epoch
	lastTick    time.Time
	offline     bool      // between Disconnected and Reconnected
	freshBy     time.Time // after a reconnect: wait for the workers to be heard until then
	waiting     bool      // "waiting for workers" was logged
	announced   time.Time // last announcement of the run while waiting
	stopping    bool
	// applying is the committed step whose update the runtime is applying
	// to the master copy (0: none); baseSum is unknown until Applied.
	applying uint64
	// heldSnaps are snapshot requests of the committed step that wait for
	// its apply; heldEnd the end of the run that waits for it.
	heldSnaps []SnapRequestMsg
	heldEnd   func()
	out       []Action
}

// maxHeldSnaps bounds the snapshot requests held during an apply (each
// worker has one in flight); more are refused.
const maxHeldSnaps = 1024

// NewCoordinator returns the machine of a coordinator that starts from
// committed step cfg.Base, waiting for NextStep.
func NewCoordinator(cfg CoordinatorConfig) (*Coordinator, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &Coordinator{cfg: cfg, base: cfg.Base, baseSum: cfg.BaseChecksum, workers: map[string]*member{}}, nil
}

// Step applies one event at time now and returns the actions to carry out.
func (c *Coordinator) Step(ev Event, now time.Time) []Action {
	c.out = nil
	if c.phase == ended || c.phase == ending {
		switch e := ev.(type) {
		case SnapRequestMsg:
			c.emit(RefuseSnap{Reply: e.Reply, Reason: "the run has ended"})
		case Applied:
			if c.phase == ending {
				c.onApplied(e, now)
			}
		}
		return c.out
	}
	switch e := ev.(type) {
	case Tick:
		c.onTick(now)
	case NextStep:
		c.onNextStep(e)
	case HelloMsg:
		c.onHello(e, now)
	case *Heartbeat:
		c.onHeartbeat(e, now)
	case *Done:
		c.onDone(e, now)
	case *Segment:
		c.onSegment(e, now)
	case SnapRequestMsg:
		c.onSnap(e, now)
	case Committed:
		c.onCommitted(e)
	case Applied:
		c.onApplied(e, now)
	case CommitRefused:
		c.onRefused(e, now)
	case Stop:
		c.onStop()
	case Disconnected:
		c.offline = true
		c.log(slog.LevelWarn, "the coordinator lost its connection to the server")
	case Reconnected:
		c.onReconnected(now)
	default:
		panic(fmt.Sprintf("protocol: coordinator given %T", ev))
	}
	switch {
	case c.phase == forming:
		c.form(now)
	case c.phase == waitWork && c.base >= c.cfg.Steps:
		// Started at the last step (a restart after the last commit):
		// tell the workers the job is over.
		c.finish()
	}
	return c.out
}

// onReconnected plans the retry once every worker has been heard from
// again (it has reconnected too), or after three heartbeats.
func (c *Coordinator) onReconnected(now time.Time) {
	c.offline = false
	c.refresh(now)
	c.freshBy = now.Add(3 * c.cfg.Heartbeat)
	for _, m := range c.workers {
		m.stale = true
	}
	if c.phase == running {
		c.abort(now, AbortReconnect, "the coordinator's connection to the server was lost and made again; what was sent meanwhile is lost", nil)
	}
}

func (c *Coordinator) emit(a ...Action) { c.out = append(c.out, a...) }

func (c *Coordinator) log(l slog.Level, msg string, args ...any) {
	c.emit(Log{Level: l, Msg: msg, Args: args})
}

func (c *Coordinator) drop(kind, format string, args ...any) {
	c.emit(Drop{Kind: kind, Reason: fmt.Sprintf(format, args...)})
}

// Epoch is the current membership epoch; Members its ring order.
func (c *Coordinator) Epoch() uint64     { return c.epoch }
func (c *Coordinator) Members() []string { return slices.Clone(c.members) }
func (c *Coordinator) Committed() uint64 { return c.base }
func (c *Coordinator) Ended() bool       { return c.phase == ended }
func (c *Coordinator) Running() bool     { return c.phase == running }
func (c *Coordinator) Attempts() int     { return c.attempts }
func (c *Coordinator) Failures(w string) int {
	if m := c.workers[w]; m != nil {
		return m.failures
	}
	return 0
}

// WantsWork reports whether the machine waits for NextStep: the runtime
// sends it after Committed only then (not when the run ends or pauses).
func (c *Coordinator) WantsWork() bool { return c.phase == waitWork }

// Applying is the committed step whose update is being applied to the
// master copy (0: none).
func (c *Coordinator) Applying() uint64 { return c.applying }

func (c *Coordinator) onNextStep(e NextStep) {
	if c.phase != waitWork || e.Step != c.base+1 {
		panic(fmt.Sprintf("protocol: NextStep of step %d while committed step is %d (phase %d)", e.Step, c.base, c.phase))
	}
	c.work = &e
	c.attempts, c.nonFinite, c.retry, c.lateAborts = 0, 0, false, 0
	c.phase = forming
	if c.stopping {
		c.pause()
	}
}

// eligible reports whether w may be a member of the next epoch.
func (c *Coordinator) eligible(m *member, now time.Time) bool {
	return !m.leaving && alive(m.lastSeen, now, c.cfg.Heartbeat) && !now.Before(m.evictedUntil)
}

// nextMembers lists the eligible workers: the current members in their
// order, then newcomers by name (at most MaxWorkers of them), placed on
// their servers (Place).
func (c *Coordinator) nextMembers(now time.Time) []string {
	var next, joiners []string
	for _, id := range c.members {
		if m := c.workers[id]; m != nil && c.eligible(m, now) {
			next = append(next, id)
		}
	}
	for id, m := range c.workers {
		if c.eligible(m, now) && !slices.Contains(next, id) {
			joiners = append(joiners, id)
		}
	}
	slices.Sort(joiners)
	next = append(next, joiners...)
	if k := c.cfg.MaxWorkers; k > 0 && len(next) > k {
		next = next[:k]
	}
	return Place(next, c.servers(next))
}

// servers maps members to the NATS server each last reported.
func (c *Coordinator) servers(members []string) map[string]string {
	s := make(map[string]string, len(members))
	for _, id := range members {
		s[id] = c.workers[id].server
	}
	return s
}

// form starts the next attempt when enough workers are there; otherwise it
// announces the run every heartbeat so that workers of an earlier
// incarnation join it.
func (c *Coordinator) form(now time.Time) {
	need := c.cfg.MinWorkers
	if c.commitEpoch == 0 && c.epoch == 0 {
		need = c.cfg.StartWorkers
	}
	next := c.nextMembers(now)
	if len(next) < need {
		if !c.waiting {
			c.log(slog.LevelInfo, "waiting for workers", "have", len(next), "need", need)
			c.waiting = true
		}
		if now.Sub(c.announced) >= c.cfg.Heartbeat {
			c.emit(SendPlan{Plan{Run: c.cfg.Run, Base: c.base, CommitEpoch: c.commitEpoch}})
			c.announced = now
		}
		return
	}
	if now.Before(c.freshBy) {
		for _, id := range next {
			if c.workers[id].stale {
				return // it may not have reconnected yet
			}
		}
	}
	c.waiting = false
	if c.retry || c.regroup || c.epoch == 0 || !slices.Equal(next, c.members) {
		c.regroup = false
		c.epoch++
		c.members = next
		srv := make([]string, len(next))
		for i, id := range next {
			srv[i] = c.workers[id].server
		}
		c.emit(Membership{Epoch: c.epoch, Members: slices.Clone(next), Servers: srv})
	}
	c.start(now)
}

// start plans an attempt of the next step with the current members.
func (c *Coordinator) start(now time.Time) {
	n := len(c.members)
	limit := c.stepDeadline()
	a := &attempt{epoch: c.epoch, step: c.work.Step, started: now, deadline: now.Add(limit), limit: limit,
		rank: make(map[string]int, n), dones: make([]*Done, n),
		plan: allreduce.NewPlan(c.cfg.VectorLen, n, c.cfg.PartFloats)}
	var resync []string
	load := false
	for i, id := range c.members {
		a.rank[id] = i
		m := c.workers[id]
		if m.resync {
			resync = append(resync, id)
			m.resync = false
			load = true
		}
		if !m.synced {
			load = true
		}
	}
	if load {
		a.deadline = a.deadline.Add(c.cfg.LoadAllowance)
	}
	c.att = a
	c.attempts++
	c.retry = false
	c.phase = running
	c.emit(BeginAttempt{Epoch: a.epoch, Step: a.step, Members: slices.Clone(c.members)},
		SendPlan{Plan{Run: c.cfg.Run, Epoch: a.epoch, Step: a.step, Base: c.base, CommitEpoch: c.commitEpoch,
			Members: slices.Clone(c.members), Batch: c.work.Batch, LR: c.work.LR, Resync: resync, Checkpoint: c.checkpointsBase()}})
}

// stepDeadline is how long an attempt may take: StepDeadline, doubled for
// each attempt of this step in a row that passed it with no member
// reporting (the step is slower than the deadline, not a worker stuck; at
// most 8x), and at least three times the slowest of the last 8 committed
// attempts, so that a job whose steps are slow (a large model, on-policy
// sampling, a loaded machine) is not aborted for its speed.
func (c *Coordinator) stepDeadline() time.Duration {
	d := c.cfg.StepDeadline << min(c.lateAborts, 3)
	for _, r := range c.recent[:min(c.nrecent, len(c.recent))] {
		d = max(d, 3*r)
	}
	return d
}

func (c *Coordinator) onTick(now time.Time) {
	gap := now.Sub(c.lastTick)
	paused := !c.lastTick.IsZero() && gap > 3*c.cfg.Heartbeat
	c.lastTick = now
	if paused {
		// This process was not running (a stop signal, a long stall): what
		// the workers sent meanwhile may be lost. Judge them afresh rather
		// than take them all for dead.
		c.log(slog.LevelWarn, "the coordinator was paused; liveness is judged afresh", "for", gap.String())
		c.refresh(now)
	}
	if c.phase != running || c.offline {
		return
	}
	a := c.att
	if c.waitsForApply() {
		// Every member reported and the vector is complete: the attempt
		// waits for the coordinator's own apply, not for a worker.
		return
	}
	if paused && !now.Before(a.deadline) {
		c.abort(now, AbortPaused, fmt.Sprintf("the coordinator was paused for %v, past the step deadline", gap), nil)
		return
	}
	if !now.Before(a.deadline) {
		blame := c.missing()
		reason := fmt.Sprintf("deadline %v passed; waiting for %v; %d of %d gradient floats received", a.limit, blame, a.covered.total, c.cfg.VectorLen)
		if a.ndone == 0 {
			// No member reported: the step takes longer than the deadline
			// (or every member is stuck, which their heartbeats tell).
			// Blame none; the retry has twice the time.
			c.lateAborts++
			blame = nil
			reason += "; no member reported: the next attempt has twice the time"
		}
		c.abort(now, AbortDeadline, reason, blame)
		return
	}
	for i, id := range c.members {
		if a.dones[i] == nil && !alive(c.workers[id].lastSeen, now, c.cfg.Heartbeat) {
			c.abort(now, AbortHeartbeat, fmt.Sprintf("worker %s missed its heartbeats", id), []string{id})
			return
		}
	}
}

// refresh counts every known worker as heard from now: after the
// coordinator itself was away, silence says nothing of the workers.
func (c *Coordinator) refresh(now time.Time) {
	for _, m := range c.workers {
		if !m.lastSeen.IsZero() {
			m.lastSeen = now
		}
	}
}

// missing names the members the attempt still waits for: those that did not
// report, or, when all did, the owners of segments not fully received.
func (c *Coordinator) missing() []string {
	var out []string
	for i, id := range c.members {
		if c.att.dones[i] == nil {
			out = append(out, id)
		}
	}
	if len(out) > 0 {
		return out
	}
	n := len(c.members)
	for r, id := range c.members {
		// Rank r owns segment (r+1) mod n: its stripes (allreduce.Plan).
		k, p := (r+1)%n, c.att.plan
		for j := range p.Parts(k) {
			if off, l := p.Part(k, j); c.att.covered.covers(off, l) < l {
				out = append(out, id)
				break
			}
		}
	}
	return out
}

func (c *Coordinator) onHello(h HelloMsg, now time.Time) {
	m := c.workers[h.Worker]
	if m == nil {
		m = &member{}
		c.workers[h.Worker] = m
		c.log(slog.LevelInfo, "worker joined", "worker", h.Worker)
	}
	m.lastSeen, m.stale = now, false
	m.leaving = false
	m.server = h.Server
	if slices.Contains(c.members, h.Worker) {
		// A member's new process (or one that left and came back) has
		// none of the old one's state: the members are the same names,
		// not the same ring.
		c.regroup = true
	}
	c.emit(Welcome{Reply: h.Reply, Worker: h.Worker})
	if c.phase == running {
		if r, ok := c.att.rank[h.Worker]; ok && c.att.dones[r] == nil {
			// A member that says hello again has restarted: it will not
			// finish this attempt.
			m.resync = true
			c.abort(now, AbortLeft, fmt.Sprintf("worker %s restarted", h.Worker), nil)
		}
	}
}

func (c *Coordinator) onHeartbeat(h *Heartbeat, now time.Time) {
	m := c.workers[h.Sender]
	if h.Run != c.cfg.Run || m == nil {
		// A worker of another incarnation, or one that never said hello:
		// it joins when it sees this run's plans.
		c.drop("heartbeat", "worker %s of run %q", h.Sender, h.Run)
		return
	}
	m.lastSeen, m.stale = now, false
	if h.Server != "" {
		m.server = h.Server
	}
	if !h.Leaving || m.leaving {
		return
	}
	m.leaving = true
	c.log(slog.LevelInfo, "worker leaving", "worker", h.Sender)
	if c.phase == running {
		if r, ok := c.att.rank[h.Sender]; ok && c.att.dones[r] == nil {
			c.abort(now, AbortLeft, fmt.Sprintf("worker %s left", h.Sender), nil)
		}
	}
}

func (c *Coordinator) onDone(d *Done, now time.Time) {
	if c.phase != running || d.Run != c.cfg.Run || d.Epoch != c.att.epoch || d.Step != c.att.step {
		c.drop("done", "from %s for (run %q, epoch %d, step %d)", d.Sender, d.Run, d.Epoch, d.Step)
		return
	}
	a := c.att
	r, ok := a.rank[d.Sender]
	if !ok || r != d.Rank || a.dones[r] != nil {
		c.drop("done", "from %s as rank %d: not that member, or a duplicate", d.Sender, d.Rank)
		return
	}
	m := c.workers[d.Sender]
	m.lastSeen, m.stale = now, false
	if d.Leaving {
		m.leaving = true
	}
	if kind, reason := c.judge(d, r); kind != "" {
		c.abort(now, kind, reason, []string{d.Sender})
		return
	}
	a.dones[r] = d
	a.ndone++
	m.synced = true
	c.complete(now)
}

// judge checks a member's report against the attempt: an error, a checksum
// of other parameters, other windows than its shard, a non-finite loss.
func (c *Coordinator) judge(d *Done, r int) (kind, reason string) {
	who := fmt.Sprintf("worker %s (rank %d)", d.Sender, r)
	switch {
	case d.Err != "" && d.ErrKind == FailNonFinite:
		return AbortNonFinite, who + ": " + d.Err
	case d.Err != "":
		return AbortWorkerError, who + ": " + d.Err
	case c.applying == 0 && d.Checksum != c.baseSum:
		// While the master's apply is pending the checksum is compared
		// when Applied gives it (onApplied).
		c.workers[d.Sender].resync = true
		return AbortChecksum, mismatch(who, d.Checksum, c.baseSum)
	case math.IsNaN(d.LossSum) || math.IsInf(d.LossSum, 0):
		return AbortNonFinite, fmt.Sprintf("%s: loss sum %v", who, d.LossSum)
	}
	lo, hi := shard.ShardRange(len(c.work.Batch), r, len(c.members))
	if want := c.work.Batch[lo:hi]; !slices.Equal(d.Windows, want) {
		return AbortShard, fmt.Sprintf("%s computed windows %v, its shard is %v", who, d.Windows, want)
	}
	return "", ""
}

func (c *Coordinator) onSegment(s *Segment, now time.Time) {
	if c.phase != running || s.Run != c.cfg.Run || s.Epoch != c.att.epoch || s.Step != c.att.step {
		c.drop("segment", "from %s for (run %q, epoch %d, step %d)", s.Sender, s.Run, s.Epoch, s.Step)
		return
	}
	a := c.att
	r, ok := a.rank[s.Sender]
	if !ok {
		c.drop("segment", "from %s, not a member", s.Sender)
		return
	}
	// Rank r owns segment (r+1) mod n: the floats must lie inside one of
	// its stripes (allreduce.Plan.Within compares without adding anything
	// from the wire).
	k := (r + 1) % len(c.members)
	nf := int64(len(s.Data) / 4)
	if s.Offset > int64(a.plan.Len) || !a.plan.Within(k, int(s.Offset), int(nf)) {
		c.drop("segment", "from %s: floats [%d, +%d) outside the stripes of its segment %d", s.Sender, s.Offset, nf, k)
		return
	}
	if !a.covered.add(int(s.Offset), int(nf)) {
		// The owner sends each float once: an overlap means one of the
		// two is not what it says. Neither can be trusted.
		c.drop("segment", "from %s: floats [%d, +%d) overlap what was received", s.Sender, s.Offset, nf)
		c.abort(now, AbortSegments, fmt.Sprintf("a segment from %s overlaps one received before", s.Sender), nil)
		return
	}
	c.emit(StoreSegment{Offset: int(s.Offset), Data: s.Data})
	c.complete(now)
}

func mismatch(who string, got, master uint64) string {
	return fmt.Sprintf("%s computed from parameters with checksum %016x, the master's is %016x; it will be re-seeded", who, got, master)
}

// waitsForApply reports whether the attempt in flight is complete and waits
// only for the master's apply of the step before.
func (c *Coordinator) waitsForApply() bool {
	a := c.att
	return c.applying != 0 && a != nil && a.ndone == len(c.members) && a.covered.total >= c.cfg.VectorLen
}

// complete commits the attempt once every member reported, the segments
// cover the whole vector and the master has applied the step before (its
// checksum has checked every report).
func (c *Coordinator) complete(now time.Time) {
	a := c.att
	if a.ndone < len(c.members) || a.covered.total < c.cfg.VectorLen || c.applying != 0 {
		return
	}
	c.recent[c.nrecent%len(c.recent)] = now.Sub(a.started)
	c.nrecent++
	dones := make([]Done, len(a.dones))
	for i, d := range a.dones {
		dones[i] = *d
	}
	c.phase = committing
	c.emit(Commit{Step: a.step, Epoch: a.epoch, Attempt: c.attempts, Members: slices.Clone(c.members), Batch: c.work.Batch, Dones: dones})
}

// abort ends the attempt in flight, counts it against the blamed workers
// (evicting one that failed EvictAfter attempts in a row, while enough
// workers remain), and retries the step or ends the run.
func (c *Coordinator) abort(now time.Time, kind, reason string, blame []string) {
	a := c.att
	c.emit(Abort{Step: a.step, Epoch: a.epoch, Kind: kind, Reason: reason, Blame: blame})
	for _, id := range blame {
		c.blame(id, now, kind)
	}
	if kind == AbortNonFinite {
		c.nonFinite++
	} else {
		c.nonFinite = 0
	}
	c.att = nil
	c.retry = true
	c.phase = forming
	switch {
	case c.nonFinite >= c.cfg.MaxNonFinite:
		c.fail(fmt.Errorf("%w: step %d: %d attempts in a row with a non-finite loss or gradient; the last: %s", ErrStepFailed, a.step, c.nonFinite, reason))
	case c.attempts >= c.cfg.MaxAttempts:
		c.fail(fmt.Errorf("%w: step %d failed %d times in a row; the last attempt (%s): %s", ErrStepFailed, a.step, c.attempts, kind, reason))
	case c.stopping:
		c.pause()
	}
}

// blame counts a failed attempt against worker id and evicts it after
// EvictAfter in a row, unless that would leave fewer than MinWorkers.
func (c *Coordinator) blame(id string, now time.Time, kind string) {
	m := c.workers[id]
	if m == nil {
		return
	}
	m.failures++
	if m.failures < c.cfg.EvictAfter {
		return
	}
	others := 0
	for oid, o := range c.workers {
		if oid != id && c.eligible(o, now) {
			others++
		}
	}
	if others < c.cfg.MinWorkers {
		return
	}
	m.evictions++
	m.failures = 0
	m.evictedUntil = now.Add(min(c.cfg.StepDeadline<<(m.evictions-1), 64*c.cfg.StepDeadline))
	c.emit(Evicted{Worker: id, Until: m.evictedUntil,
		Reason: fmt.Sprintf("failed %d attempts in a row, the last: %s", c.cfg.EvictAfter, kind)})
}

func (c *Coordinator) onCommitted(e Committed) {
	if c.phase != committing || e.Step != c.att.step {
		panic(fmt.Sprintf("protocol: Committed of step %d while not committing it", e.Step))
	}
	if c.applying != 0 {
		panic(fmt.Sprintf("protocol: Committed of step %d while step %d is being applied", e.Step, c.applying))
	}
	// The master's checksum of the new base is known at Applied.
	c.base, c.baseSum, c.commitEpoch = e.Step, 0, c.att.epoch
	c.applying = e.Step
	for _, id := range c.members {
		c.workers[id].failures = 0
	}
	c.att, c.work = nil, nil
	c.phase = waitWork
	switch {
	case c.base >= c.cfg.Steps:
		c.finish()
	case c.stopping:
		c.pause()
	}
}

// onApplied takes the master's checksum of the committed step: the
// checkpoint and the evaluation of that step, the snapshot requests and the
// end of the run that waited for it go ahead, and the reports of the
// attempt in flight, computed from the workers' copies of that step, are
// checked against it.
func (c *Coordinator) onApplied(e Applied, now time.Time) {
	if c.applying == 0 || e.Step != c.applying {
		panic(fmt.Sprintf("protocol: Applied of step %d while applying step %d", e.Step, c.applying))
	}
	c.applying, c.baseSum = 0, e.Checksum
	last := c.base >= c.cfg.Steps
	if c.checkpointsBase() {
		c.emit(Checkpoint{Step: c.base})
	}
	if k := c.cfg.EvalEvery; k > 0 && c.base%k == 0 && !last {
		c.emit(Evaluate{Step: c.base})
	}
	held := c.heldSnaps
	c.heldSnaps = nil
	for _, r := range held {
		c.onSnap(r, now)
	}
	if c.phase == ending {
		end := c.heldEnd
		c.heldEnd = nil
		end()
		return
	}
	if c.phase != running {
		return
	}
	var blame []string
	var reason string
	for r, d := range c.att.dones {
		if d != nil && d.Checksum != c.baseSum {
			c.workers[d.Sender].resync = true
			blame = append(blame, d.Sender)
			if reason == "" {
				reason = mismatch(fmt.Sprintf("worker %s (rank %d)", d.Sender, r), d.Checksum, c.baseSum)
			}
		}
	}
	if len(blame) > 0 {
		if len(blame) > 1 {
			reason += fmt.Sprintf(" (and %d more)", len(blame)-1)
		}
		c.abort(now, AbortChecksum, reason, blame)
		return
	}
	c.complete(now)
}

// endAfterApply holds the end of the run until the pending apply is done:
// the final or pause plan commits a step the master must hold, and the
// runtime checkpoints the master at End.
func (c *Coordinator) endAfterApply(end func()) bool {
	if c.applying == 0 {
		return false
	}
	c.heldEnd = end
	c.phase = ending
	c.att = nil
	return true
}

// finish ends the run after its last commit. Core NATS may lose a message:
// the final plan (with Linger, a pause plan) goes out three times; a worker
// acts on the first and is gone for the others.
func (c *Coordinator) finish() {
	if c.endAfterApply(c.finish) {
		return
	}
	p := c.endPlan()
	p.Final, p.Pause = !c.cfg.Linger, c.cfg.Linger
	c.emit(SendPlan{p}, SendPlan{p}, SendPlan{p}, End{})
	c.phase = ended
}

func (c *Coordinator) onRefused(e CommitRefused, now time.Time) {
	if c.phase != committing || e.Step != c.att.step {
		panic(fmt.Sprintf("protocol: CommitRefused of step %d while not committing it", e.Step))
	}
	c.abort(now, e.Kind, "the coordinator refused the assembled gradient: "+e.Reason, nil)
}

func (c *Coordinator) onStop() {
	c.stopping = true
	if c.phase == forming || c.phase == waitWork {
		c.pause()
	}
	// running or committing: pause at the end of the attempt.
}

// endPlan is the plan that ends this incarnation's work at the committed
// step: newer than every plan sent before, it commits Base, which the
// runtime checkpoints at End.
func (c *Coordinator) endPlan() Plan {
	c.epoch++
	return Plan{Run: c.cfg.Run, Epoch: c.epoch, Step: c.base + 1, Base: c.base, CommitEpoch: c.commitEpoch, Checkpoint: c.commitEpoch != 0}
}

// checkpointsBase reports whether the committed step, committed in this
// incarnation, gets a periodic checkpoint (onApplied asks for it): the
// plans that commit it say so (Plan.Checkpoint).
func (c *Coordinator) checkpointsBase() bool {
	k := c.cfg.CheckpointEvery
	return c.commitEpoch != 0 && k > 0 && c.base%k == 0 && c.base < c.cfg.Steps
}

// pause ends the incarnation at a step boundary: the workers apply the last
// commit and wait for a coordinator; the runtime checkpoints.
func (c *Coordinator) pause() {
	if c.endAfterApply(c.pause) {
		return
	}
	p := c.endPlan()
	p.Pause = true
	c.emit(SendPlan{p}, SendPlan{p}, SendPlan{p}, End{Err: ErrStopped})
	c.phase = ended
}

// fail ends the run with err; the workers are told the job is over.
func (c *Coordinator) fail(err error) {
	if c.endAfterApply(func() { c.fail(err) }) {
		return
	}
	p := c.endPlan()
	p.Final = true
	c.emit(SendPlan{p}, End{Err: err})
	c.phase = ended
}

func (c *Coordinator) onSnap(r SnapRequestMsg, now time.Time) {
	if m := c.workers[r.Sender]; m != nil && r.Run == c.cfg.Run {
		m.lastSeen = now
	}
	refuse := func(format string, args ...any) {
		c.emit(RefuseSnap{Reply: r.Reply, Reason: fmt.Sprintf(format, args...)})
	}
	switch {
	case r.Run != c.cfg.Run:
		refuse("run %q is not the current run %q", r.Run, c.cfg.Run)
	case c.phase == committing:
		refuse("step %d is being committed; ask again", c.att.step)
	case r.Step != c.base:
		refuse("step %d is not the committed step %d", r.Step, c.base)
	case r.Offset > c.cfg.SnapBytes:
		refuse("offset %d outside the %d-byte snapshot", r.Offset, c.cfg.SnapBytes)
	case c.applying != 0 && len(c.heldSnaps) >= maxHeldSnaps:
		refuse("step %d is being applied; ask again", c.base)
	case c.applying != 0:
		// The master is taking this step: served once it is applied.
		c.heldSnaps = append(c.heldSnaps, r)
	default:
		n := min(max(r.Max, 1), c.cfg.SnapBytes-r.Offset)
		c.emit(ServeSnap{Reply: r.Reply, Step: c.base, Offset: r.Offset, Len: n})
	}
}

// intervals is a set of disjoint [lo, hi) float ranges, sorted.
type intervals struct {
	r     [][2]int
	total int
}

// add inserts [off, off+n) and reports whether it overlapped nothing.
func (s *intervals) add(off, n int) bool {
	i, _ := slices.BinarySearchFunc(s.r, off, func(x [2]int, t int) int { return x[0] - t })
	if i > 0 && s.r[i-1][1] > off || i < len(s.r) && s.r[i][0] < off+n {
		return false
	}
	s.r = slices.Insert(s.r, i, [2]int{off, off + n})
	s.total += n
	return true
}

// covers returns how many floats of [off, off+n) are in the set.
func (s *intervals) covers(off, n int) int {
	got := 0
	for _, x := range s.r {
		lo, hi := max(x[0], off), min(x[1], off+n)
		if hi > lo {
			got += hi - lo
		}
	}
	return got
}
