package cluster

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"math/rand/v2"
	"net/url"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/klring/klring/allreduce"
	"github.com/klring/klring/config"
	"github.com/klring/klring/natsnet"
	"github.com/klring/klring/outputs"
)

// Fault kinds of coordinator chaos.
const (
	FaultKill        = "kill"        // a worker dies (its connection closes) and a new one starts under its name
	FaultFreeze      = "freeze"      // a worker stops for a while (SIGSTOP), then goes on
	FaultLeave       = "leave"       // a worker leaves (SIGTERM) and comes back
	FaultDrop        = "drop"        // a worker's next ring parts are lost
	FaultCorrupt     = "corrupt"     // a worker's next ring parts are damaged in flight
	FaultNATSRestart = "nats"        // the NATS server restarts
	FaultCoordinator = "coordinator" // the coordinator dies and restarts from its run dir
)

// FaultKinds lists every kind, in the order chaos draws from.
func FaultKinds() []string {
	return []string{FaultKill, FaultFreeze, FaultLeave, FaultDrop, FaultCorrupt, FaultNATSRestart, FaultCoordinator}
}

// ChaosOptions configure coordinator chaos.
type ChaosOptions struct {
	Faults int      // faults to inject, spread over the run
	Seed   uint64   // of which fault, where and when
	Kinds  []string // kinds to draw from; empty: all
}

// Validate checks the options for a run of steps optimizer steps and names
// what is wrong; Chaos runs nothing (and writes nothing) when it fails.
func (o ChaosOptions) Validate(steps int) error {
	for _, k := range o.Kinds {
		if !slices.Contains(FaultKinds(), k) {
			return fmt.Errorf("%w: fault kind %q, want some of %v", config.ErrInvalid, k, FaultKinds())
		}
	}
	if o.Faults < 0 || o.Faults > steps {
		return fmt.Errorf("%w: %d faults: want 0..%d (at most one per step of train.steps %d)", config.ErrInvalid, o.Faults, steps, steps)
	}
	return nil
}

// FaultRecord is one injected fault and what followed it.
type FaultRecord struct {
	Step    uint64         `json:"after_step"` // injected after this step was committed
	Kind    string         `json:"kind"`
	Target  string         `json:"target"`
	Aborts  map[string]int `json:"aborts"`  // aborted attempts, by kind, until the next fault
	Retries int            `json:"retries"` // extra attempts of the steps until the next fault
}

// ChaosReport is the outcome of coordinator chaos.
type ChaosReport struct {
	Faults    []FaultRecord `json:"faults"`
	Steps     uint64        `json:"steps"`
	Verify    VerifyReport  `json:"verify"`
	Loss      float64       `json:"final_loss"`       // of the run with faults, last step
	CleanLoss float64       `json:"clean_final_loss"` // of the same run without faults
	Seconds   float64       `json:"seconds"`
}

// ErrChaos is wrapped by the outcome check of coordinator chaos.
var ErrChaos = errors.New("chaos")

// Chaos runs the job of cfg in simulation mode twice: once without faults,
// once with opts.Faults faults drawn from opts.Seed (workers killed, frozen,
// leaving; ring parts lost or damaged; the NATS server and the coordinator
// restarted), and checks the outcome: the faulty run ends, Verify passes
// on its run directory (every step committed once, every window once per
// data epoch, checkpoints and metrics consistent), and its final loss is
// the clean run's within 1e-3.
func Chaos(ctx context.Context, cfg config.Config, opts ChaosOptions, log *slog.Logger) (ChaosReport, error) {
	start := time.Now()
	var rep ChaosReport
	if err := opts.Validate(cfg.Train.Steps); err != nil {
		return rep, err
	}
	kinds := opts.Kinds
	if len(kinds) == 0 {
		kinds = FaultKinds()
	}
	base := cfg.Run.Dir
	clean := cfg
	clean.Run.Dir = filepath.Join(base, "clean")
	clean.Job = cfg.Job + "-clean"
	log.Info("chaos: the run without faults", "run_dir", clean.Run.Dir)
	cs, err := Simulate(ctx, clean, log, nil)
	if err != nil {
		return rep, fmt.Errorf("the run without faults: %w", err)
	}
	rep.CleanLoss = cs.TrainLoss
	cfg.Run.Dir = filepath.Join(base, "faults")
	log.Info("chaos: the run with faults", "faults", opts.Faults, "seed", opts.Seed, "run_dir", cfg.Run.Dir)
	r := &chaosRun{cfg: cfg, log: log, rng: rand.New(rand.NewPCG(opts.Seed, 0x63686173)), kinds: kinds, faults: opts.Faults}
	if err := r.run(ctx); err != nil {
		return rep, err
	}
	rep.Faults, rep.Steps, rep.Loss = r.records, r.last.Step, r.last.Loss
	rep.Seconds = time.Since(start).Seconds()
	if rep.Verify, err = Verify(cfg.Run.Dir, ""); err != nil {
		return rep, fmt.Errorf("%w: the run with faults: %w", ErrChaos, err)
	}
	if d := math.Abs(rep.Loss - rep.CleanLoss); !(d <= 1e-3) {
		return rep, fmt.Errorf("%w: final loss %.6f with faults, %.6f without: differ by %.2g > 1e-3", ErrChaos, rep.Loss, rep.CleanLoss, d)
	}
	return rep, nil
}

