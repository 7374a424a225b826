package cluster

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/klring/klring/allreduce"
	"github.com/klring/klring/config"
	"github.com/klring/klring/engine"
	"github.com/klring/klring/kernels"
	"github.com/klring/klring/loss"
	"github.com/klring/klring/natsnet"
	"github.com/klring/klring/outputs"
	"github.com/klring/klring/protocol"
	"github.com/klring/klring/shard"
)

// Limits of the coordinator's decisions (docs/protocol.md).
const (
	maxAttempts  = 8 // attempts of one step before the run fails
	maxNonFinite = 3 // non-finite attempts of one step in a row before the run fails
	evictAfter   = 3 // failed attempts in a row before a worker is evicted
)

// Coordinator is the coordinator's runtime: it owns the NATS subscriptions,
// the clock, the master copy of the model and optimizer, and the run's
// files, and carries out the decisions of the protocol's coordinator state
// machine. All of its state is owned by the goroutine that calls Run.
type Coordinator struct {
	cfg  config.Config
	spec JobSpec
	log  *slog.Logger
	subj natsnet.Subjects
	run  string

	job     *jobState // the master copy: model, optimizer, data cursor
	resumed bool
	conn    *natsnet.Conn
	nc      *nats.Conn
	prom    *outputs.Prom
	out     *outputs.Run
	core    *protocol.Coordinator

	progress func(outputs.StepMetrics)

	gsum []float32 // [N+2] the vector of the attempt, assembled from the segments
	// segs checks the segments as they are stored (segmentSums): their
	// seg_sum digests, per segment, and whether their floats are finite.
	segs segmentSums
	// applyBuf is the vector of the committed step being applied to the
	// master copy (gsum and applyBuf swap at every commit); apply is that
	// step's pending work (nil: none), and applied receives its end.
	applyBuf   []float32
	apply      *pendingApply
	applied    chan appliedStep
	batch      []int32
	nextCursor shard.Cursor
	attemptAt  time.Time  // when the attempt in flight was planned, or its step began
	stepEnded  time.Time  // when the last committed step's wall time ended
	begun      uint64     // the step of the last BeginAttempt
	metrics    *commitRow // the metrics of the step being applied
	side       *side
	snapBuf    []byte // one chunk of the snapshot, encoded
	snapStep   uint64
	snapSum    uint64 // checksum of the snapshot's parameters
	snapValid  bool
	ended      *protocol.End
	aborts     int
	abortKinds map[string]int // aborted attempts by kind, as the Prometheus counter

	peak        float64 // GFLOP/s that MFU is reported against
	evalSkipped int     // evaluations skipped because the one before still ran

	// With error feedback: resid gathers the workers' residuals of the
	// steps it checkpoints, and seeds are those of the checkpoint it
	// resumed from, served until the first commit (nil: none). Both are
	// used by NATS callbacks too (resid.go).
	resid *residCollector
	seeds atomic.Pointer[residSeeds]

	hooks coordHooks
}

// mfu is the model FLOPs utilisation of training on windows windows in
// secs seconds.
func (c *Coordinator) mfu(windows int, secs float64) float64 {
	if secs <= 0 || c.peak <= 0 {
		return 0
	}
	return c.spec.Model.TrainFLOPs(windows, c.spec.Model.Ctx) / secs / 1e9 / c.peak
}

// coordHooks let tests force rare cases.
type coordHooks struct {
	// afterCommit runs after step s is committed and applied to the
	// master copy.
	afterCommit func(step uint64)
	// holdApply runs before the update of step s is applied to the
	// master copy, in the goroutine that applies it.
	holdApply func(step uint64)
	// holdCheckpoint runs before a periodic checkpoint of step s is
	// written, in the goroutine that writes it.
	holdCheckpoint func(step uint64)
	// holdEval runs before the evaluation of step s, in its goroutine.
	holdEval func(step uint64)
	// crashAfter ends Run as a crash would right after step crashAfter
	// is committed and applied: no pause, no checkpoint (errCrashed).
	crashAfter uint64
	// crash ends Run as a crash would when it is closed (errCrashed).
	crash <-chan struct{}
	// onAbort sees every aborted attempt's kind.
	onAbort func(kind string)
}

// errCrashed is what Run returns after coordHooks.crashAfter.
var errCrashed = errors.New("cluster: crashed (test)")

// Summary is what a finished run reports.
type Summary = outputs.Summary

