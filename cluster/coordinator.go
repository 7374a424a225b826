package cluster

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"path/filepath"
	"slices"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/klring/klring/config"
	"github.com/klring/klring/shard"
)

// Errors of the coordinator.
var (
	ErrAborted = errors.New("cluster: step aborted")
)

// maxAttempts bounds the attempts of one step: a step that fails this often in
// a row fails for a reason a retry does not mend (bad data, a loss that is
// infinite), and the run stops with the last attempt's reason.
const maxAttempts = 8

// memberState is what the coordinator knows of one worker.
type memberState struct {
	lastSeen time.Time
	leaving  bool
	resync   bool
}

// Coordinator owns the authoritative model and optimizer of one job: it admits
// and drops workers, plans every step, assembles the reduced gradient from the
// segment owners, applies every update to the master copy, checkpoints and
// evaluates. All of its state is owned by the goroutine that calls Run.
type Coordinator struct {
	cfg  config.Config
	spec JobSpec
	log  *slog.Logger
	subj subjects
	run  string

	job      *jobState // model, optimizer, data, cursor: what checkpoints hold
	resumed  bool
	nc       *nats.Conn
	prom     *promMetrics
	out      *runOutputs
	progress func(StepMetrics)

	epoch   uint64
	members []string
	workers map[string]*memberState

	gsum      []float32 // [N+2] assembled reduced gradient of the current attempt
	got       map[int]int
	snapBlob  []byte
	snapStep  uint64
	snapValid bool

	abortKinds map[string]int // aborted attempts by kind, as the Prometheus counter

	hooks coordHooks
}

// coordHooks let tests force rare cases.
type coordHooks struct {
	// afterCommit runs after step s is committed on the master copy.
	afterCommit func(step uint64)
}

// Summary is what a finished run reports.
type Summary struct {
	Steps        uint64  `json:"steps"`
	Tokens       int64   `json:"tokens"`
	TrainLoss    float64 `json:"train_loss"`
	ValLoss      float64 `json:"val_loss"`
	ValKL        float64 `json:"val_kl_to_truth"`
	EntropyFloor float64 `json:"entropy_floor"` // -1 when unknown
	TokensPerS   float64 `json:"tokens_per_s"`
	Seconds      float64 `json:"seconds"`
	Aborts       int     `json:"aborts"`
	RunDir       string  `json:"run_dir"`
	Checkpoint   string  `json:"checkpoint"`
	Metrics      string  `json:"metrics"`
	Plot         string  `json:"plot"`
	ResumedFrom  uint64  `json:"resumed_from"`
}

// NewCoordinator checks the whole configuration, opens the data, builds the
// model (from run.dir's newest checkpoint when there is one, else from
// model.init or a fresh initialisation) and returns a coordinator ready to
// Run. It writes nothing: a failed start leaves run.dir untouched.
func NewCoordinator(cfg config.Config, log *slog.Logger, env *Env) (*Coordinator, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	job, resumed, err := openJob(cfg, env)
	if err != nil {
		return nil, err
	}
	c := &Coordinator{
		cfg:     cfg,
		spec:    job.spec,
		log:     log,
		subj:    newSubjects(cfg.Job),
		run:     newRunID(),
		job:     job,
		resumed: resumed,
		prom:    newPromMetrics(),
		workers: map[string]*memberState{},

		abortKinds: map[string]int{},
	}
	return c, nil
}

// SetProgress registers a function called after every committed step.
func (c *Coordinator) SetProgress(f func(StepMetrics)) { c.progress = f }

// RunDir is where the coordinator writes its outputs.
func (c *Coordinator) RunDir() string { return c.cfg.Run.Dir }

