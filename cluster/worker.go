package cluster

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"time"

	"github.com/cespare/xxhash/v2"
	"github.com/nats-io/nats.go"

	"github.com/klring/klring/allreduce"
	"github.com/klring/klring/engine"
	"github.com/klring/klring/natsnet"
	"github.com/klring/klring/netem"
	"github.com/klring/klring/protocol"
)

// ErrCoordinatorGone is returned by Worker.Run when no coordinator was heard
// for cluster.coordinator_timeout.
var ErrCoordinatorGone = protocol.ErrCoordinatorGone

// Worker is a worker's runtime: it owns the NATS subscriptions, the clock,
// the replica of the model and the goroutines that compute a step or load a
// snapshot, and carries out the decisions of the protocol's worker state
// machine. Its state is owned by the goroutine that calls Run.
type Worker struct {
	id   string
	log  *slog.Logger
	conn *natsnet.Conn
	nc   *nats.Conn
	subj natsnet.Subjects
	env  *Env
	mb   allreduce.Mailbox // this worker's end of the ring, for the whole job
	red  *allreduce.Reducer

	core    *protocol.Worker
	timeout time.Duration // cluster.coordinator_timeout
	job     *jobState     // the replica; nil before the first welcome
	run     string
	events  chan any // completions of the background work
	step    bg       // the computation of an attempt
	load    bg       // a snapshot being loaded
	hello   bool     // a hello is in flight
	tick    *time.Ticker
	exit    *protocol.Exit
	// seed is what the welcome of the run said of the coordinator's
	// error-feedback seeds (nil: none); residBuf encodes residual parts.
	seed     *seedInfo
	residBuf []byte

	hooks workerHooks
}

// bg is a piece of background work: a goroutine that ends with an event.
type bg struct {
	gen    int
	cancel context.CancelFunc
	done   chan struct{}
}

// bgDone is the completion of background work gen, carrying its event.
type bgDone struct {
	load bool
	gen  int
	ev   protocol.Event
}

// helloReply is the outcome of one hello.
type helloReply struct {
	msg *nats.Msg
	err error
}

// workerHooks let tests force rare cases.
type workerHooks struct {
	// afterApply runs after the worker applied the update of step s.
	afterApply func(w *Worker, step uint64)
	// ringWrap wraps the ring of every step (a test kills the worker mid-ring).
	ringWrap func(step uint64, r stepRing) stepRing
	// onSegment sees each Segment's data after the owner took its digest
	// and before it is sent (a test damages one on its way).
	onSegment func(step uint64, off int, data []byte)
	// coordTimeout replaces cluster.coordinator_timeout.
	coordTimeout time.Duration
	// freeze stops the worker's loop for the duration it receives, as
	// SIGSTOP would (its computation goes on; nothing is heard from it).
	freeze <-chan time.Duration
}

// DefaultCoordinatorTimeout is how long a worker waits for a silent or
// restarted coordinator before it ends.
const DefaultCoordinatorTimeout = 10 * time.Minute

// NewWorker returns a worker named id (unique within the job) that talks over
// conn. It listens on its ring subject from now on, so that it never misses a
// part a neighbour sends before it starts a step.
func NewWorker(ctx context.Context, id, job string, conn *natsnet.Conn, log *slog.Logger, env *Env) (*Worker, error) {
	subj, err := natsnet.NewSubjects(job)
	if err != nil {
		return nil, err
	}
	if err := natsnet.ValidName(id); err != nil {
		return nil, fmt.Errorf("worker id: %w", err)
	}
	var mb allreduce.Mailbox
	if env.hub != nil {
		mb, err = env.hub.Mailbox(job, id)
	} else {
		mb, err = natsnet.NewMailbox(ctx, conn, job, id)
	}
	if err != nil {
		return nil, fmt.Errorf("the ring mailbox: %w", err)
	}
	if env.faults != nil {
		mb = env.faults.wrap(mb, id)
	}
	if env.Link.Shaped() {
		if mb, err = netem.Wrap(mb, id, env.Link, env.LinkSeed); err != nil {
			return nil, err
		}
	}
	return &Worker{id: id, log: log.With("worker", id), conn: conn, nc: conn.NC, subj: subj, env: env, mb: mb,
		red: allreduce.NewReducer(), timeout: DefaultCoordinatorTimeout, events: make(chan any, 16)}, nil
}