// chaosRun is the run with faults: a NATS server, a coordinator and workers
// that the fault driver can kill, freeze and restart.
type chaosRun struct {
	cfg    config.Config
	log    *slog.Logger
	rng    *rand.Rand
	kinds  []string
	faults int

	env  *Env
	srv  *natsnet.Server
	port int

	mu       sync.Mutex
	records  []FaultRecord
	last     outputs.StepMetrics
	workers  map[string]*chaosWorker // the workers running now
	crash    chan struct{}           // closes to crash the coordinator
	crashed  bool                    // crash is closed
	stopping bool                    // the run is over: restart nobody
	wg       sync.WaitGroup
}

type chaosWorker struct {
	conn   *natsnet.Conn
	cancel context.CancelFunc
	freeze chan time.Duration
	done   chan error
}

func (r *chaosRun) run(ctx context.Context) error {
	cfg := &r.cfg
	r.env = NewEnv(cfg.Cluster.Threads)
	r.env.StartWorkers = cfg.Cluster.Workers
	r.env.faults = newRingFaults()
	srv, err := natsnet.StartServer(natsnet.ServerOptions{MaxPayload: int32(max(8<<20, cfg.AllReduce.ChunkBytes+64<<10))})
	if err != nil {
		return err
	}
	r.srv = srv
	defer func() { r.srv.Shutdown() }()
	u, _ := url.Parse(srv.URL())
	r.port, _ = strconv.Atoi(u.Port())
	cfg.NATS.URL = srv.URL()
	r.workers = map[string]*chaosWorker{}
	defer r.stopWorkers()
	for i := range cfg.Cluster.Workers {
		if err := r.startWorker(ctx, fmt.Sprintf("w%d", i)); err != nil {
			return err
		}
	}
	every := max(1, cfg.Train.Steps/(r.faults+1))
	steps := make(chan outputs.StepMetrics, 1024)
	driverDone := make(chan struct{})
	go func() {
		defer close(driverDone)
		r.drive(ctx, steps, uint64(every))
	}()
	defer func() { close(steps); <-driverDone }()
	for {
		sum, err := r.coordinator(ctx, steps)
		if errors.Is(err, errCrashed) {
			r.log.Info("chaos: the coordinator restarts from its run dir")
			continue
		}
		if err != nil {
			return fmt.Errorf("the run with faults: %w", err)
		}
		r.log.Info("chaos: the run with faults ended", "steps", sum.Steps)
		return nil
	}
}

// coordinator runs one coordinator incarnation until the run ends or the
// driver crashes it.
func (r *chaosRun) coordinator(ctx context.Context, steps chan<- outputs.StepMetrics) (Summary, error) {
	c, err := NewCoordinator(r.cfg, r.log, r.env)
	if err != nil {
		return Summary{}, err
	}
	r.mu.Lock()
	r.crash, r.crashed = make(chan struct{}), false
	c.hooks.crash = r.crash
	r.mu.Unlock()
	c.hooks.onAbort = func(kind string) {
		r.mu.Lock()
		defer r.mu.Unlock()
		if n := len(r.records); n > 0 {
			r.records[n-1].Aborts[kind]++
		}
	}
	c.SetProgress(func(m outputs.StepMetrics) { steps <- m })
	nc, err := connect(ctx, r.cfg, "coordinator", r.log, nil)
	if err != nil {
		return Summary{}, err
	}
	defer nc.Close()
	return c.Run(ctx, nc)
}

func (r *chaosRun) startWorker(ctx context.Context, id string) error {
	conn, err := connect(ctx, r.cfg, "worker "+id, r.log, nil)
	if err != nil {
		return err
	}
	w, err := NewWorker(ctx, id, r.cfg.Job, conn, r.log, r.env)
	if err != nil {
		conn.Close()
		return err
	}
	w.SetCoordinatorTimeout(r.cfg.Cluster.CoordinatorTimeout)
	wctx, cancel := context.WithCancel(ctx)
	cw := &chaosWorker{conn: conn, cancel: cancel, freeze: make(chan time.Duration, 1), done: make(chan error, 1)}
	w.hooks.freeze = cw.freeze
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.stopping {
		cancel()
		conn.Close()
		return nil
	}
	r.workers[id] = cw
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		cw.done <- w.Run(wctx)
	}()
	return nil
}

func (r *chaosRun) stopWorkers() {
	r.mu.Lock()
	r.stopping = true
	for _, w := range r.workers {
		w.cancel()
	}
	r.mu.Unlock()
	r.wg.Wait()
	r.mu.Lock()
	for _, w := range r.workers {
		w.conn.Close()
	}
	r.mu.Unlock()
}