// Run serves the job on nc until every step is committed, ctx is cancelled or
// too few workers remain.
func (c *Coordinator) Run(ctx context.Context, nc *nats.Conn) (Summary, error) {
	c.nc = nc
	start := time.Now()
	sum := Summary{RunDir: c.cfg.Run.Dir, EntropyFloor: -1, ResumedFrom: c.job.step}

	out, err := openRunOutputs(c.cfg.Run.Dir, c.job.step)
	if err != nil {
		return sum, err
	}
	c.out = out
	defer out.Close()
	sum.Metrics = out.metricsPath
	if c.resumed {
		c.log.Info("resumed from checkpoint", "step", c.job.step, "dir", c.cfg.Run.Dir)
	}

	addr, stopMetrics, err := c.prom.serve(c.cfg.Run.MetricsAddr)
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

	n := c.job.model.Config.NumParams()
	c.gsum = make([]float32, n+2)
	c.got = map[int]int{}
	G := c.cfg.Train.BatchWindows
	aborts := 0
	for c.job.step < uint64(c.cfg.Train.Steps) {
		s := c.job.step + 1
		batch, next := c.job.data.NextBatch(c.job.cursor, G)
		b32 := toInt32(batch)
		attempts := 0
		for {
			attempts++
			if err := c.formEpoch(ctx, in, attempts > 1); err != nil {
				return sum, err
			}
			stepStart := time.Now()
			res, err := c.attempt(ctx, in, s, b32)
			if err == nil {
				m, err := c.commit(s, b32, res, stepStart, attempts)
				if err != nil {
					return sum, err
				}
				c.job.cursor = next
				if c.hooks.afterCommit != nil {
					c.hooks.afterCommit(s)
				}
				if c.cfg.Run.EvalEvery > 0 && s%uint64(c.cfg.Run.EvalEvery) == 0 && s != uint64(c.cfg.Train.Steps) {
					ev, err := c.evaluate(periodicEvalWindows)
					if err != nil {
						return sum, err
					}
					m.ValLoss, m.ValKL = &ev.CE, ev.klPtr()
					c.prom.valLoss.Set(ev.CE)
					c.log.Info("evaluated", "step", s, "val_loss", ev.CE, "val_kl_to_truth", ev.KL, "windows", ev.Windows)
				}
				if err := c.out.metrics.append(m); err != nil {
					return sum, err
				}
				c.out.rows = append(c.out.rows, m)
				if c.progress != nil {
					c.progress(m)
				}
				if c.cfg.Run.CheckpointEvery > 0 && s%uint64(c.cfg.Run.CheckpointEvery) == 0 && s != uint64(c.cfg.Train.Steps) {
					if _, err := c.checkpoint(); err != nil {
						return sum, err
					}
				}
				break
			}
			if ctx.Err() != nil {
				return sum, ctx.Err()
			}
			aborts++
			if attempts >= maxAttempts {
				c.publishPlan(plan{Run: c.run, Epoch: c.epoch + 1, Step: s, Base: s - 1, Final: true})
				return sum, fmt.Errorf("step %d failed %d times in a row; the last attempt: %w", s, attempts, err)
			}
			c.log.Warn("step aborted; retrying with the survivors", "step", s, "epoch", c.epoch, "attempt", attempts, "reason", err)
		}
	}

	// Tell the workers the last step is committed and the job is over. Core
	// NATS may lose a message: the final plan goes out three times (a worker
	// acts on the first it sees and is gone for the others).
	for range 3 {
		c.publishPlan(plan{Run: c.run, Epoch: c.epoch, Step: c.job.step + 1, Base: c.job.step, Commit: true, Final: true, Members: c.members})
	}

	ckpt, err := c.checkpoint()
	if err != nil {
		return sum, err
	}
	ev, err := c.evaluate(0)
	if err != nil {
		return sum, err
	}
	if k := len(c.out.rows); k > 0 && c.out.rows[k-1].Step == c.job.step {
		c.out.rows[k-1].ValLoss, c.out.rows[k-1].ValKL = &ev.CE, ev.klPtr()
	}
	floor := -1.0
	if ev.Floor >= 0 {
		floor = ev.Floor
	}
	plotPath := filepath.Join(c.cfg.Run.Dir, "loss.png")
	if err := plotLoss(plotPath, c.out.rows, floor, fmt.Sprintf("klring %s: %s", c.cfg.Job, c.spec.DataSource)); err != nil {
		return sum, err
	}
	secs := time.Since(start).Seconds()
	sum.Steps = c.job.step
	sum.Tokens = c.out.totalTokens
	sum.TrainLoss = c.out.lastLoss
	sum.ValLoss = ev.CE
	sum.ValKL = ev.KL
	sum.EntropyFloor = floor
	sum.Seconds = secs
	sum.TokensPerS = float64(c.out.tokensThisRun) / secs
	sum.Aborts = aborts
	sum.Checkpoint = ckpt
	sum.Plot = plotPath
	if err := writeJSON(filepath.Join(c.cfg.Run.Dir, "summary.json"), sum); err != nil {
		return sum, err
	}
	return sum, nil
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
	}{{c.subj.hello, in.hello}, {c.subj.done, in.done}, {c.subj.seg, in.seg}, {c.subj.hb, in.hb}, {c.subj.snap, in.snap}} {
		s, err := c.nc.ChanSubscribe(x.subj, x.ch)
		if err != nil {
			unsub()
			return nil, nil, fmt.Errorf("subscribing to %s: %w", x.subj, err)
		}
		subs = append(subs, s)
	}
	if err := c.nc.Flush(); err != nil {
		unsub()
		return nil, nil, fmt.Errorf("subscribing: %w", err)
	}
	return in, unsub, nil
}

