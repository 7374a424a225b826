package cluster

import (
	"fmt"

	"github.com/klring/klring/engine"
	"github.com/klring/klring/lm"
	"github.com/klring/klring/outputs"
)

// The coordinator's evaluations and checkpoints run on copies of the
// committed state, in goroutines of their own, off the protocol's path: a
// long one delays neither plans nor heartbeats. The state machine asks for
// them only once the master has applied the step (protocol.Applied), so
// the copies are taken while no apply is running. A metrics line waits for its
// step's evaluation, so metrics.jsonl keeps its order and its val_loss.

// sideDone is the end of an evaluation or a checkpoint.
type sideDone struct {
	eval     bool
	step     uint64
	ev       engine.Eval
	sampleKL *float64
	dir      string
	err      error
}

// side is the state of the background work.
type side struct {
	done      chan sideDone
	evalBusy  bool
	ckptBusy  bool
	evalModel *lm.Model
	evalEng   *engine.Engine
	ckpt      *ckptState // the copy being written (or last written)
	queued    *ckptState // a copy due while ckpt was being written
	spare     *ckptState // a buffer for the next queued copy
	rows      []pendingRow
	lastCkpt  string
	// gates are closed when metrics.jsonl holds their step's line: a
	// checkpoint of step s is renamed into place only then, so a run
	// resumed from it never lacks a metrics line (the line may wait for
	// an evaluation that is still running).
	gates []ckptGate
	// written is the last step metrics.jsonl holds a line of.
	written uint64
}

// ckptGate holds back the checkpoint of a step until its metrics line is
// written.
type ckptGate struct {
	step uint64
	open chan struct{}
}

// pendingRow is a metrics line that waits for its step's evaluation.
type pendingRow struct {
	m    outputs.StepMetrics
	eval bool // an evaluation of this step is running
}

func newSide() *side { return &side{done: make(chan sideDone, 2)} }

// checkpointAsync copies the committed state and writes it in the
// background. A checkpoint that comes due while the one before is still
// being written (a slow disk, or its metrics line waiting for an
// evaluation) is copied now and written after it; of several such, the
// newest is kept (logged). The protocol's loop never waits for a disk.
func (c *Coordinator) checkpointAsync() error {
	if err := c.pollSide(); err != nil {
		return err
	}
	s := c.side
	if !s.ckptBusy {
		snap, err := c.job.checkpointState(s.ckpt)
		if err != nil {
			return fmt.Errorf("checkpoint of step %d: %w", c.job.step, err)
		}
		s.ckpt = snap
		snap.resid = c.gatherResid()
		c.startCheckpoint(snap)
		return nil
	}
	if s.queued != nil {
		c.log.Info("checkpoint replaced: a newer one is due before it could be written", "step", s.queued.step, "by", c.job.step)
	}
	snap, err := c.job.checkpointState(s.spare)
	if err != nil {
		return fmt.Errorf("checkpoint of step %d: %w", c.job.step, err)
	}
	snap.resid = c.gatherResid()
	s.queued, s.spare = snap, nil
	return nil
}

// startCheckpoint writes snap in the background, renamed into place once
// its step's metrics line is written.
func (c *Coordinator) startCheckpoint(snap *ckptState) {
	s := c.side
	s.ckptBusy = true
	snap.ready = nil
	if s.written < snap.step {
		g := ckptGate{step: snap.step, open: make(chan struct{})}
		s.gates = append(s.gates, g)
		snap.ready = g.open
	}
	dir, keep, hold := c.cfg.Run.Dir, c.cfg.Run.Keep, c.hooks.holdCheckpoint
	go func() {
		if hold != nil {
			hold(snap.step)
		}
		d, err := snap.write(dir, keep)
		s.done <- sideDone{step: snap.step, dir: d, err: err}
	}()
}

// evaluateAsync evaluates a copy of the committed model on held-out windows
// in the background; the step's metrics line waits for it. An evaluation
// that comes due while the one before is still running is skipped (logged):
// waiting for it would stall the protocol's loop (run.eval_every is then
// shorter than an evaluation takes).
func (c *Coordinator) evaluateAsync() error {
	if err := c.pollSide(); err != nil {
		return err
	}
	s := c.side
	if s.evalBusy {
		c.evalSkipped++
		c.log.Info("evaluation skipped: the one before is still running (an evaluation takes longer than run.eval_every steps)",
			"step", c.job.step, "skipped", c.evalSkipped)
		return nil
	}
	if err := c.evalEngine(); err != nil {
		return err
	}
	copy(s.evalModel.Params, c.job.model.Params)
	s.evalBusy = true
	if c.metrics != nil {
		c.metrics.wait = true
	}
	w := c.job.data.ValWindows()
	w = w[:min(len(w), periodicEvalWindows)]
	step, eng, hold := c.job.step, s.evalEng, c.hooks.holdEval
	go func() {
		if hold != nil {
			hold(step)
		}
		ev, err := eng.Evaluate(w)
		sk := c.sampleKL(eng, err)
		s.done <- sideDone{eval: true, step: step, ev: ev, sampleKL: sk, err: err}
	}()
	return nil
}