// NewCoordinator checks the whole configuration, opens the data, builds the
// model (from run.dir's newest checkpoint that verifies, else from
// model.init or a fresh initialisation) and returns a coordinator ready to
// Run. It writes nothing: a failed start leaves run.dir untouched.
func NewCoordinator(cfg config.Config, log *slog.Logger, env *Env) (*Coordinator, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	subj, err := natsnet.NewSubjects(cfg.Job)
	if err != nil {
		return nil, err
	}
	job, resumed, err := openJob(cfg, env, log)
	if err != nil {
		return nil, err
	}
	peak := cfg.Run.PeakGFLOPs
	if peak == 0 {
		// Against every core of this machine, not the coordinator's own
		// cluster.threads: workers beside it (compose on one machine, 1
		// thread each) would otherwise report an MFU above 1.
		pool := job.env.Pool
		if n := runtime.NumCPU(); n > pool.Threads() {
			pool = kernels.NewPool(n)
		}
		peak = pool.PeakGFLOPs()
		log.Info("measured the peak for MFU (set run.peak_gflops to the sum over the workers' machines)", "gflops", math.Round(peak), "threads", pool.Threads())
	}
	c := &Coordinator{cfg: cfg, spec: job.spec, log: log, subj: subj, run: newRunID(),
		job: job, resumed: resumed, prom: outputs.NewProm(), abortKinds: map[string]int{}, peak: peak}
	if job.spec.ErrorFeedback {
		c.resid = newResidCollector(job.model.Config.NumParams()+2, residualWait(cfg.Cluster.Heartbeat), log)
		if s := job.seeds; s != nil {
			c.resid.preset(s.step, s.ranks)
			c.seeds.Store(s)
		}
	}
	return c, nil
}

// SetProgress registers a function called after every committed step.
func (c *Coordinator) SetProgress(f func(outputs.StepMetrics)) { c.progress = f }

// RunDir is where the coordinator writes its outputs.
func (c *Coordinator) RunDir() string { return c.cfg.Run.Dir }

func (c *Coordinator) coreConfig(startWorkers int) protocol.CoordinatorConfig {
	n := c.job.model.Config.NumParams()
	return protocol.CoordinatorConfig{
		Run: c.run, Base: c.job.step, BaseChecksum: c.job.checksum(), Steps: uint64(c.cfg.Train.Steps),
		MinWorkers: c.cfg.Cluster.MinWorkers, StartWorkers: max(startWorkers, c.cfg.Cluster.MinWorkers),
		Heartbeat: c.cfg.Cluster.Heartbeat, StepDeadline: c.cfg.Cluster.StepDeadline,
		MaxAttempts: maxAttempts, MaxNonFinite: maxNonFinite, EvictAfter: evictAfter,
		VectorLen: n + 2, PartFloats: allreduce.Options{ChunkBytes: c.cfg.AllReduce.ChunkBytes}.PartFloats(),
		SnapBytes: int64(c.job.snapshotBytes()), LoadAllowance: loadAllowance(c.job.snapshotBytes()), CheckpointEvery: uint64(c.cfg.Run.CheckpointEvery), EvalEvery: uint64(c.cfg.Run.EvalEvery),
	}
}

// Run serves the job on nc until every step is committed, the run fails, or
// ctx is cancelled: then the attempt in flight finishes, the job pauses at
// that step boundary (the workers wait for a coordinator), a checkpoint is
// written and Run returns a summary with Stopped set.
func (c *Coordinator) Run(ctx context.Context, conn *natsnet.Conn) (Summary, error) {
	c.conn, c.nc = conn, conn.NC
	start := time.Now()
	sum := Summary{RunDir: c.cfg.Run.Dir, EntropyFloor: -1, ResumedFrom: c.job.step}
	release, err := lockRunDir(c.cfg.Run.Dir, c.run)
	switch {
	case errors.Is(err, ErrRunDirBusy):
		return sum, err
	case err != nil:
		// A file system without flock: the run goes on unguarded.
		c.log.Warn("run.dir could not be locked: a second coordinator on it would not be refused", "err", err)
	default:
		defer release()
	}
	if err := c.probeOther(); err != nil {
		return sum, err
	}
	out, err := outputs.Open(c.cfg.Run.Dir, c.job.step)
	if err != nil {
		return sum, err
	}
	c.out = out
	defer out.Close()
	if err := moveDamaged(c.job.damaged, c.log); err != nil {
		return sum, err
	}
	c.job.damaged = nil
	rec := runRecord{Job: c.cfg.Job, Steps: uint64(c.cfg.Train.Steps), Spec: c.spec}
	if err := outputs.WriteJSON(filepath.Join(c.cfg.Run.Dir, "run.json"), rec); err != nil {
		return sum, err
	}
	sum.Metrics = out.MetricsPath
	if c.resumed {
		c.log.Info("resumed from checkpoint", "step", c.job.step, "dir", c.cfg.Run.Dir)
	}
	addr, stopMetrics, err := c.prom.Serve(c.cfg.Run.MetricsAddr)
	if err != nil {
		return sum, err
	}
	defer stopMetrics()
	if addr != "" {
		c.log.Info("serving metrics", "addr", "http://"+addr+"/metrics")
	}
	in, unsubscribe, err := c.subscribe()
	if err != nil {
		return sum, err
	}
	defer unsubscribe()
	if err := c.serve(ctx, in); err != nil {
		if c.core != nil && c.job.step > sum.ResumedFrom && !errors.Is(err, errCrashed) {
			// What was committed verified: keep it, so a run that failed
			// can be resumed (with other settings) from where it stopped.
			// No plan announced this checkpoint, so no worker sends its
			// error-feedback residual: none is waited for. Lines still
			// waiting for an evaluation are written without its figures,
			// so that the checkpoint's step has its line.
			for i := range c.side.rows {
				c.side.rows[i].eval = false
			}
			if ferr := c.flushRows(); ferr != nil {
				c.log.Error("metrics lines after the failure", "err", ferr)
			}
			if dir, cerr := c.job.save(c.cfg.Run.Dir, c.cfg.Run.Keep, nil); cerr != nil {
				c.log.Error("checkpoint after the failure", "err", cerr)
			} else {
				c.log.Info("checkpoint after the failure", "step", c.job.step, "dir", dir)
			}
		}
		return sum, err
	}
	return c.finish(sum, start)
}