// alive reports whether a worker has been heard from within three heartbeats.
func (c *Coordinator) alive(w *memberState, now time.Time) bool {
	return now.Sub(w.lastSeen) <= 3*c.cfg.Cluster.Heartbeat
}

// formEpoch decides the membership of the next attempt: live workers that are
// not leaving, in order of arrival. It waits until at least the required
// number of workers is there. A change of membership, or any retry, starts a
// new epoch, so that traffic of an aborted attempt can never be mistaken for
// traffic of the new one.
func (c *Coordinator) formEpoch(ctx context.Context, in *inbox, retry bool) error {
	need := c.cfg.Cluster.MinWorkers
	if c.job.step == c.startStep() && c.epoch == 0 {
		need = max(need, c.startWorkers())
	}
	waitLogged := false
	var grace <-chan time.Time
	for {
		now := time.Now()
		var live []string
		for _, id := range c.members {
			if w := c.workers[id]; w != nil && !w.leaving && c.alive(w, now) {
				live = append(live, id)
			}
		}
		// Newcomers, in a stable order.
		var joiners []string
		for id, w := range c.workers {
			if !w.leaving && c.alive(w, now) && !slices.Contains(live, id) {
				joiners = append(joiners, id)
			}
		}
		slices.Sort(joiners)
		next := append(live, joiners...)
		if len(next) >= need {
			if retry || !slices.Equal(next, c.members) || c.epoch == 0 {
				c.epoch++
				c.members = next
				c.prom.workers.Set(float64(len(next)))
				c.log.Info("membership", "epoch", c.epoch, "workers", len(next), "members", next)
			}
			return nil
		}
		if !waitLogged {
			c.log.Info("waiting for workers", "have", len(next), "need", need, "job", c.cfg.Job)
			waitLogged = true
		}
		if grace == nil {
			// Workers of an earlier incarnation wait for plans: an empty
			// plan of this run tells them to join again.
			c.publishPlan(plan{Run: c.run})
			t := time.NewTimer(c.cfg.Cluster.Heartbeat)
			defer t.Stop()
			grace = t.C
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case m := <-in.hello:
			c.onHello(m)
		case m := <-in.hb:
			c.onHeartbeat(m)
		case m := <-in.snap:
			c.onSnap(m)
		case m := <-in.done:
			c.dropStale(m)
		case m := <-in.seg:
			c.dropStale(m)
		case <-grace:
			grace = nil
		}
	}
}

func (c *Coordinator) startStep() uint64 { return c.job.startStep }