// SetCoordinatorTimeout sets how long the worker waits for a silent or
// restarted coordinator (cluster.coordinator_timeout).
func (w *Worker) SetCoordinatorTimeout(d time.Duration) { w.timeout = d }

// Run joins the job and trains until the coordinator ends it (nil), no
// coordinator is heard for the coordinator timeout (ErrCoordinatorGone), or
// ctx is cancelled: then the worker finishes the step it is in, tells the
// coordinator it leaves, and returns ctx's error.
func (w *Worker) Run(ctx context.Context) error {
	plans := make(chan *nats.Msg, 64)
	sub, err := w.nc.ChanSubscribe(w.subj.Plan, plans)
	if err != nil {
		return fmt.Errorf("subscribing to plans: %w", err)
	}
	defer sub.Unsubscribe()
	defer w.mb.Close()
	defer w.stopBG(&w.load)
	defer w.stopBG(&w.step)
	core, err := protocol.NewWorker(protocol.WorkerConfig{Name: w.id, Job: w.subj.Job, HelloSubject: w.subj.Hello, CoordinatorTimeout: w.timeout, HelloRetry: 500 * time.Millisecond})
	if err != nil {
		return err
	}
	w.core = core
	w.tick = time.NewTicker(250 * time.Millisecond)
	defer w.tick.Stop()
	w.feed(protocol.Tick{})
	stop := ctx.Done()
	for w.exit == nil {
		select {
		case <-stop:
			stop = nil
			w.feed(protocol.Stop{})
		case m := <-plans:
			p := new(protocol.Plan)
			if err := decodeValid(m.Data, p); err != nil {
				w.log.Debug("dropping a plan", "err", err)
				continue
			}
			w.feed(p)
		case e := <-w.events:
			w.onEvent(ctx, e)
		case <-w.tick.C:
			w.feed(protocol.Tick{})
		case d := <-w.hooks.freeze:
			time.Sleep(d) // the fault itself: this worker is stopped
		}
	}
	switch err := w.exit.Err; {
	case errors.Is(err, protocol.ErrLeft) && ctx.Err() != nil:
		return ctx.Err()
	case err == nil:
		return nil
	default:
		return err
	}
}

// onEvent turns a completion of background work into the state machine's
// event; completions of work that was cancelled are dropped.
func (w *Worker) onEvent(ctx context.Context, e any) {
	switch e := e.(type) {
	case helloReply:
		w.hello = false
		w.feed(w.welcomed(e))
	case bgDone:
		b := &w.step
		if e.load {
			b = &w.load
		}
		if b.done == nil || e.gen != b.gen {
			return
		}
		<-b.done
		b.cancel()
		b.done = nil
		w.feed(e.ev)
	}
}

// feed steps the state machine and carries out its actions.
func (w *Worker) feed(ev protocol.Event) {
	for _, a := range w.core.Step(ev, time.Now()) {
		w.do(a)
	}
}