// inbox gathers the coordinator's subscriptions.
type inbox struct {
	hello, done, seg, hb, snap chan *nats.Msg
}

func (c *Coordinator) subscribe() (*inbox, func(), error) {
	in := &inbox{
		hello: make(chan *nats.Msg, 256),
		done:  make(chan *nats.Msg, 1024),
		seg:   make(chan *nats.Msg, 1<<14),
		hb:    make(chan *nats.Msg, 1024),
		snap:  make(chan *nats.Msg, 256),
	}
	var subs []*nats.Subscription
	unsub := func() {
		for _, s := range subs {
			s.Unsubscribe()
		}
	}
	for _, x := range []struct {
		subj string
		ch   chan *nats.Msg
	}{{c.subj.Hello, in.hello}, {c.subj.Done, in.done}, {c.subj.Seg, in.seg}, {c.subj.HB, in.hb}, {c.subj.Snap, in.snap}} {
		s, err := c.nc.ChanSubscribe(x.subj, x.ch)
		if err != nil {
			unsub()
			return nil, nil, fmt.Errorf("subscribing to %s: %w", x.subj, err)
		}
		subs = append(subs, s)
	}
	if c.resid != nil {
		for subj, h := range map[string]nats.MsgHandler{c.subj.Resid: c.onResid, c.subj.Seed: c.serveSeed} {
			s, err := c.nc.Subscribe(subj, h)
			if err != nil {
				unsub()
				return nil, nil, fmt.Errorf("subscribing to %s: %w", subj, err)
			}
			subs = append(subs, s)
		}
	}
	if err := c.nc.Flush(); err != nil {
		unsub()
		return nil, nil, fmt.Errorf("subscribing: %w", err)
	}
	// The server answers a refused subscription before the flush's pong:
	// a coordinator with another role's credentials would otherwise wait
	// for workers it can never hear.
	if err := c.nc.LastError(); refusedSubscription(err) {
		unsub()
		return nil, nil, fmt.Errorf("subscribing to job %s's subjects: %w: the coordinator needs the NATS user of the coordinator's role (nats.user, docs/security.md)", c.cfg.Job, err)
	}
	// Answer the probe of a coordinator that starts on the same job
	// (probeOther). A server whose permissions predate the subject refuses
	// it: the run goes on, undetectable.
	ident := []byte(fmt.Sprintf("run %s, run.dir %s, pid %d on host %s", c.run, c.cfg.Run.Dir, os.Getpid(), hostname()))
	s, err := c.nc.Subscribe(c.subj.Coord, func(m *nats.Msg) { m.Respond(ident) })
	if err != nil {
		unsub()
		return nil, nil, fmt.Errorf("subscribing to %s: %w", c.subj.Coord, err)
	}
	subs = append(subs, s)
	if err := c.nc.Flush(); err != nil {
		unsub()
		return nil, nil, fmt.Errorf("subscribing: %w", err)
	}
	if err := c.nc.LastError(); refusedSubscription(err) {
		c.log.Warn("the NATS server refuses the coordinator the subject on which coordinators find each other: a second coordinator of this job would not be told of this one (allow it, docs/security.md)", "subject", c.subj.Coord, "err", err)
	}
	return in, unsub, nil
}

// refusedSubscription reports whether err is the server refusing a
// subscription (not a publication).
func refusedSubscription(err error) bool {
	return errors.Is(err, nats.ErrPermissionViolation) && strings.Contains(err.Error(), "Subscription")
}

// coordProbeWait bounds the wait for another coordinator's answer: with
// none subscribed, the server says so at once (no responders).
const coordProbeWait = 2 * time.Second

// ErrJobBusy is wrapped when another coordinator serves the job.
var ErrJobBusy = errors.New("cluster: job served by another coordinator")

// probeOther asks, on klring.<job>.coord, whether another coordinator
// serves the job on this NATS server: two coordinators of one job take
// its workers from each other, and the running job fails. A coordinator
// that does not answer in time (stopped), or a server that refuses the
// question, is logged and passed over.
func (c *Coordinator) probeOther() error {
	m, err := c.nc.Request(c.subj.Coord, []byte(c.run), coordProbeWait)
	switch {
	case err == nil:
		return fmt.Errorf("%w: job %s is served by another coordinator (%s) on this NATS server: stop it first, or give this one another job name (job, --job, KLRING_JOB)",
			ErrJobBusy, c.cfg.Job, strconv.QuoteToASCII(string(m.Data[:min(len(m.Data), 300)])))
	case errors.Is(err, nats.ErrNoResponders):
		return nil
	default:
		c.log.Warn("could not tell whether another coordinator serves this job", "subject", c.subj.Coord, "err", err)
		return nil
	}
}

// hostname is the machine's name, or "?".
func hostname() string {
	h, err := os.Hostname()
	if err != nil {
		return "?"
	}
	return h
}