// drive injects a fault after every every committed steps, and records
// what followed each.
func (r *chaosRun) drive(ctx context.Context, steps <-chan outputs.StepMetrics, every uint64) {
	injected := 0
	for m := range steps {
		r.mu.Lock()
		r.last = m
		if n := len(r.records); n > 0 {
			r.records[n-1].Retries += m.Attempts - 1
		}
		r.mu.Unlock()
		if injected < r.faults && m.Step%every == 0 && m.Step < uint64(r.cfg.Train.Steps) {
			injected++
			r.inject(ctx, m.Step)
		}
	}
}

// inject draws a fault and injects it.
func (r *chaosRun) inject(ctx context.Context, step uint64) {
	kind := r.kinds[r.rng.IntN(len(r.kinds))]
	id := fmt.Sprintf("w%d", r.rng.IntN(r.cfg.Cluster.Workers))
	rec := FaultRecord{Step: step, Kind: kind, Target: id, Aborts: map[string]int{}}
	hb := r.cfg.Cluster.Heartbeat
	r.mu.Lock()
	w := r.workers[id]
	if w == nil && (kind == FaultKill || kind == FaultLeave || kind == FaultFreeze) || kind == FaultCoordinator && r.crashed {
		r.mu.Unlock()
		return // that worker is away, or the coordinator is restarting: no fault this time
	}
	if kind == FaultKill || kind == FaultLeave {
		delete(r.workers, id)
	}
	r.records = append(r.records, rec)
	r.mu.Unlock()
	r.log.Info("chaos: fault", "after_step", step, "kind", kind, "target", id)
	switch kind {
	case FaultKill, FaultLeave:
		if kind == FaultKill {
			w.conn.Close() // as if the process died: nothing more is heard from it
		}
		w.cancel()
		away := time.Duration(1+r.rng.IntN(4)) * hb
		r.wg.Add(1)
		go func() {
			defer r.wg.Done()
			<-w.done
			w.conn.Close()
			time.Sleep(away) // the fault: the worker is away
			r.mu.Lock()
			stop := r.stopping
			r.mu.Unlock()
			if stop {
				return
			}
			if err := r.startWorker(ctx, id); err != nil {
				r.log.Warn("chaos: restarting a worker", "worker", id, "err", err)
			}
		}()
	case FaultFreeze:
		select {
		case w.freeze <- time.Duration(2+r.rng.IntN(6)) * hb:
		default:
		}
	case FaultDrop, FaultCorrupt:
		r.env.faults.add(id, kind == FaultCorrupt, 1+r.rng.IntN(3))
	case FaultNATSRestart:
		r.srv.Shutdown()
		srv, err := natsnet.StartServer(natsnet.ServerOptions{Port: r.port, MaxPayload: int32(max(8<<20, r.cfg.AllReduce.ChunkBytes+64<<10))})
		if err != nil {
			r.log.Warn("chaos: restarting the NATS server", "err", err)
			return
		}
		r.srv = srv
	case FaultCoordinator:
		r.mu.Lock()
		close(r.crash)
		r.crashed = true
		r.mu.Unlock()
	}
}

// ringFaults loses or damages the next ring parts a worker sends.
type ringFaults struct {
	mu      sync.Mutex
	pending map[string][]bool // worker -> one entry per part to spoil: true to corrupt, false to lose
}

func newRingFaults() *ringFaults { return &ringFaults{pending: map[string][]bool{}} }

func (f *ringFaults) add(worker string, corrupt bool, n int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for range n {
		f.pending[worker] = append(f.pending[worker], corrupt)
	}
}

// next says what to do with worker's next part: spoil it, and how.
func (f *ringFaults) next(worker string) (spoil, corrupt bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	p := f.pending[worker]
	if len(p) == 0 {
		return false, false
	}
	f.pending[worker] = p[1:]
	return true, p[0]
}

func (f *ringFaults) wrap(mb allreduce.Mailbox, worker string) allreduce.Mailbox {
	return &faultMailbox{Mailbox: mb, f: f, worker: worker}
}

type faultMailbox struct {
	allreduce.Mailbox
	f      *ringFaults
	worker string
}

func (m *faultMailbox) Begin(h allreduce.Header, members []string, self int) (allreduce.Transport, error) {
	t, err := m.Mailbox.Begin(h, members, self)
	if err != nil {
		return nil, err
	}
	return &faultTransport{Transport: t, m: m}, nil
}

type faultTransport struct {
	allreduce.Transport
	m *faultMailbox
}

func (t *faultTransport) Send(ctx context.Context, to int, msg []byte) error {
	spoil, corrupt := t.m.f.next(t.m.worker)
	switch {
	case !spoil:
		return t.Transport.Send(ctx, to, msg)
	case corrupt:
		// Damage in flight: the envelope's header bytes, so the part is
		// dropped and counted by its receiver, never summed.
		bad := append([]byte(nil), msg...)
		for i := 1; i < min(len(bad), 24); i++ {
			bad[i] ^= 0x5a
		}
		return t.Transport.Send(ctx, to, bad)
	}
	return nil // lost
}
