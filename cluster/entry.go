package cluster

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/klring/klring/allreduce"
	"github.com/klring/klring/certs"
	"github.com/klring/klring/config"
	"github.com/klring/klring/kernels"
	"github.com/klring/klring/natsnet"
	"github.com/klring/klring/netem"
	"github.com/klring/klring/outputs"
)

// Serve runs `coordinator run`: the coordinator of cfg.Job on cfg.NATS.URL.
func Serve(ctx context.Context, cfg config.Config, log *slog.Logger, progress func(outputs.StepMetrics)) (Summary, error) {
	env := NewEnv(cfg.Cluster.Threads)
	c, err := NewCoordinator(cfg, log, env)
	if err != nil {
		return Summary{}, err
	}
	c.SetProgress(progress)
	nc, err := connect(ctx, cfg, "coordinator", log)
	if err != nil {
		return Summary{}, err
	}
	defer nc.Close()
	return c.Run(ctx, nc)
}

// Work runs `worker`: one worker of cfg.Job on cfg.NATS.URL.
func Work(ctx context.Context, cfg config.Config, id string, log *slog.Logger) error {
	if id == "" {
		host, _ := os.Hostname()
		id = fmt.Sprintf("%s-%d", host, os.Getpid())
	}
	if err := natsnet.ValidName(id); err != nil {
		return fmt.Errorf("worker id: %w", err)
	}
	env := NewEnv(cfg.Cluster.Threads)
	env.CacheDir, env.Log = cfg.Data.CacheDir, log
	nc, err := connect(ctx, cfg, "worker "+id, log)
	if err != nil {
		return err
	}
	defer nc.Close()
	w, err := NewWorker(ctx, id, cfg.Job, nc, log, env)
	if err != nil {
		return err
	}
	w.SetCoordinatorTimeout(cfg.Cluster.CoordinatorTimeout)
	err = w.Run(ctx)
	if errors.Is(err, context.Canceled) {
		log.Info("left the job", "worker", id)
		return nil
	}
	return err
}

// Simulate runs `coordinator sim`: an embedded NATS server, the coordinator
// and cfg.Cluster.Workers workers in one process. It is the same code as the
// multi-process deployment; only the transport is local.
func Simulate(ctx context.Context, cfg config.Config, log *slog.Logger, progress func(outputs.StepMetrics)) (Summary, error) {
	return SimulateWith(ctx, cfg, log, progress, SimOptions{})
}

// SimOptions change how simulation mode runs the workers (scaling
// experiments).
type SimOptions struct {
	// Link shapes every ring link between two workers.
	Link netem.LinkProfile
	// IsolateWorkers gives each worker a budget of one kernel thread of its
	// own and accounts its compute in that thread's CPU time, as if it ran on
	// a core of its own.
	IsolateWorkers bool
	// LocalRing carries the ring's messages between the in-process workers
	// directly instead of through the NATS server (the control plane stays
	// on NATS), so that the link model, not this machine's CPU, sets the
	// all-reduce's time.
	LocalRing bool
	// Secure runs the embedded server as a deployment should: mutual TLS
	// with certificates made for the run, and one user per role with the
	// permissions of docs/security.md (the coordinator's may publish plans
	// and answer requests, the workers' may not).
	Secure bool
}