// serve feeds the state machine until it ends the run: messages as they
// arrive, and a tick every half heartbeat after the messages waiting were
// drained (liveness is judged on every heartbeat that had arrived).
func (c *Coordinator) serve(ctx context.Context, in *inbox) error {
	startWorkers := c.cfg.Cluster.MinWorkers
	if c.job.env != nil && c.job.env.StartWorkers > 0 {
		startWorkers = c.job.env.StartWorkers
	}
	cc := c.coreConfig(startWorkers)
	if e := c.job.env; e != nil {
		cc.MaxWorkers, cc.Linger = e.MaxWorkers, e.Linger
	}
	core, err := protocol.NewCoordinator(cc)
	if err != nil {
		return err
	}
	c.core = core
	c.side = newSide()
	c.side.written = c.job.step // metrics.jsonl holds the lines up to the committed step
	n := c.job.model.Config.NumParams()
	c.gsum, c.applyBuf = make([]float32, n+2), make([]float32, n+2)
	c.applied = make(chan appliedStep, 1)
	defer c.settleApply()
	if err := c.feed(c.nextStep(), time.Now()); err != nil {
		return err
	}
	tick := time.NewTicker(c.cfg.Cluster.Heartbeat / 2)
	defer tick.Stop()
	stop := ctx.Done()
	for c.ended == nil {
		var err error
		// A stop goes before messages already waiting: select picks at
		// random among ready cases, and reports of the step in flight
		// would otherwise commit it and start the next one first.
		select {
		case <-stop:
			c.log.Info("stopping at the next step boundary")
			stop = nil
			if err := c.feed(protocol.Stop{}, time.Now()); err != nil {
				return err
			}
			continue
		default:
		}
		select {
		case <-stop:
			c.log.Info("stopping at the next step boundary")
			stop = nil
			err = c.feed(protocol.Stop{}, time.Now())
		case m := <-in.hello:
			err = c.onMsg(m)
		case m := <-in.hb:
			err = c.onMsg(m)
		case m := <-in.done:
			err = c.onMsg(m)
		case m := <-in.seg:
			err = c.onMsg(m)
		case m := <-in.snap:
			err = c.onMsg(m)
		case <-tick.C:
			if err = c.drain(in); err == nil {
				err = c.feed(protocol.Tick{}, time.Now())
			}
		case d := <-c.side.done:
			err = c.onSide(d)
		case r := <-c.applied:
			err = c.onApplied(r)
		case <-c.hooks.crash:
			return errCrashed
		case <-c.conn.Disconnected():
			err = c.feed(protocol.Disconnected{}, time.Now())
		case <-c.conn.Reconnected():
			err = c.feed(protocol.Reconnected{}, time.Now())
		}
		if err != nil {
			return err
		}
	}
	if err := c.settleSide(); err != nil {
		return err
	}
	if err := c.ended.Err; err != nil && !errors.Is(err, protocol.ErrStopped) {
		return err
	}
	return nil
}

// drain handles every message already waiting, without blocking.
func (c *Coordinator) drain(in *inbox) error {
	for {
		var m *nats.Msg
		select {
		case m = <-in.hello:
		case m = <-in.hb:
		case m = <-in.done:
		case m = <-in.seg:
		case m = <-in.snap:
		default:
			return nil
		}
		if err := c.onMsg(m); err != nil {
			return err
		}
		if c.ended != nil {
			return nil
		}
	}
}

// onMsg decodes and checks a message and feeds it to the state machine; a
// message that does not decode or is out of bounds is dropped and counted.
func (c *Coordinator) onMsg(m *nats.Msg) error {
	ev, kind, err := c.decodeMsg(m)
	if err != nil {
		c.prom.Dropped.WithLabelValues(kind).Inc()
		c.log.Debug("dropping a message", "subject", m.Subject, "err", err)
		return nil
	}
	return c.feed(ev, time.Now())
}

func (c *Coordinator) decodeMsg(m *nats.Msg) (protocol.Event, string, error) {
	switch m.Subject {
	case c.subj.Hello:
		var h protocol.Hello
		if err := decodeValid(m.Data, &h); err != nil {
			return nil, "hello", err
		}
		if m.Reply == "" {
			return nil, "hello", errors.New("a hello without a reply subject")
		}
		return protocol.HelloMsg{Hello: h, Reply: m.Reply}, "", nil
	case c.subj.HB:
		h := new(protocol.Heartbeat)
		return h, "heartbeat", decodeValid(m.Data, h)
	case c.subj.Done:
		d := new(protocol.Done)
		return d, "done", decodeValid(m.Data, d)
	case c.subj.Seg:
		s := new(protocol.Segment)
		return s, "segment", decodeValid(m.Data, s)
	case c.subj.Snap:
		var r protocol.SnapRequest
		if err := decodeValid(m.Data, &r); err != nil {
			return nil, "snap", err
		}
		if m.Reply == "" {
			return nil, "snap", errors.New("a snapshot request without a reply subject")
		}
		return protocol.SnapRequestMsg{SnapRequest: r, Reply: m.Reply}, "", nil
	}
	return nil, "other", fmt.Errorf("subject %s", m.Subject)
}