func (w *Worker) do(a protocol.Action) {
	switch a := a.(type) {
	case protocol.SayHello:
		w.sayHello()
	case protocol.StartStep:
		w.startBG(&w.step, false, func(ctx context.Context) protocol.Event { return w.compute(ctx, a) })
	case protocol.CancelStep:
		w.stopBG(&w.step)
	case protocol.ApplyStaged:
		// The optimizer step of the attempt just reported, while the
		// coordinator decides (docs/protocol.md, "Applying before the
		// commit").
		// The summed gradient becomes the mean here rather than before
		// the report, which waits for nothing but the sums.
		N := w.job.model.Config.NumParams()
		finishGradient(w.job.model.Grads[:N+2])
		w.job.apply(w.job.model.Grads[:N], a.LR)
	case protocol.ApplyPending:
		w.commitResidual(a.Epoch, a.Step)
		if a.Checkpoint {
			w.sendResidual(a.Epoch, a.Step)
		}
		w.job.step = a.Step
		if w.hooks.afterApply != nil {
			w.hooks.afterApply(w, a.Step)
		}
	case protocol.LoadSnapshot:
		run, seed := w.run, w.seed
		w.startBG(&w.load, true, func(ctx context.Context) protocol.Event {
			return protocol.SnapshotLoaded{Step: a.Step, Err: w.resync(ctx, run, a.Step, seed)}
		})
	case protocol.CancelLoad:
		w.stopBG(&w.load)
	case protocol.SendDone:
		w.publish(w.subj.Done, a.Done)
	case protocol.SendHeartbeat:
		a.Heartbeat.Server = w.conn.ServerName() // for ring placement
		w.publish(w.subj.HB, a.Heartbeat)
	case protocol.Exit:
		e := a
		w.exit = &e
	case protocol.Log:
		w.log.Log(context.Background(), a.Level, a.Msg, a.Args...)
	default:
		panic(fmt.Sprintf("cluster: worker action %T", a))
	}
}

func (w *Worker) publish(subject string, v any) {
	b, err := encode(v)
	if err != nil {
		w.log.Error("encoding", "err", err)
		return
	}
	if err := w.nc.Publish(subject, b); err != nil {
		w.log.Debug("publishing", "subject", subject, "err", err)
		return
	}
	w.nc.Flush()
}

// startBG runs f in the background; its event comes back through w.events.
func (w *Worker) startBG(b *bg, load bool, f func(ctx context.Context) protocol.Event) {
	w.stopBG(b)
	ctx, cancel := context.WithCancel(context.Background())
	b.gen++
	b.cancel, b.done = cancel, make(chan struct{})
	gen, done := b.gen, b.done
	go func() {
		defer close(done)
		ev := f(ctx)
		if ctx.Err() == nil {
			w.events <- bgDone{load: load, gen: gen, ev: ev}
		}
	}()
}

// stopBG cancels background work and waits for it to end.
func (w *Worker) stopBG(b *bg) {
	if b.done == nil {
		return
	}
	b.cancel()
	<-b.done
	b.done = nil
}

// requestWait bounds one request of a chunk (snapshot, seed) or a hello.
const requestWait = 2 * time.Second

// request sends v on subject and decodes the reply into out, waiting at most
// requestWait.
func (w *Worker) request(ctx context.Context, subject string, v, out any) error {
	req, err := encode(v)
	if err != nil {
		return err
	}
	rctx, cancel := context.WithTimeout(ctx, requestWait)
	defer cancel()
	msg, err := w.nc.RequestWithContext(rctx, subject, req)
	if err != nil {
		return err
	}
	return decode(msg.Data, out)
}

// sayHello sends one hello in the background.
func (w *Worker) sayHello() {
	if w.hello {
		return
	}
	w.hello = true
	req, err := encode(protocol.Hello{Worker: w.id, Server: w.conn.ServerName()})
	if err != nil {
		w.events <- helloReply{err: err}
		return
	}
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), requestWait)
		defer cancel()
		msg, err := w.nc.RequestWithContext(ctx, w.subj.Hello, req)
		w.events <- helloReply{msg: msg, err: err}
	}()
}

