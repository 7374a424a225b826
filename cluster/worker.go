package cluster

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/klring/klring/shard"
)

// ErrCoordinatorGone is returned by Worker.Run when no plan came for a long
// time and no coordinator answers.
var ErrCoordinatorGone = errors.New("cluster: no coordinator answers")

// Worker computes the gradient of its shard of every step, takes part in the
// ring all-reduce, and applies every committed update to its replica.
type Worker struct {
	id   string
	log  *slog.Logger
	nc   *nats.Conn
	subj subjects
	env  *Env
	mb   *mailbox
	ring ringFactory

	run       string
	hbRun     atomic.Pointer[string] // run, for the heartbeat goroutine
	job       *jobState
	pending   *pendingUpdate
	lastEpoch uint64
	lastStep  uint64
	committed atomic.Uint64 // for heartbeats
	leaving   atomic.Bool

	hooks workerHooks
}

// workerHooks let tests force rare cases.
type workerHooks struct {
	// afterApply runs after the worker applied the update of step s.
	afterApply func(w *Worker, step uint64)
	// quiet replaces the silence after which a worker asks whether the
	// coordinator is still there.
	quiet time.Duration
	// ringWrap wraps the ring of every step (a test kills the worker mid-ring).
	ringWrap func(step uint64, r stepRing) stepRing
}

// pendingUpdate is a reduced, averaged gradient (in the model's gradient
// buffer) that waits for the coordinator's commit.
type pendingUpdate struct {
	step uint64
	lr   float32
}

// NewWorker returns a worker named id (unique within the job) that talks over
// nc. It listens on its ring subject from now on, so that it never misses a
// part a neighbour sends before it starts a step.
func NewWorker(id, job string, nc *nats.Conn, log *slog.Logger, env *Env) (*Worker, error) {
	if err := validName(id); err != nil {
		return nil, fmt.Errorf("worker id: %w", err)
	}
	mb, err := newMailbox(nc, job, id, 1<<16, env.Link, env.local)
	if err != nil {
		return nil, err
	}
	return &Worker{id: id, log: log.With("worker", id), nc: nc, subj: newSubjects(job), env: env, mb: mb, ring: natsRing(mb)}, nil
}

// Run joins the job and trains until the coordinator ends it (nil) or ctx is
// cancelled, in which case the worker finishes the step it is in, tells the
// coordinator it leaves, and returns ctx's error.
func (w *Worker) Run(ctx context.Context) error {
	plans := make(chan *nats.Msg, 64)
	sub, err := w.nc.ChanSubscribe(w.subj.plan, plans)
	if err != nil {
		return fmt.Errorf("subscribing to plans: %w", err)
	}
	defer sub.Unsubscribe()
	defer w.mb.close()
	if err := w.join(ctx); err != nil {
		return err
	}

	hbCtx, stopHB := context.WithCancel(context.Background())
	var hbDone sync.WaitGroup
	hbDone.Add(1)
	period := w.job.spec.Heartbeat
	go func() { defer hbDone.Done(); w.heartbeats(hbCtx, period) }()
	defer func() { stopHB(); hbDone.Wait() }()

	var (
		stepCancel context.CancelFunc
		stepDone   chan struct{}
	)
	stopStep := func() {
		if stepCancel != nil {
			stepCancel()
			<-stepDone
			stepCancel = nil
		}
	}
	defer stopStep()
	// The coordinator publishes a plan at least every step and, while it
	// waits for workers, every heartbeat. A worker that hears nothing for
	// this long asks whether it is still there, and ends if nobody answers
	// (a coordinator that ended while this worker missed its final plan).
	quiet := max(30*period, 30*time.Second)
	if w.hooks.quiet > 0 {
		quiet = w.hooks.quiet
	}
	silence := time.NewTimer(quiet)
	defer silence.Stop()
	for {
		var m *nats.Msg
		select {
		case <-silence.C:
			if !w.coordinatorAnswers(ctx) {
				return ErrCoordinatorGone
			}
			silence.Reset(quiet)
			continue
		case <-ctx.Done():
			// Finish the step in flight, then leave.
			w.leaving.Store(true)
			if stepDone != nil {
				select {
				case <-stepDone:
				case <-time.After(w.job.spec.ARDeadline + time.Second):
				}
			}
			w.sendHeartbeat(true)
			w.nc.Flush()
			return ctx.Err()
		case m = <-plans:
			silence.Reset(quiet)
		}
		var p plan
		if err := decode(m.Data, &p); err != nil {
			w.log.Debug("dropping a malformed plan", "err", err)
			continue
		}
		if p.Run != w.run {
			// A new coordinator incarnation: join it afresh.
			stopStep()
			w.log.Info("coordinator changed; joining again", "run", p.Run)
			if err := w.join(ctx); err != nil {
				return err
			}
			if p.Run != w.run {
				continue
			}
		}
		if p.Epoch < w.lastEpoch || (p.Epoch == w.lastEpoch && p.Step <= w.lastStep && !p.Final) {
			continue // stale
		}
		stopStep()
		w.lastEpoch, w.lastStep = p.Epoch, p.Step
		if p.Commit && w.pending != nil && w.pending.step == p.Base && w.job.step+1 == p.Base {
			w.job.apply(w.job.model.Grads[:w.job.model.Config.NumParams()], w.pending.lr)
			w.job.step = p.Base
			w.committed.Store(p.Base)
			if w.hooks.afterApply != nil {
				w.hooks.afterApply(w, p.Base)
			}
		}
		w.pending = nil
		if p.Final {
			w.log.Info("job over", "step", p.Base)
			return nil
		}
		rank := slices.Index(p.Members, w.id)
		if rank < 0 {
			continue
		}
		if w.job.step != p.Base || !w.job.initialised || slices.Contains(p.Resync, w.id) {
			if err := w.resync(ctx, p.Base); err != nil {
				w.log.Warn("could not load the snapshot; waiting for the next plan", "step", p.Base, "err", err)
				continue
			}
		}
		// The step does not end with ctx: on SIGTERM the worker finishes the
		// step it is in (and says it leaves) rather than abort it for all.
		sctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
		stepCancel, stepDone = cancel, make(chan struct{})
		go func(p plan, rank int, done chan struct{}) {
			defer close(done)
			w.step(sctx, p, rank)
		}(p, rank, stepDone)
	}
}