// feed steps the state machine and carries out its actions, and those of
// the events they cause, in order.
func (c *Coordinator) feed(ev protocol.Event, now time.Time) error {
	queue := []protocol.Event{ev}
	for len(queue) > 0 {
		ev := queue[0]
		queue = queue[1:]
		for _, a := range c.core.Step(ev, now) {
			next, err := c.do(a)
			if err != nil {
				return err
			}
			queue = append(queue, next...)
		}
	}
	return nil
}

// nextStep is the work of the step after the committed one.
func (c *Coordinator) nextStep() protocol.Event {
	s := c.job.step + 1
	if s > uint64(c.cfg.Train.Steps) {
		return protocol.Tick{}
	}
	batch, next := c.job.data.NextBatch(c.job.cursor, c.cfg.Train.BatchWindows)
	c.batch, c.nextCursor = toInt32(batch), next
	return protocol.NextStep{Step: s, Batch: c.batch, LR: float32(c.job.lr(s))}
}

// do carries out one action; it returns the events it causes.
func (c *Coordinator) do(a protocol.Action) ([]protocol.Event, error) {
	switch a := a.(type) {
	case protocol.SendPlan:
		return nil, c.publish(c.subj.Plan, a.Plan)
	case protocol.BeginAttempt:
		clear(c.gsum)
		c.segs.reset(allreduce.NewPlan(len(c.gsum), len(a.Members), c.spec.ringOptions().PartFloats()))
		c.attemptAt = time.Now()
		if a.Step != c.begun && !c.stepEnded.IsZero() {
			// A step's first attempt: its wall time runs from the end of
			// the step before, so that whatever the coordinator does
			// between them (its own update, the ledger) counts as
			// waiting. A retry counts from its own plan.
			c.attemptAt = c.stepEnded
		}
		c.begun = a.Step
	case protocol.Welcome:
		c.respond(a.Reply, c.welcome())
	case protocol.ServeSnap:
		c.serveSnap(a)
	case protocol.RefuseSnap:
		c.respond(a.Reply, snapChunk{Run: c.run, Err: a.Reason})
	case protocol.StoreSegment:
		x := c.gsum[a.Offset : a.Offset+len(a.Data)/4]
		allreduce.ReadFloats(x, a.Data)
		c.segs.add(a.Offset, x, a.Data, len(c.gsum)-exactTail)
	case protocol.Commit:
		return c.commit(a)
	case protocol.Abort:
		c.aborts++
		c.abortKinds[a.Kind]++
		c.prom.Aborts.WithLabelValues(a.Kind).Inc()
		if c.hooks.onAbort != nil {
			c.hooks.onAbort(a.Kind)
		}
		c.log.Warn("step aborted; retrying", "step", a.Step, "epoch", a.Epoch, "kind", a.Kind, "reason", a.Reason)
	case protocol.Membership:
		c.prom.Workers.Set(float64(len(a.Members)))
		c.log.Info("membership", "epoch", a.Epoch, "workers", len(a.Members), "members", a.Members, "servers", a.Servers)
	case protocol.Evicted:
		c.prom.Evictions.Inc()
		c.log.Warn("worker evicted", "worker", a.Worker, "until", a.Until.Format(time.RFC3339), "reason", a.Reason)
	case protocol.Checkpoint:
		return nil, c.checkpointAsync()
	case protocol.Evaluate:
		return nil, c.evaluateAsync()
	case protocol.Drop:
		c.prom.Dropped.WithLabelValues(a.Kind).Inc()
		c.log.Debug("dropping a message", "message", a.Kind, "reason", a.Reason)
	case protocol.Log:
		c.log.Log(context.Background(), a.Level, a.Msg, a.Args...)
	case protocol.End:
		e := a
		c.ended = &e
	default:
		return nil, fmt.Errorf("cluster: coordinator action %T", a)
	}
	return nil, nil
}

func (c *Coordinator) publish(subject string, v any) error {
	b, err := encode(v)
	if err != nil {
		return err
	}
	err = c.nc.Publish(subject, b)
	if err == nil {
		err = c.nc.Flush()
	}
	if err != nil {
		if c.nc.IsClosed() {
			return fmt.Errorf("publishing on %s: %w", subject, err)
		}
		// Reconnecting: the message is lost, as core NATS may lose any;
		// the protocol's deadlines and retries deal with it.
		c.log.Debug("publishing", "subject", subject, "err", err)
	}
	return nil
}

// respond answers a request; a lost answer is the requester's timeout.
func (c *Coordinator) respond(reply string, v any) {
	if b, err := encode(v); err == nil {
		c.nc.Publish(reply, b)
	}
}