// SimulateWith is Simulate with options.
func SimulateWith(ctx context.Context, cfg config.Config, log *slog.Logger, progress func(outputs.StepMetrics), so SimOptions) (Summary, error) {
	if cfg.Run.Dir == "" {
		cfg.Run.Dir = filepath.Join("runs", cfg.Job+"-"+time.Now().Format("20060102-150405"))
	}
	if cfg.Cluster.MinWorkers > cfg.Cluster.Workers {
		return Summary{}, fmt.Errorf("%w: cluster.min_workers = %d is more than cluster.workers = %d: no step could ever start", config.ErrInvalid, cfg.Cluster.MinWorkers, cfg.Cluster.Workers)
	}
	env := NewEnv(cfg.Cluster.Threads)
	env.StartWorkers = cfg.Cluster.Workers
	env.Link = so.Link
	if so.LocalRing {
		env.hub = allreduce.NewMemHub(allreduce.Limits{})
	}
	c, err := NewCoordinator(cfg, log, env)
	if err != nil {
		return Summary{}, err
	}
	c.SetProgress(progress)
	if cfg.NATS.TLSCA != "" || cfg.NATS.TLSCert != "" || cfg.NATS.TLSKey != "" {
		log.Info("simulation mode runs its own NATS server in this process: nats.tls_* are not used")
	}
	cfg.NATS.TLSCA, cfg.NATS.TLSCert, cfg.NATS.TLSKey = "", "", ""
	so2 := natsnet.ServerOptions{User: cfg.NATS.User, Password: cfg.NATS.Password,
		MaxPayload: int32(max(8<<20, cfg.AllReduce.ChunkBytes+64<<10))}
	roles := map[string]config.NATS{"coordinator": cfg.NATS, "worker": cfg.NATS}
	if so.Secure {
		dir, err := os.MkdirTemp("", "klring-sim-certs-")
		if err != nil {
			return Summary{}, fmt.Errorf("secure simulation: %w", err)
		}
		defer os.RemoveAll(dir)
		if roles, err = secureServer(&so2, dir, cfg.Job); err != nil {
			return Summary{}, err
		}
	}
	srv, err := natsnet.StartServer(so2)
	if err != nil {
		return Summary{}, err
	}
	defer srv.Shutdown()
	cfg.NATS.URL = srv.URL()
	role := func(name string) config.Config {
		c := cfg
		r := roles[name]
		c.NATS.User, c.NATS.Password, c.NATS.TLSCA, c.NATS.TLSCert, c.NATS.TLSKey = r.User, r.Password, r.TLSCA, r.TLSCert, r.TLSKey
		return c
	}
	log.Info("simulation", "nats", cfg.NATS.URL, "workers", cfg.Cluster.Workers, "run_dir", cfg.Run.Dir)

	nc, err := connect(ctx, role("coordinator"), "coordinator", log)
	if err != nil {
		return Summary{}, err
	}
	defer nc.Close()

	wctx, stopWorkers := context.WithCancel(ctx)
	defer stopWorkers()
	var wg sync.WaitGroup
	errs := make([]error, cfg.Cluster.Workers)
	for i := range cfg.Cluster.Workers {
		id := fmt.Sprintf("w%d", i)
		wnc, err := connect(ctx, role("worker"), "worker "+id, log)
		if err != nil {
			return Summary{}, err
		}
		defer wnc.Close()
		wenv := env
		if so.IsolateWorkers {
			wenv = env.withPool(kernels.NewPool(1))
			wenv.MeasureCPU = true
		}
		w, err := NewWorker(ctx, id, cfg.Job, wnc, log, wenv)
		if err != nil {
			return Summary{}, err
		}
		w.SetCoordinatorTimeout(cfg.Cluster.CoordinatorTimeout)
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = w.Run(wctx)
		}()
	}
	sum, err := c.Run(ctx, nc)
	if err != nil || sum.Stopped {
		// The workers of a paused or failed simulation wait for a
		// coordinator that will not come: end them.
		stopWorkers()
		wg.Wait()
		return sum, err
	}
	// The final plan ends the workers; do not wait for a worker whose
	// final plan was lost.
	waitCh := make(chan struct{})
	go func() { wg.Wait(); close(waitCh) }()
	select {
	case <-waitCh:
	case <-time.After(5 * time.Second):
		stopWorkers()
		<-waitCh
	}
	return sum, nil
}

// secureServer makes certificates for a simulation in dir, sets so to serve
// mutual TLS with one user per role, and returns each role's credentials.
func secureServer(so *natsnet.ServerOptions, dir, job string) (map[string]config.NATS, error) {
	if _, err := certs.Generate(dir, certs.Request{Hosts: []string{"127.0.0.1", "localhost"}, Clients: []string{"coordinator", "worker"}}); err != nil {
		return nil, fmt.Errorf("secure simulation: %w", err)
	}
	so.TLSCert, so.TLSKey = filepath.Join(dir, "server.pem"), filepath.Join(dir, "server-key.pem")
	so.TLSCA, so.TLSVerify = filepath.Join(dir, "ca.pem"), true
	so.User, so.Password = "", ""
	roles := map[string]config.NATS{}
	for _, r := range []string{"coordinator", "worker"} {
		perm := natsnet.WorkerPermissions(job, "*")
		if r == "coordinator" {
			perm = natsnet.CoordinatorPermissions(job)
		}
		pw := rand.Text()
		so.Users = append(so.Users, natsnet.User{Name: r, Password: pw, Permissions: perm})
		roles[r] = config.NATS{User: r, Password: pw, TLSCA: so.TLSCA,
			TLSCert: filepath.Join(dir, r+".pem"), TLSKey: filepath.Join(dir, r+"-key.pem")}
	}
	return roles, nil
}

// connect dials cfg's NATS server through natsnet (reconnect forever, pings
// every second, no echo), waiting for the server to come up until ctx ends; a
// wrong user or password fails at once. A ring part of allreduce.chunk_bytes
// plus its NATS header must fit in the server's max_payload.
func connect(ctx context.Context, cfg config.Config, name string, log *slog.Logger) (*natsnet.Conn, error) {
	c, err := natsnet.Connect(ctx, natsnet.Options{
		URL: cfg.NATS.URL, User: cfg.NATS.User, Password: cfg.NATS.Password, Token: cfg.NATS.Token, Creds: cfg.NATS.Creds,
		TLSCA: cfg.NATS.TLSCA, TLSCert: cfg.NATS.TLSCert, TLSKey: cfg.NATS.TLSKey,
		Name: "klring " + cfg.Job + " " + name, ChunkBytes: cfg.AllReduce.ChunkBytes + natsnet.HeaderRoom, Logger: log,
	})
	if err != nil {
		return nil, fmt.Errorf("connecting %s: %w", name, err)
	}
	return c, nil
}