// startWorkers is how many workers the first step waits for.
func (c *Coordinator) startWorkers() int {
	if c.job.env != nil && c.job.env.StartWorkers > 0 {
		return c.job.env.StartWorkers
	}
	return c.cfg.Cluster.MinWorkers
}

func (c *Coordinator) dropStale(*nats.Msg) { c.prom.dropped.Inc() }

func (c *Coordinator) onHello(m *nats.Msg) {
	var h hello
	if err := decode(m.Data, &h); err != nil || h.Worker == "" {
		c.prom.dropped.Inc()
		return
	}
	w := c.workers[h.Worker]
	if w == nil {
		w = &memberState{}
		c.workers[h.Worker] = w
		c.log.Info("worker joined", "worker", h.Worker)
	}
	w.lastSeen = time.Now()
	w.leaving = false
	b, err := encode(welcome{Run: c.run, Spec: c.spec})
	if err == nil {
		m.Respond(b)
	}
}

// onHeartbeat records a heartbeat and returns its sender ("" when dropped).
func (c *Coordinator) onHeartbeat(m *nats.Msg) string {
	var h heartbeat
	if err := decode(m.Data, &h); err != nil {
		c.prom.dropped.Inc()
		return ""
	}
	w := c.workers[h.Sender]
	if w == nil || h.Run != c.run {
		// A worker of another incarnation, or one that never said hello:
		// it will say hello when it sees our plans.
		c.prom.dropped.Inc()
		return ""
	}
	w.lastSeen = time.Now()
	if h.Leaving && !w.leaving {
		w.leaving = true
		c.log.Info("worker leaving", "worker", h.Sender)
	}
	return h.Sender
}

// attemptResult is what a successful attempt gathered.
type attemptResult struct {
	dones map[string]*done
}