// serveSnap answers with bytes of the snapshot of the committed step.
func (c *Coordinator) serveSnap(a protocol.ServeSnap) {
	if !c.snapValid || c.snapStep != c.job.step {
		c.snapStep, c.snapSum, c.snapValid = c.job.step, c.job.checksum(), true
	}
	total := int64(c.job.snapshotBytes())
	n := min(a.Len, int64(c.cfg.AllReduce.ChunkBytes-512))
	if a.Offset+n < total {
		n &^= 3 // whole floats, so that the worker writes each chunk in place
	}
	if a.Offset%4 != 0 {
		c.respond(a.Reply, snapChunk{Run: c.run, Err: fmt.Sprintf("offset %d is not a whole float", a.Offset)})
		return
	}
	// The parameters change only on a commit, and none is served while one
	// runs: chunks read from the live buffers make one consistent snapshot.
	c.snapBuf = c.job.snapshotRange(c.snapBuf[:0], int(a.Offset), int(n))
	c.respond(a.Reply, snapChunk{Run: c.run, Step: c.job.step, Total: int(total), Offset: int(a.Offset),
		Data: c.snapBuf, OptStep: c.job.optStep(), Checksum: c.snapSum})
}

// commit checks an attempt's assembled gradient and starts applying it to
// the master copy in a goroutine of its own, which also writes (and syncs)
// its ledger line: the next step's plan goes out meanwhile (Committed,
// NextStep), and the end of the apply is the event Applied (onApplied). It
// refuses (and the attempt is retried) a gradient that is not finite or
// whose segments are not what their owners reduced. The machine asks for a commit only when no apply is
// pending, so there is one at a time, in step order.
func (c *Coordinator) commit(a protocol.Commit) ([]protocol.Event, error) {
	if c.apply != nil {
		return nil, fmt.Errorf("cluster: commit of step %d while step %d is being applied", a.Step, c.apply.step)
	}
	if err := c.checkSegments(a); err != nil {
		return []protocol.Event{protocol.CommitRefused{Step: a.Step, Kind: protocol.AbortSegments, Reason: err.Error()}}, nil
	}
	n := len(c.gsum) - 2
	// The sums, not yet divided by the token count: a finite sum divided
	// by a count of tokens (>= 1) is finite, so the check is the same.
	lossSum, tokens := float64(c.gsum[n]), float64(c.gsum[n+1])
	if !c.segs.finite || math.IsNaN(lossSum) || math.IsInf(lossSum, 0) || !(tokens > 0) {
		// Every rank's own sums were finite: their sum is not. Name the
		// rank that contributed the largest loss.
		worst := a.Dones[0]
		for _, d := range a.Dones {
			if math.Abs(d.LossSum) > math.Abs(worst.LossSum) {
				worst = d
			}
		}
		return []protocol.Event{protocol.CommitRefused{Step: a.Step, Kind: protocol.AbortNonFinite,
			Reason: fmt.Sprintf("the reduced loss sum is %v over %v tokens, or the reduced gradient is not finite; worker %s (rank %d) reported the largest loss sum, %.3g",
				lossSum, tokens, worst.Sender, worst.Rank, worst.LossSum)}}, nil
	}
	c.residCommitted(a)
	lr := c.job.lr(a.Step)
	// The step and the data cursor move now (the next step's batch is
	// drawn from them); the parameters and the optimizer's state are the
	// goroutine's until Applied, and nothing reads them meanwhile: the
	// machine holds snapshots, checkpoints, evaluations and the end.
	c.job.step = a.Step
	c.job.cursor = c.nextCursor
	c.snapValid = false
	m, entry := c.record(a, lossSum, tokens, lr)
	g := c.gsum
	c.gsum, c.applyBuf = c.applyBuf, g
	c.apply = &pendingApply{step: a.Step, m: m}
	// The ledger is written only here, one step at a time, in step order.
	// Its line is on disk before Applied, so before the step's metrics
	// line and any checkpoint of the step (a resumed run truncates the
	// ledger to its checkpoint).
	job, out, done, hold, step := c.job, c.out, c.applied, c.hooks.holdApply, a.Step
	go func() {
		if hold != nil {
			hold(step)
		}
		err := out.AppendLedger(entry)
		finishGradient(g)
		norm := job.apply(g[:n], float32(lr))
		done <- appliedStep{step: step, norm: norm, sum: job.checksum(), err: err}
	}()
	if err := c.feed(protocol.Committed{Step: a.Step}, time.Now()); err != nil {
		return nil, err
	}
	if !c.core.WantsWork() {
		return nil, nil // the run ends (or pauses) once the apply is done
	}
	return []protocol.Event{c.nextStep()}, nil
}

// pendingApply is a committed step being applied to the master copy.
type pendingApply struct {
	step uint64
	m    outputs.StepMetrics // its metrics line, less the gradient norm
}

// appliedStep is the end of an apply: the gradient norm before clipping
// and the checksum of the new parameters.
type appliedStep struct {
	step uint64
	norm float64
	sum  uint64
	err  error // writing the ledger line
}