// coordinatorAnswers says hello once and reports whether anyone answered.
func (w *Worker) coordinatorAnswers(ctx context.Context) bool {
	req, err := encode(hello{Worker: w.id})
	if err != nil {
		return false
	}
	rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	_, err = w.nc.RequestWithContext(rctx, w.subj.hello, req)
	return err == nil
}

// join says hello until the coordinator answers with the job's spec.
func (w *Worker) join(ctx context.Context) error {
	req, err := encode(hello{Worker: w.id})
	if err != nil {
		return err
	}
	logged := false
	for {
		rctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		msg, err := w.nc.RequestWithContext(rctx, w.subj.hello, req)
		cancel()
		if err == nil {
			var wel welcome
			if err := decode(msg.Data, &wel); err != nil {
				return fmt.Errorf("joining: %w", err)
			}
			if wel.Err != "" {
				return fmt.Errorf("joining: the coordinator refused: %s", wel.Err)
			}
			if w.job == nil || w.job.spec != wel.Spec {
				job, err := newWorkerJob(wel.Spec, w.env)
				if err != nil {
					return fmt.Errorf("joining: %w", err)
				}
				w.job = job
			}
			w.run = wel.Run
			w.hbRun.Store(&wel.Run)
			w.pending = nil
			w.lastEpoch, w.lastStep = 0, 0
			w.log.Info("joined", "run", w.run, "params", w.job.model.Config.NumParams())
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if errors.Is(err, nats.ErrConnectionClosed) || errors.Is(err, nats.ErrAuthorization) {
			return fmt.Errorf("joining: %w", err)
		}
		if !logged {
			w.log.Info("waiting for the coordinator", "subject", w.subj.hello, "err", err)
			logged = true
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
}

func (w *Worker) heartbeats(ctx context.Context, period time.Duration) {
	t := time.NewTicker(period)
	defer t.Stop()
	w.sendHeartbeat(false)
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			w.sendHeartbeat(w.leaving.Load())
		}
	}
}

func (w *Worker) sendHeartbeat(leaving bool) {
	run := ""
	if r := w.hbRun.Load(); r != nil {
		run = *r
	}
	b, err := encode(heartbeat{Run: run, Sender: w.id, Step: w.committed.Load(), Leaving: leaving})
	if err == nil {
		w.nc.Publish(w.subj.hb, b)
	}
}

// resync loads the coordinator's committed state of step base.
func (w *Worker) resync(ctx context.Context, base uint64) error {
	start := time.Now()
	buf := w.job.snapBuf[:0]
	var first snapChunk
	for off := 0; ; {
		req, err := encode(snapRequest{Run: w.run, Sender: w.id, Step: base, Offset: off, Max: w.job.spec.ChunkBytes})
		if err != nil {
			return err
		}
		rctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		msg, err := w.nc.RequestWithContext(rctx, w.subj.snap, req)
		cancel()
		if err != nil {
			return fmt.Errorf("requesting snapshot bytes at %d: %w", off, err)
		}
		var ch snapChunk
		if err := decode(msg.Data, &ch); err != nil {
			return fmt.Errorf("snapshot: %w", err)
		}
		if ch.Err != "" {
			return fmt.Errorf("snapshot: %s", ch.Err)
		}
		if off == 0 {
			first = ch
			if ch.Total != w.job.snapshotBytes() {
				return fmt.Errorf("snapshot has %d bytes, this model needs %d", ch.Total, w.job.snapshotBytes())
			}
		} else if ch.Checksum != first.Checksum || ch.Total != first.Total {
			return errors.New("snapshot changed while it was being read")
		}
		if ch.Offset != off || len(ch.Data) == 0 && off < ch.Total {
			return fmt.Errorf("snapshot chunk at %d answered for %d with %d bytes", off, ch.Offset, len(ch.Data))
		}
		buf = append(buf, ch.Data...)
		off += len(ch.Data)
		if off >= ch.Total {
			break
		}
	}
	w.job.snapBuf = buf
	if err := w.job.restore(buf, first.OptStep); err != nil {
		return err
	}
	if got := w.job.checksum(); got != first.Checksum {
		return fmt.Errorf("snapshot checksum %016x, want %016x", got, first.Checksum)
	}
	w.job.step = base
	w.job.initialised = true
	w.committed.Store(base)
	w.log.Info("loaded snapshot", "step", base, "bytes", len(buf), "took", time.Since(start).Round(time.Millisecond))
	return nil
}

// step computes this rank's share of plan p, all-reduces it, stages the
// averaged gradient as pending and reports to the coordinator.
func (w *Worker) step(ctx context.Context, p plan, rank int) {
	n := len(p.Members)
	windows := toInt32(shard.Shard(toInt(p.Batch), rank, n))
	d := done{Run: w.run, Epoch: p.Epoch, Step: p.Step, Sender: w.id, Rank: rank, Windows: windows, Checksum: w.job.checksum()}
	report := func() {
		d.Leaving = w.leaving.Load()
		if b, err := encode(d); err == nil {
			w.nc.Publish(w.subj.done, b)
			w.nc.Flush()
		}
	}
	t0 := time.Now()
	N := w.job.model.Config.NumParams()
	g := w.job.model.Grads[:N+2]
	lossSum, ceSum, tokens, cpu, err := w.gradient(windows)
	if err != nil {
		d.Err = fmt.Sprintf("computing the gradient: %v", err)
		report()
		return
	}
	g[N] = float32(lossSum)
	g[N+1] = float32(tokens)
	d.Tokens = tokens
	d.CESum = ceSum
	d.ComputeS = time.Since(t0).Seconds()
	d.ComputeCPUS = cpu.Seconds()

	t1 := time.Now()
	d.ARStart = t1.UnixNano()
	actx, cancel := context.WithTimeout(ctx, w.job.spec.ARDeadline)
	defer cancel()
	ring := w.ring(w.job.spec.ChunkBytes)
	if w.hooks.ringWrap != nil {
		ring = w.hooks.ringWrap(p.Step, ring)
	}
	segs := w.job.segBuf[:0]
	err = ring(actx, ringCall{run: w.run, epoch: p.Epoch, step: p.Step, rank: rank, members: p.Members, data: g},
		func(off int, seg []float32) {
			segs = w.sendSegment(segs, p, off, seg)
		})
	w.job.segBuf = segs
	end := time.Now()
	d.AllReduceS = end.Sub(t1).Seconds()
	d.AREnd = end.UnixNano()
	if err != nil {
		if ctx.Err() != nil {
			return // aborted by a newer plan: nothing to report
		}
		d.Err = fmt.Sprintf("all-reduce: %v (this worker's mailbox has dropped %d stale or unexpected ring messages)", err, w.mb.dropped.Load())
		report()
		return
	}
	finishGradient(g)
	w.pending = &pendingUpdate{step: p.Step, lr: p.LR}
	report()
}

// gradient computes this rank's gradient. With Env.MeasureCPU it runs on a
// locked OS thread and also returns that thread's CPU time, the compute a
// machine of its own would spend (the kernels' budget must then be one
// thread, so that no work leaves the thread).
func (w *Worker) gradient(windows []int32) (lossSum, ceSum float64, tokens int, compute time.Duration, err error) {
	if !w.env.MeasureCPU {
		t := time.Now()
		lossSum, ceSum, tokens, err = w.job.gradient(windows)
		return lossSum, ceSum, tokens, time.Since(t), err
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	c0, ok0 := threadCPU()
	t := time.Now()
	lossSum, ceSum, tokens, err = w.job.gradient(windows)
	compute = time.Since(t)
	c1, ok1 := threadCPU()
	if ok0 && ok1 {
		compute = c1 - c0
	}
	return lossSum, ceSum, tokens, compute, err
}

// sendSegment publishes this rank's fully reduced segment to the coordinator
// in parts of at most chunk_bytes.
func (w *Worker) sendSegment(buf []byte, p plan, off int, seg []float32) []byte {
	per := max(1, (w.job.spec.ChunkBytes-256)/4)
	for lo := 0; lo < len(seg); lo += per {
		hi := min(lo+per, len(seg))
		buf = buf[:0]
		for _, v := range seg[lo:hi] {
			buf = binary.LittleEndian.AppendUint32(buf, math.Float32bits(v))
		}
		b, err := encode(segment{Run: w.run, Epoch: p.Epoch, Step: p.Step, Sender: w.id, Offset: off + lo, Data: buf})
		if err == nil {
			w.nc.Publish(w.subj.seg, b)
		}
	}
	return buf
}