// welcomed checks a welcome, builds (or keeps) the replica of its job, and
// returns the state machine's event.
func (w *Worker) welcomed(r helloReply) protocol.Event {
	if r.err != nil {
		fatal := errors.Is(r.err, nats.ErrConnectionClosed) || errors.Is(r.err, nats.ErrAuthorization)
		return protocol.HelloFailed{Err: r.err, Fatal: fatal}
	}
	var wel welcome
	if err := decode(r.msg.Data, &wel); err != nil {
		return protocol.HelloFailed{Err: fmt.Errorf("the welcome: %w", err)}
	}
	if wel.Err != "" {
		return protocol.HelloFailed{Err: fmt.Errorf("the coordinator refused: %s", wel.Err), Fatal: true}
	}
	if err := wel.Spec.Validate(); err != nil {
		return protocol.HelloFailed{Err: fmt.Errorf("the job of run %s: %w", wel.Run, err), Fatal: true}
	}
	if w.job == nil || w.job.spec != wel.Spec {
		job, err := newWorkerJob(wel.Spec, w.env)
		if err != nil {
			return protocol.HelloFailed{Err: fmt.Errorf("the job of run %s: %w", wel.Run, err), Fatal: true}
		}
		w.job = job
	} else if wel.Run != w.run {
		w.job.resetResidual() // a residual of another run's parameters
	}
	w.run, w.seed = wel.Run, wel.Seed
	w.tick.Reset(max(wel.Spec.Heartbeat/2, 5*time.Millisecond))
	w.log.Info("joined", "run", wel.Run, "params", w.job.model.Config.NumParams())
	return protocol.Welcomed{Run: wel.Run, Windows: w.job.data.NumWindows(), Heartbeat: wel.Spec.Heartbeat}
}

// resync loads the coordinator's committed state of step base. When base
// is the step whose error-feedback residuals the coordinator serves (seed),
// the next attempts start from them (seedResidual).
func (w *Worker) resync(ctx context.Context, run string, base uint64, seed *seedInfo) error {
	start := time.Now()
	var first snapChunk
	for off := 0; ; {
		var ch snapChunk
		req := protocol.SnapRequest{Run: run, Sender: w.id, Step: base, Offset: int64(off), Max: int64(w.job.spec.ChunkBytes)}
		if err := w.request(ctx, w.subj.Snap, req, &ch); err != nil {
			return fmt.Errorf("requesting snapshot bytes at %d: %w", off, err)
		}
		switch {
		case ch.Err != "":
			return fmt.Errorf("snapshot: %s", ch.Err)
		case ch.Run != run || ch.Step != base:
			return fmt.Errorf("snapshot of run %q step %d, want run %q step %d", ch.Run, ch.Step, run, base)
		case off == 0 && ch.Total != w.job.snapshotBytes():
			return fmt.Errorf("snapshot has %d bytes, this model needs %d", ch.Total, w.job.snapshotBytes())
		case off == 0:
			first = ch
		case ch.Checksum != first.Checksum || ch.Total != first.Total:
			return errors.New("snapshot changed while it was being read")
		}
		if ch.Offset != off || len(ch.Data) == 0 && off < ch.Total || len(ch.Data) > ch.Total-off {
			return fmt.Errorf("snapshot chunk at %d answered for %d with %d bytes", off, ch.Offset, len(ch.Data))
		}
		if err := w.job.restoreChunk(off, ch.Data); err != nil {
			return fmt.Errorf("snapshot: %w", err)
		}
		off += len(ch.Data)
		if off >= ch.Total {
			break
		}
	}
	if w.job.adam != nil {
		w.job.adam.State.T = int64(first.OptStep)
	}
	if got := w.job.checksum(); got != first.Checksum {
		return fmt.Errorf("snapshot checksum %016x, want %016x", got, first.Checksum)
	}
	if w.job.step != base {
		w.job.resetResidual() // the residual of parameters this worker no longer holds
	}
	// Else the snapshot is the committed step this worker held before an
	// update applied early and then discarded (protocol.ApplyStaged): its
	// residual is that step's, and stays.
	w.job.step = base
	if seed != nil && seed.Step == base {
		w.job.seed = seed
	}
	w.log.Info("loaded snapshot", "step", base, "bytes", first.Total, "took", time.Since(start).Round(time.Millisecond))
	return nil
}