// onApplied takes the end of the apply of a committed step: the state
// machine learns the master's checksum (and lets what waited for it go
// ahead: the checkpoint and evaluation of the step, snapshots, the commit
// of the next step, the end of the run), then the step's metrics line is
// queued, after its evaluation if it has one.
func (c *Coordinator) onApplied(r appliedStep) error {
	p := c.apply
	if p == nil || p.step != r.step {
		return fmt.Errorf("cluster: the apply of step %d ended unasked", r.step)
	}
	c.apply = nil
	if r.err != nil {
		return r.err
	}
	c.snapStep, c.snapSum, c.snapValid = r.step, r.sum, true
	m := p.m
	m.GradNorm = r.norm
	c.metrics = &commitRow{}
	if err := c.feed(protocol.Applied{Step: r.step, Checksum: r.sum}, time.Now()); err != nil {
		return err
	}
	// The actions of Applied (a checkpoint, an evaluation) have started:
	// the line waits for the evaluation, if there is one. The last step's
	// line waits for the run's final evaluation (finish).
	wait := c.metrics.wait || r.step >= uint64(c.cfg.Train.Steps)
	c.metrics = nil
	if err := c.queueRow(m, wait); err != nil {
		return err
	}
	if c.hooks.afterCommit != nil {
		c.hooks.afterCommit(r.step)
	}
	if c.hooks.crashAfter == r.step {
		c.waitSide(false) // a checkpoint the test counts on is on disk
		return errCrashed
	}
	if c.progress != nil {
		c.progress(m)
	}
	return nil
}

// settleApply waits for the apply in flight, if any, when the loop stops
// before it was done (an error, a crash): the master copy then holds the
// committed step, as a checkpoint of c.job.step must.
func (c *Coordinator) settleApply() {
	if c.apply != nil {
		<-c.applied
		c.apply = nil
	}
}

// checkSegments checks that each owner's segment, as assembled, is the one
// its owner reduced (Done.SegSum), from the digests taken as they were
// stored.
func (c *Coordinator) checkSegments(a protocol.Commit) error {
	n := len(a.Members)
	if len(c.segs.sums) != n {
		return fmt.Errorf("the segments were checked for %d ranks, the attempt has %d", len(c.segs.sums), n)
	}
	for r, d := range a.Dones {
		if got := c.segs.sums[(r+1)%n]; got != d.SegSum {
			return fmt.Errorf("the segment of %s (rank %d) sums to %016x as received, %016x as reduced", d.Sender, r, got, d.SegSum)
		}
	}
	return nil
}

// record builds the metrics line and the ledger line of a committed step.
// step_s (and tokens_per_s, MFU) run from the end of the step before to
// this commit (a retry: from its own plan), so consecutive steps tile the
// run's time; wait_s is step_s less the slowest compute and the all-reduce:
// plans, segments, and whatever the coordinator does between two steps.
func (c *Coordinator) record(a protocol.Commit, lossSum, tokens, lr float64) (outputs.StepMetrics, outputs.LedgerEntry) {
	c.stepEnded = time.Now()
	wall := c.stepEnded.Sub(c.attemptAt).Seconds()
	// compute: the slowest rank's gradient; all-reduce: from the moment the
	// last rank entered the ring to the moment the last rank left it (a
	// rank waiting in the ring for a slower neighbour counts as waiting;
	// with overlap a rank enters when its computation ends, so this is the
	// all-reduce time not hidden behind backward).
	var compute, computeCPU, ceSum, kdSum, keptSum float64
	var lastIn, lastOut int64
	entry := outputs.LedgerEntry{Step: a.Step, Epoch: a.Epoch, Batch: a.Batch}
	for i, d := range a.Dones {
		compute, computeCPU = max(compute, d.ComputeS), max(computeCPU, d.ComputeCPUS)
		ceSum += d.CESum
		kdSum += d.KDSum
		keptSum += d.KeptSum
		lastIn, lastOut = max(lastIn, d.ARStart), max(lastOut, d.AREnd)
		entry.Ranks = append(entry.Ranks, outputs.LedgerShare{Worker: a.Members[i], Windows: d.Windows})
	}
	ar := max(0, float64(lastOut-lastIn)/1e9)
	loss := lossSum / tokens
	c.out.TotalTokens += int64(tokens)
	c.out.TokensThisRun += int64(tokens)
	c.out.LastLoss = loss
	m := outputs.StepMetrics{
		Step: a.Step, Epoch: a.Epoch, Workers: len(a.Members), Loss: loss, TrainCE: ceSum / tokens, LR: lr,
		Tokens: int64(tokens), TotalTok: c.out.TotalTokens, TokensPerS: tokens / wall,
		ComputeS: compute, ComputeCPUS: computeCPU, AllReduceS: ar, WaitS: max(0, wall-compute-ar), StepS: wall,
		Attempts: a.Attempt, Bytes: c.spec.vectorWireBytes(len(c.gsum)), MFU: c.mfu(len(a.Batch), wall),
	}
	if c.job.lossIsKLToTruth() {
		v := loss
		m.KLToTruth = &v
	}
	if c.spec.hasTeacher() || c.spec.HardWeight > 0 {
		kd, ce := kdSum/tokens, ceSum/tokens
		m.KD, m.CE = &kd, &ce
	}
	if c.spec.hasTeacher() && (c.spec.TeacherTopK > 0 || c.spec.TeacherStore != "" && c.spec.TeacherStoreHeader.K < c.spec.Model.Vocab) {
		kept := keptSum / tokens
		m.TeacherTopKMass = &kept
	}
	c.prom.Step.Set(float64(a.Step))
	c.prom.Loss.Set(loss)
	c.prom.Tokens.Add(tokens)
	c.prom.TokPerS.Set(m.TokensPerS)
	c.prom.MFU.Set(m.MFU)
	c.prom.StepTimes.Observe(wall)
	return m, entry
}