// attempt runs step s once with the current membership.
func (c *Coordinator) attempt(ctx context.Context, in *inbox, s uint64, batch []int32) (*attemptResult, error) {
	n := len(c.members)
	var resync []string
	for _, id := range c.members {
		if c.workers[id].resync {
			resync = append(resync, id)
			c.workers[id].resync = false
		}
	}
	p := plan{Run: c.run, Epoch: c.epoch, Step: s, Members: c.members, Batch: batch,
		LR: float32(c.job.lr(s)), Commit: true, Base: s - 1, Resync: resync}
	clear(c.got)
	total := len(c.gsum)
	received := 0
	dones := map[string]*done{}
	rank := map[string]int{}
	for i, id := range c.members {
		rank[id] = i
	}
	if err := c.publishPlan(p); err != nil {
		return nil, err
	}
	masterSum := c.job.checksum() // of step s-1, which every member must start from
	deadline := time.NewTimer(c.cfg.Cluster.StepDeadline)
	defer deadline.Stop()
	tick := time.NewTicker(c.cfg.Cluster.Heartbeat / 2)
	defer tick.Stop()
	abort := func(kind, reason string) error {
		c.prom.aborts.WithLabelValues(kind).Inc()
		c.abortKinds[kind]++
		return fmt.Errorf("%w: step %d epoch %d: %s", ErrAborted, s, c.epoch, reason)
	}
	for len(dones) < n || received < total {
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-deadline.C:
			var missing []string
			for _, id := range c.members {
				if dones[id] == nil {
					missing = append(missing, id)
				}
			}
			return nil, abort("deadline", fmt.Sprintf("deadline %v passed; waiting for %v; %d of %d gradient floats received", c.cfg.Cluster.StepDeadline, missing, received, total))
		case <-tick.C:
			now := time.Now()
			for _, id := range c.members {
				if w := c.workers[id]; !c.alive(w, now) && dones[id] == nil {
					return nil, abort("heartbeat", fmt.Sprintf("worker %s missed its heartbeats", id))
				}
			}
		case m := <-in.hello:
			c.onHello(m)
		case m := <-in.hb:
			if id := c.onHeartbeat(m); id != "" && c.workers[id].leaving && dones[id] == nil && slices.Contains(c.members, id) {
				// It left before it took part in this attempt: retry now
				// rather than wait for its heartbeats to run out.
				return nil, abort("left", fmt.Sprintf("worker %s left", id))
			}
		case m := <-in.snap:
			c.onSnap(m)
		case m := <-in.seg:
			var sg segment
			if err := decode(m.Data, &sg); err != nil || sg.Run != c.run || sg.Epoch != c.epoch || sg.Step != s {
				c.prom.dropped.Inc()
				continue
			}
			_, ok := rank[sg.Sender]
			nf := len(sg.Data) / 4
			if !ok || len(sg.Data)%4 != 0 || sg.Offset < 0 || sg.Offset+nf > total || nf == 0 {
				c.prom.dropped.Inc()
				continue
			}
			if _, dup := c.got[sg.Offset]; dup {
				c.prom.dropped.Inc()
				continue
			}
			c.got[sg.Offset] = nf
			for i := 0; i < nf; i++ {
				c.gsum[sg.Offset+i] = math.Float32frombits(binary.LittleEndian.Uint32(sg.Data[4*i:]))
			}
			received += nf
			if received > total {
				return nil, abort("segments", "overlapping gradient segments")
			}
		case m := <-in.done:
			var d done
			if err := decode(m.Data, &d); err != nil || d.Run != c.run || d.Epoch != c.epoch || d.Step != s {
				c.prom.dropped.Inc()
				continue
			}
			r, ok := rank[d.Sender]
			if !ok || r != d.Rank || dones[d.Sender] != nil {
				c.prom.dropped.Inc()
				continue
			}
			if w := c.workers[d.Sender]; w != nil {
				w.lastSeen = time.Now()
				if d.Leaving {
					w.leaving = true
				}
			}
			if d.Err != "" {
				return nil, abort("worker_error", fmt.Sprintf("worker %s (rank %d): %s", d.Sender, d.Rank, d.Err))
			}
			if want := masterSum; d.Checksum != want {
				c.workers[d.Sender].resync = true
				return nil, abort("checksum", fmt.Sprintf("worker %s computed from parameters with checksum %016x, the master's is %016x; it will be re-seeded", d.Sender, d.Checksum, want))
			}
			if want := toInt32(shard.Shard(toInt(batch), r, n)); !slices.Equal(d.Windows, want) {
				return nil, abort("shard", fmt.Sprintf("worker %s (rank %d) computed windows %v, its shard is %v", d.Sender, r, d.Windows, want))
			}
			dd := d
			dones[d.Sender] = &dd
		}
	}
	return &attemptResult{dones: dones}, nil
}

func (c *Coordinator) publishPlan(p plan) error {
	b, err := encode(p)
	if err != nil {
		return err
	}
	if err := c.nc.Publish(c.subj.plan, b); err != nil {
		return fmt.Errorf("publishing the plan of step %d: %w", p.Step, err)
	}
	return c.nc.Flush()
}