// compute computes this rank's share of an attempt, all-reduces it, sends
// the owned segment to the coordinator and stages the summed gradient (the
// update, ApplyStaged, divides it by the token count). It
// returns the report (StepDone). With allreduce.bucket_bytes set and more
// than one rank, the ring runs on the buckets backward has finished while
// it computes the rest (computeOverlapped).
func (w *Worker) compute(ctx context.Context, a protocol.StartStep) protocol.Event {
	p := a.Plan
	d := protocol.Done{Run: p.Run, Epoch: p.Epoch, Step: p.Step, Sender: w.id, Rank: a.Rank, Windows: a.Windows}
	fail := func(kind, format string, args ...any) protocol.Event {
		d.Err, d.ErrKind = fmt.Sprintf(format, args...), kind
		return protocol.StepDone{Report: d}
	}
	w.job.stagedAt = nil // what the ring stages belongs to this attempt, once its ring succeeds
	if err := w.seedResidual(ctx, p, a.Rank); err != nil {
		return fail(protocol.FailSnapshot, "the error-feedback seed of step %d: %v", p.Base, err)
	}
	N := w.job.model.Config.NumParams()
	g := w.job.model.Grads[:N+2]
	call := ringCall{run: p.Run, epoch: p.Epoch, step: p.Step, rank: a.Rank, members: p.Members, data: g}
	var ring stepRing = w.allReduce
	if w.hooks.ringWrap != nil {
		ring = w.hooks.ringWrap(p.Step, ring)
	}
	segs := w.job.segBuf[:0]
	var segSum uint64 // the ring's goroutine adds to it; read once the ring is done
	owned := func(off int, seg []float32) { segs = w.sendSegment(segs, &segSum, p, off, seg) }
	var o overlapped
	if w.job.spec.BucketBytes > 0 && len(p.Members) > 1 {
		o = w.computeOverlapped(ctx, a, call, ring, owned, &d)
	} else {
		o = w.computeThenReduce(ctx, a, call, ring, owned, &d)
	}
	w.job.segBuf = segs
	switch {
	case o.computeErr != nil:
		return fail(protocol.FailCompute, "computing the gradient: %v", o.computeErr)
	case o.nonFinite:
		return fail(protocol.FailNonFinite, "the loss or the gradient of windows %v is not finite in float32 (loss sum %v)", a.Windows, d.LossSum)
	case o.ringErr != nil:
		return fail(protocol.FailAllReduce, "all-reduce: %v (this worker's mailbox: %+v)", o.ringErr, w.mb.Stats())
	}
	if w.job.staged != nil {
		w.job.stagedAt = &attemptID{epoch: p.Epoch, step: p.Step, rank: a.Rank, world: len(p.Members)}
	}
	d.SegSum = segSum
	return protocol.StepDone{Report: d}
}

// overlapped is the outcome of a step's computation and ring.
type overlapped struct {
	computeErr error // the gradient could not be computed
	nonFinite  bool  // it is not finite
	ringErr    error // the all-reduce failed
}

// report fills d's totals and compute time from sums.
func report(d *protocol.Done, sums engine.Sums, compute, cpu time.Duration) {
	d.Tokens, d.LossSum, d.CESum, d.KDSum, d.KeptSum = int64(sums.Tokens), sums.Loss, sums.CE, sums.Div, sums.Kept
	d.ComputeS, d.ComputeCPUS = compute.Seconds(), cpu.Seconds()
}

// prepare readies g[lo:hi] (hi <= len(g)) for the ring: it adds the error
// feedback residual (what rounding lost of this worker's last committed
// contribution, in the summed gradient's units; the tail, the loss sum and
// token count, has none) and reports whether those floats are finite.
func (w *Worker) prepare(g []float32, lo, hi int) bool {
	if r := w.job.resid; r != nil {
		n := min(hi, len(r), len(g)-exactTail)
		for i := lo; i < n; i++ {
			g[i] += r[i]
		}
	}
	return finiteGradient(g[lo:hi])
}