// evalEngine makes, once, the engine evaluations run on: a forward-only
// model over a copy of the committed parameters (so that the next commits
// can go on meanwhile), evaluating evalWindows windows at a time.
func (c *Coordinator) evalEngine() error {
	s := c.side
	if s.evalEng != nil {
		return nil
	}
	cfg := c.job.model.Config
	m, err := lm.NewInference(cfg, make([]float32, cfg.NumParams()), c.job.env.Pool)
	if err != nil {
		return err
	}
	o, err := engineOptions(c.spec)
	if err != nil {
		return err
	}
	o.MaxWindows, o.OnPolicy.Fraction = evalWindows, 0
	if o.TokenBytes, err = c.job.env.tokenBytes(c.spec); err != nil {
		return err
	}
	if o.Teacher, err = c.job.env.teacherModel(c.spec); err != nil {
		return err
	}
	if o.Store, err = c.job.env.jobStore(c.spec); err != nil {
		return err
	}
	if s.evalEng, err = engine.New(o, m, c.job.data, c.job.env.Pool); err != nil {
		return err
	}
	s.evalModel = m
	return nil
}

// onSide takes the end of a piece of background work.
func (c *Coordinator) onSide(d sideDone) error {
	if d.eval {
		c.side.evalBusy = false
	} else {
		c.side.ckptBusy = false
	}
	if d.err != nil {
		return d.err
	}
	if !d.eval {
		s := c.side
		s.lastCkpt = d.dir
		c.log.Info("checkpoint", "step", d.step, "dir", d.dir)
		if q := s.queued; q != nil {
			// The written copy's buffers take the queued one's place.
			s.spare, s.ckpt, s.queued = s.ckpt, q, nil
			c.startCheckpoint(q)
		}
		return nil
	}
	c.prom.ValLoss.Set(d.ev.CE)
	c.log.Info("evaluated", "step", d.step, "val_loss", d.ev.CE, "val_kl_to_truth", d.ev.KL, "windows", d.ev.Windows)
	c.evaluated(d.step, d.ev, d.sampleKL)
	return c.flushRows()
}

// evaluated puts the held-out figures of an evaluation of step into that
// step's queued metrics line, which then no longer waits.
func (c *Coordinator) evaluated(step uint64, ev engine.Eval, sampleKL *float64) {
	for i := range c.side.rows {
		if r := &c.side.rows[i]; r.m.Step == step && r.eval {
			setEval(&r.m, ev, sampleKL)
			r.eval = false
		}
	}
}

// setEval sets the held-out figures of a metrics line.
func setEval(m *outputs.StepMetrics, ev engine.Eval, sampleKL *float64) {
	h := ev.Entropy
	m.ValLoss, m.ValKL, m.ValBPB, m.ValEntropy = &ev.CE, ev.KLPtr(), bpbPtr(ev), &h
	m.ValTeacherKL, m.ValSampleKL = ev.TeacherKLPtr(), sampleKL
}

// sampleKL is, when run.sample_kl_windows asks for it, the reverse KL to
// the truth on the model's own samples of held-out windows (nil otherwise,
// or when err is set).
func (c *Coordinator) sampleKL(eng *engine.Engine, err error) *float64 {
	n := c.cfg.Run.SampleKLWindows
	if n == 0 || err != nil || !c.job.data.HasTruth() {
		return nil
	}
	w := c.job.data.ValWindows()
	w = w[:min(n, len(w))]
	prefix, temp := c.spec.OnPolicyPrefix, c.spec.OnPolicyTemp
	if prefix == 0 {
		prefix = c.spec.Model.Ctx / 2
	}
	if !(temp > 0) {
		temp = 1
	}
	v, err := eng.SampleKL(w, prefix, temp, 0.01, c.spec.Seed)
	if err != nil {
		c.log.Warn("the KL on the model's samples", "err", err)
		return nil
	}
	return &v
}

func bpbPtr(ev engine.Eval) *float64 {
	if ev.BPB < 0 {
		return nil
	}
	v := ev.BPB
	return &v
}

// pollSide takes the background work that has ended, without waiting.
func (c *Coordinator) pollSide() error {
	for {
		select {
		case d := <-c.side.done:
			if err := c.onSide(d); err != nil {
				return err
			}
		default:
			return nil
		}
	}
}

// waitSide waits for the running evaluation (eval) or checkpoint to end.
func (c *Coordinator) waitSide(eval bool) error {
	for eval && c.side.evalBusy || !eval && c.side.ckptBusy {
		if err := c.onSide(<-c.side.done); err != nil {
			return err
		}
	}
	return nil
}

// settleSide waits for every piece of background work and writes every
// metrics line.
func (c *Coordinator) settleSide() error {
	if err := c.waitSide(true); err != nil {
		return err
	}
	if err := c.waitSide(false); err != nil {
		return err
	}
	return c.flushRows()
}

// queueRow queues a committed step's metrics line.
func (c *Coordinator) queueRow(m outputs.StepMetrics, eval bool) error {
	c.side.rows = append(c.side.rows, pendingRow{m: m, eval: eval})
	return c.flushRows()
}

// flushRows appends the queued metrics lines whose evaluation is done, in
// step order.
func (c *Coordinator) flushRows() error {
	rows := c.side.rows
	for len(rows) > 0 && !rows[0].eval {
		if err := c.out.AppendMetrics(rows[0].m); err != nil {
			return err
		}
		c.side.written = rows[0].m.Step
		rows = rows[1:]
	}
	gates := c.side.gates[:0]
	for _, g := range c.side.gates {
		if g.step <= c.side.written {
			close(g.open)
		} else {
			gates = append(gates, g)
		}
	}
	c.side.gates = gates
	c.side.rows = append(c.side.rows[:0], rows...)
	return nil
}