// commit applies the assembled gradient of step s to the master copy and
// records the step.
func (c *Coordinator) commit(s uint64, batch []int32, res *attemptResult, stepStart time.Time, attempts int) (StepMetrics, error) {
	lossSum, tokens := finishGradient(c.gsum)
	lr := c.job.lr(s)
	norm := c.job.apply(c.gsum[:len(c.gsum)-2], float32(lr))
	c.job.step = s
	c.snapValid = false
	wall := time.Since(stepStart).Seconds()

	// compute: the slowest rank's gradient; all-reduce: from the moment the
	// last rank entered the ring to the moment the last rank left it (time a
	// rank spends in the ring waiting for a slower neighbour's gradient is
	// counted as waiting, not as communication).
	var compute, computeCPU, ceSum float64
	var lastIn, lastOut int64
	entry := LedgerEntry{Step: s, Epoch: c.epoch, Batch: batch}
	for _, id := range c.members {
		d := res.dones[id]
		compute = max(compute, d.ComputeS)
		ceSum += d.CESum
		computeCPU = max(computeCPU, d.ComputeCPUS)
		lastIn, lastOut = max(lastIn, d.ARStart), max(lastOut, d.AREnd)
		entry.Ranks = append(entry.Ranks, LedgerShare{Worker: id, Windows: d.Windows})
	}
	ar := max(0, float64(lastOut-lastIn)/1e9)
	if err := c.out.ledger.append(entry); err != nil {
		return StepMetrics{}, err
	}

	loss := lossSum / tokens
	c.out.totalTokens += int64(tokens)
	c.out.tokensThisRun += int64(tokens)
	c.out.lastLoss = loss
	m := StepMetrics{
		Step: s, Epoch: c.epoch, Workers: len(c.members), Loss: loss, TrainCE: ceSum / tokens, LR: lr, GradNorm: norm,
		Tokens: int64(tokens), TotalTok: c.out.totalTokens, TokensPerS: tokens / wall,
		ComputeS: compute, ComputeCPUS: computeCPU, AllReduceS: ar, WaitS: max(0, wall-compute-ar), StepS: wall,
		Attempts: attempts, Bytes: int64(4 * len(c.gsum)),
	}
	if c.job.lossIsKLToTruth() {
		v := loss
		m.KLToTruth = &v
	}
	c.prom.step.Set(float64(s))
	c.prom.loss.Set(loss)
	c.prom.tokens.Add(tokens)
	c.prom.tokPerS.Set(m.TokensPerS)
	c.prom.stepTimes.Observe(wall)
	c.log.Debug("committed", "step", s, "loss", loss)
	return m, nil
}

// checkpoint writes the master state to run.dir/checkpoints/step-NNNNNN and
// keeps the newest run.keep checkpoints.
func (c *Coordinator) checkpoint() (string, error) {
	dir, err := c.job.save(c.cfg.Run.Dir, c.cfg.Run.Keep)
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
func (c *Coordinator) evaluate(limit int) (evalResult, error) {
	w := c.job.data.ValWindows()
	if limit > 0 && len(w) > limit {
		w = w[:limit]
	}
	return c.job.evaluate(w)
}

// onSnap serves a chunk of the snapshot of the committed master state.
func (c *Coordinator) onSnap(m *nats.Msg) {
	var r snapRequest
	if err := decode(m.Data, &r); err != nil {
		c.prom.dropped.Inc()
		return
	}
	reply := snapChunk{Run: c.run, Step: c.job.step}
	switch {
	case r.Run != c.run:
		reply.Err = fmt.Sprintf("run %q is not the current run %q", r.Run, c.run)
	case r.Step != c.job.step:
		reply.Err = fmt.Sprintf("step %d is not the committed step %d", r.Step, c.job.step)
	default:
		if !c.snapValid || c.snapStep != c.job.step {
			c.snapBlob = c.job.snapshot(c.snapBlob[:0])
			c.snapStep = c.job.step
			c.snapValid = true
		}
		maxb := min(max(r.Max, 1024), c.cfg.AllReduce.ChunkBytes-512)
		if r.Offset < 0 || r.Offset > len(c.snapBlob) {
			reply.Err = fmt.Sprintf("offset %d outside the %d-byte snapshot", r.Offset, len(c.snapBlob))
			break
		}
		end := min(r.Offset+maxb, len(c.snapBlob))
		reply.Total = len(c.snapBlob)
		reply.Offset = r.Offset
		reply.Data = c.snapBlob[r.Offset:end]
		reply.OptStep = c.job.optStep()
		reply.Checksum = c.job.checksum()
	}
	if w := c.workers[r.Sender]; w != nil {
		w.lastSeen = time.Now()
	}
	b, err := encode(reply)
	if err != nil {
		return
	}
	m.Respond(b)
}

func writeJSON(path string, v any) error {
	b, err := jsonMarshalIndent(v)
	if err != nil {
		return err
	}
	return writeFileAtomic(path, b)
}

func newRunID() string {
	return rand.Text()[:16] // one coordinator incarnation
}