// commitRow says whether the metrics line of the step being committed
// waits for an evaluation.
type commitRow struct{ wait bool }

// checkpoint writes the master state to run.dir/checkpoints/step-N and
// keeps the newest run.keep checkpoints.
func (c *Coordinator) checkpoint() (string, error) {
	dir, err := c.job.save(c.cfg.Run.Dir, c.cfg.Run.Keep, c.gatherResid())
	if err != nil {
		return "", err
	}
	c.log.Info("checkpoint", "step", c.job.step, "dir", dir)
	return dir, nil
}

// periodicEvalWindows bounds the held-out windows of the evaluations during
// training, so that they cost little next to the training itself; the final
// evaluation uses every held-out window.
const periodicEvalWindows = 256

// evaluate runs the master model over the held-out windows (the first limit
// of them when limit > 0).
func (c *Coordinator) evaluate(limit int) (engine.Eval, error) {
	w := c.job.data.ValWindows()
	if limit > 0 && len(w) > limit {
		w = w[:limit]
	}
	if err := c.settleSide(); err != nil {
		return engine.Eval{}, err
	}
	if err := c.evalEngine(); err != nil {
		return engine.Eval{}, err
	}
	copy(c.side.evalModel.Params, c.job.model.Params)
	return c.side.evalEng.Evaluate(w)
}

// teacherKLToTruth is the teacher's own held-out KL to the synthetic truth.
func (c *Coordinator) teacherKLToTruth() (float64, error) {
	t, err := c.job.env.teacherModel(c.spec)
	if err != nil {
		return 0, err
	}
	lo := loss.DefaultOptions()
	e, err := engine.New(engine.Options{Loss: lo, Target: engine.TargetHard, MaxWindows: evalWindows}, t, c.job.data, c.job.env.Pool)
	if err != nil {
		return 0, fmt.Errorf("evaluating the teacher: %w", err)
	}
	ev, err := e.Evaluate(c.job.data.ValWindows())
	if err != nil {
		return 0, fmt.Errorf("evaluating the teacher: %w", err)
	}
	return ev.KL, nil
}

// finish writes the last checkpoint, evaluation, plot and summary.json.
func (c *Coordinator) finish(sum Summary, start time.Time) (Summary, error) {
	ev, err := c.evaluate(0)
	if err != nil {
		return sum, err
	}
	sampleKL := c.sampleKL(c.side.evalEng, nil)
	// The last step's line, held back for this evaluation, is written
	// before the checkpoint of its step (as every checkpoint's line is).
	// A run stopped early wrote its last line already: the plot still
	// shows the final figures.
	c.evaluated(c.job.step, ev, sampleKL)
	if err := c.flushRows(); err != nil {
		return sum, err
	}
	if k := len(c.out.Rows); k > 0 && c.out.Rows[k-1].Step == c.job.step && c.out.Rows[k-1].ValLoss == nil {
		setEval(&c.out.Rows[k-1], ev, sampleKL)
	}
	ckpt, err := c.checkpoint()
	if err != nil {
		return sum, err
	}
	if ev.BPB > 0 {
		sum.ValBPB = ev.BPB
	}
	sum.ValTeacherKL = ev.TeacherKLPtr()
	sum.ValEntropy = ev.Entropy
	sum.ValSampleKL = sampleKL
	if c.spec.Teacher != "" && c.job.data.HasTruth() {
		kl, err := c.teacherKLToTruth()
		if err != nil {
			return sum, err
		}
		sum.TeacherKLToTruth = &kl
	}
	floor := -1.0
	if ev.Floor >= 0 {
		floor = ev.Floor
	}
	plotPath := filepath.Join(c.cfg.Run.Dir, "loss.png")
	if err := outputs.PlotLoss(plotPath, c.out.Rows, floor, fmt.Sprintf("klring %s: %s", c.cfg.Job, c.spec.DataSource)); err != nil {
		return sum, err
	}
	secs := time.Since(start).Seconds()
	sum.Steps, sum.Tokens, sum.TrainLoss = c.job.step, c.out.TotalTokens, c.out.LastLoss
	sum.ValLoss, sum.ValKL, sum.EntropyFloor = ev.CE, ev.KL, floor
	sum.Seconds, sum.TokensPerS = secs, float64(c.out.TokensThisRun)/secs
	sum.MFU = c.mfu(1, secs*float64(c.spec.Model.Ctx)/float64(max(c.out.TokensThisRun, 1)))
	sum.PeakGFLOPs = c.peak
	sum.Aborts, sum.Checkpoint, sum.Plot = c.aborts, ckpt, plotPath
	sum.Stopped = c.ended != nil && errors.Is(c.ended.Err, protocol.ErrStopped)
	if err := outputs.WriteJSON(filepath.Join(c.cfg.Run.Dir, "summary.json"), sum); err != nil {
		return sum, err
	}
	return sum, nil
}

// loadAllowance is the time a snapshot of n bytes may take to reach a
// worker: at 20 MB/s, in chunks that each cross the server twice.
func loadAllowance(n int) time.Duration {
	return time.Second + time.Duration(float64(n)/20e6*float64(time.Second))
}

func newRunID() string {
	return rand.Text()[:16] // one coordinator incarnation
}