// computeThenReduce computes the whole gradient, then all-reduces it.
func (w *Worker) computeThenReduce(ctx context.Context, a protocol.StartStep, call ringCall, ring stepRing, owned func(int, []float32), d *protocol.Done) (o overlapped) {
	d.Checksum = w.job.checksum()
	t0 := time.Now()
	g := call.data
	N := len(g) - 2
	sums, cpu, err := w.gradient(ctx, a.Windows, a.Plan.Step, nil)
	if err != nil {
		o.computeErr = err
		return o
	}
	g[N], g[N+1] = float32(sums.Loss), float32(sums.Tokens)
	report(d, sums, time.Since(t0), cpu)
	if o.nonFinite = !w.prepare(g, 0, len(g)); o.nonFinite {
		return o
	}
	t1 := time.Now()
	d.ARStart = t1.UnixNano()
	actx, cancel := context.WithTimeout(ctx, w.job.spec.ARDeadline)
	defer cancel()
	o.ringErr = ring(actx, call, owned)
	end := time.Now()
	d.AllReduceS, d.AREnd = end.Sub(t1).Seconds(), end.UnixNano()
	return o
}

// computeOverlapped computes the gradient and all-reduces it at once: the
// ring starts when backward has finished the first bucket (the end of the
// vector: ln_f, the last block, and the tail, whose loss sum and token
// count the head has computed by then) and takes each bucket as backward
// finishes it, down to the embeddings. Each bucket gets its error feedback
// and its finiteness check before it is handed over: a non-finite gradient
// is never sent on (the ring is cancelled and the step fails as without
// overlap). The ring's deadline runs from its start. Done.ARStart is the
// end of the computation and AllReduceS the ring's time after it: the
// all-reduce time not hidden behind backward.
func (w *Worker) computeOverlapped(ctx context.Context, a protocol.StartStep, call ringCall, ring stepRing, owned func(int, []float32), d *protocol.Done) (o overlapped) {
	t0 := time.Now()
	g := call.data
	N := len(g) - 2
	bk := w.job.spec.ringOptions().Buckets(len(g), len(call.members))
	ready := make(chan int, bk.Count()) // never blocks: each bucket is sent once
	call.ready = ready
	next, done := bk.Count(), len(g) // buckets from next on are handed over; floats from done on are prepared
	var ringDone chan error
	var stop context.CancelFunc
	defer func() {
		if stop != nil {
			stop()
		}
	}()
	onReady := func(lo int, s engine.Sums) {
		if o.nonFinite || lo >= done {
			return
		}
		if ringDone == nil {
			g[N], g[N+1] = float32(s.Loss), float32(s.Tokens)
			var actx context.Context
			actx, stop = context.WithTimeout(ctx, w.job.spec.ARDeadline)
			ringDone = make(chan error, 1)
			go func() { ringDone <- ring(actx, call, owned) }()
		}
		if !w.prepare(g, lo, done) {
			o.nonFinite = true
			return
		}
		done = lo
		for from := bk.From(lo); next > from; {
			next--
			ready <- next
		}
		runtime.Gosched() // let the ring take what it was handed before backward goes on
	}
	sums, cpu, err := w.gradient(ctx, a.Windows, a.Plan.Step, onReady)
	if err == nil && !o.nonFinite {
		onReady(0, sums) // what backward did not hand over (none, with lm's calls)
	}
	end := time.Now()
	report(d, sums, end.Sub(t0), cpu)
	// The parameters' checksum, while the ring finishes rather than
	// before the step's computation (the parameters do not change
	// during a step).
	d.Checksum = w.job.checksum()
	if err != nil || o.nonFinite {
		o.computeErr = err
		if ringDone != nil {
			stop()
			<-ringDone
		}
		return o
	}
	o.ringErr = <-ringDone
	fin := time.Now()
	d.ARStart, d.AllReduceS, d.AREnd = end.UnixNano(), fin.Sub(end).Seconds(), fin.UnixNano()
	return o
}

// ringCall is one all-reduce of a step.
type ringCall struct {
	run     string
	epoch   uint64
	step    uint64
	rank    int
	members []string
	data    []float32
	ready   <-chan int     // with overlap: the buckets of data as they become final (AllReduceBuckets)
	onSend  func(sent int) // tests: called after each part sent
}

// stepRing runs one all-reduce (tests wrap it).
type stepRing func(ctx context.Context, c ringCall, owned func(off int, seg []float32)) error

// allReduce sums c.data over the ring of the attempt, through this worker's
// mailbox.
func (w *Worker) allReduce(ctx context.Context, c ringCall, owned func(off int, seg []float32)) error {
	h := allreduce.Header{Run: c.run, Epoch: c.epoch, Step: c.step}
	t, err := w.mb.Begin(h, c.members, c.rank)
	if err != nil {
		return err
	}
	if c.onSend != nil {
		t = &countingTransport{Transport: t, onSend: c.onSend}
	}
	opts := w.job.spec.ringOptions()
	opts.Residual = w.job.staged // nil without error feedback
	if c.ready != nil {
		return w.red.AllReduceBuckets(ctx, t, h, c.rank, len(c.members), c.data, opts, c.ready, owned)
	}
	return w.red.AllReduce(ctx, t, h, c.rank, len(c.members), c.data, opts, owned)
}

// commitResidual makes the residual staged by attempt (epoch, step) the one
// the next gradient gets, when that attempt commits; a residual staged by
// another attempt is not this update's, and none is kept. A seed is used up
// by the first commit.
func (w *Worker) commitResidual(epoch, step uint64) {
	j := w.job
	if j.resid == nil {
		return
	}
	if !j.stagedAt.is(epoch, step) {
		w.log.Warn("no residual staged for the committed attempt: error feedback restarts from zero", "epoch", epoch, "step", step)
		j.resetResidual()
		return
	}
	j.resid, j.staged = j.staged, j.resid
	j.residAt, j.stagedAt, j.seed = j.stagedAt, nil, nil
}

// countingTransport calls onSend after every part it sends.
type countingTransport struct {
	allreduce.Transport
	sent   int
	onSend func(int)
}

func (t *countingTransport) Send(ctx context.Context, to int, msg []byte) error {
	if err := t.Transport.Send(ctx, to, msg); err != nil {
		return err
	}
	t.sent++
	t.onSend(t.sent)
	return nil
}

// gradient computes this rank's gradient, once it has a turn on the cores
// when the process's workers take turns (Env.turns: the wait counts in the
// compute time the caller measures). With Env.MeasureCPU it runs on a
// locked OS thread and also returns that thread's CPU time, the compute a
// machine of its own would spend (the kernels' budget must then be one
// thread, so that no work leaves the thread).
func (w *Worker) gradient(ctx context.Context, windows []int32, step uint64, ready engine.ReadyFunc) (sums engine.Sums, compute time.Duration, err error) {
	release, err := w.env.turn(ctx)
	if err != nil {
		return sums, 0, err
	}
	defer release()
	if !w.env.MeasureCPU {
		t := time.Now()
		sums, err = w.job.eng.GradientReady(ctx, windows, step, ready)
		return sums, time.Since(t), err
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	c0, ok0 := threadCPU()
	t := time.Now()
	sums, err = w.job.eng.GradientReady(ctx, windows, step, ready)
	compute = time.Since(t)
	c1, ok1 := threadCPU()
	if ok0 && ok1 {
		compute = c1 - c0
	}
	return sums, compute, err
}

// sendSegment publishes this rank's fully reduced segment to the coordinator
// in parts of at most chunk_bytes, and adds their digests to *sum (seg_sum,
// partDigest).
func (w *Worker) sendSegment(buf []byte, sum *uint64, p protocol.Plan, off int, seg []float32) []byte {
	per := max(1, (w.job.spec.ChunkBytes-256)/4)
	if w.job.segHash == nil {
		w.job.segHash = xxhash.New()
	}
	for lo := 0; lo < len(seg); lo += per {
		hi := min(lo+per, len(seg))
		buf = allreduce.AppendFloats(buf[:0], seg[lo:hi])
		*sum += partDigest(w.job.segHash, off+lo, buf)
		if w.hooks.onSegment != nil {
			w.hooks.onSegment(p.Step, off+lo, buf)
		}
		b, err := encode(protocol.Segment{Run: p.Run, Epoch: p.Epoch, Step: p.Step, Sender: w.id, Offset: int64(off + lo), Data: buf})
		if err == nil {
			w.nc.Publish(w.subj.Seg, b)
		}
	}
	return buf
}
