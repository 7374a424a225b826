package cluster

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
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

// Serve runs `coordinator run`: the coordinator of cfg.Job on cfg.NATS.URL
// (or, with nats.embed, on a NATS server of its own in this process, joined
// to the cluster of nats.routes).
func Serve(ctx context.Context, cfg config.Config, log *slog.Logger, progress func(outputs.StepMetrics)) (Summary, error) {
	return ServeWith(ctx, cfg, log, progress, ServeOptions{})
}

// ServeOptions change how Serve runs the coordinator (sweeps over workers
// started elsewhere: scale.RunExternal).
type ServeOptions struct {
	// MaxWorkers caps the members of every epoch (0: every eligible
	// worker): the run uses that many of the workers that are there.
	MaxWorkers int
	// Linger ends the run with a pause plan instead of a final one: the
	// workers wait for the next coordinator instead of exiting.
	Linger bool
}

// ServeWith is Serve with options.
func ServeWith(ctx context.Context, cfg config.Config, log *slog.Logger, progress func(outputs.StepMetrics), so ServeOptions) (Summary, error) {
	if so.MaxWorkers > 0 && so.MaxWorkers < cfg.Cluster.MinWorkers {
		return Summary{}, fmt.Errorf("%w: at most %d workers, but cluster.min_workers = %d", config.ErrInvalid, so.MaxWorkers, cfg.Cluster.MinWorkers)
	}
	env := NewEnv(cfg.Cluster.Threads)
	env.MaxWorkers, env.Linger = so.MaxWorkers, so.Linger
	c, err := NewCoordinator(cfg, log, env)
	if err != nil {
		return Summary{}, err
	}
	c.SetProgress(progress)
	if cfg.NATS.Embed {
		srv, err := startEmbedded(cfg, log)
		if err != nil {
			return Summary{}, err
		}
		defer srv.Shutdown()
		cfg.NATS.URL = srv.URL()
	}
	nc, err := connect(ctx, cfg, "coordinator", log, nil)
	if err != nil {
		return Summary{}, err
	}
	defer nc.Close()
	return c.Run(ctx, nc)
}

// Work runs `worker`: one worker of cfg.Job on cfg.NATS.URL (or, with
// nats.embed, on a NATS server of its own in this process, joined to the
// cluster of nats.routes: a node's worker and its server in one process).
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
	if cfg.NATS.Embed {
		srv, err := startEmbedded(cfg, log)
		if err != nil {
			return err
		}
		defer srv.Shutdown()
		cfg.NATS.URL = srv.URL()
	}
	nc, err := connect(ctx, cfg, "worker "+id, log, nil)
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

// startEmbedded starts the NATS server of nats.embed: named nats.server_name
// (default the host name), for clients on nats.listen, admitting this
// process's nats.user and nats.password (if set), and joined to the cluster
// nats.cluster_name through nats.routes, listening for routes on
// nats.cluster_listen with nats.cluster_user and nats.cluster_password.
func startEmbedded(cfg config.Config, log *slog.Logger) (*natsnet.Server, error) {
	n := cfg.NATS
	host, port, err := splitHostPort(n.Listen)
	if err != nil {
		return nil, fmt.Errorf("%w: nats.listen: %w", config.ErrInvalid, err)
	}
	name := n.ServerName
	if name == "" {
		if name, err = os.Hostname(); err != nil || name == "" {
			name = "klring"
		}
	}
	so := natsnet.ServerOptions{Name: name, Host: host, Port: port, User: n.User, Password: n.Password, Logger: log,
		MaxPayload: int32(max(8<<20, cfg.AllReduce.ChunkBytes+64<<10))}
	if n.ClusterListen != "" || n.Routes != "" {
		co := &natsnet.ClusterOptions{Name: n.ClusterName, User: n.ClusterUser, Password: n.ClusterPassword, Routes: strings.Split(n.Routes, ",")}
		if n.ClusterListen != "" {
			if co.Host, co.Port, err = splitHostPort(n.ClusterListen); err != nil {
				return nil, fmt.Errorf("%w: nats.cluster_listen: %w", config.ErrInvalid, err)
			}
		}
		so.Cluster = co
	}
	srv, err := natsnet.StartServer(so)
	if err != nil {
		return nil, err
	}
	log.Info("embedded NATS server", "name", srv.Name(), "url", srv.URL(), "cluster_listen", srv.RouteURL(), "routes", strings.Join(srv.Routes(), ","), "cluster", n.ClusterName)
	return srv, nil
}

func splitHostPort(hp string) (string, int, error) {
	host, p, err := net.SplitHostPort(hp)
	if err != nil {
		return "", 0, err
	}
	port, err := strconv.Atoi(p)
	if err != nil || port < 0 || port > 65535 {
		return "", 0, fmt.Errorf("port %q", p)
	}
	return host, port, nil
}

// Simulate runs `coordinator sim`: an embedded NATS server, the coordinator
// and cfg.Cluster.Workers workers in one process. It is the same code as the
// multi-process deployment; only the transport is local.
func Simulate(ctx context.Context, cfg config.Config, log *slog.Logger, progress func(outputs.StepMetrics)) (Summary, error) {
	return SimulateWith(ctx, cfg, log, progress, SimOptions{InProcess: true})
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
	// and answer requests, the workers' may not). Routes between clustered
	// servers use TLS and a user and password of their own.
	Secure bool
	// InProcess connects the coordinator and the workers to a single,
	// plain (not Secure) embedded server through nats.go's in-process
	// connections, in-memory pipes instead of loopback TCP sockets: the same
	// server, protocol, users and permissions, without the kernel's socket
	// calls and copies (natsnet BenchmarkAllReduce/nats-inproc against
	// nats). Simulate sets it; with several servers or TLS the clients use
	// TCP, so that failover and TLS are what a deployment has.
	InProcess bool
	// Servers is the number of clustered embedded servers (0: nats.servers):
	// worker i connects to server i mod Servers first (and fails over to
	// the others), the coordinator to server 0; with one worker per server
	// every ring link crosses one route.
	Servers int
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
	k := cfg.NATS.Servers
	if so.Servers > 0 {
		k = so.Servers
	}
	servers, err := startSimServers(k, so2, so.Secure)
	if err != nil {
		return Summary{}, err
	}
	defer func() {
		for _, s := range servers {
			s.Shutdown()
		}
	}()
	cfg.NATS.URL = natsnet.URLs(servers, 0)
	role := func(name string) config.Config {
		c := cfg
		r := roles[name]
		c.NATS.User, c.NATS.Password, c.NATS.TLSCA, c.NATS.TLSCert, c.NATS.TLSKey = r.User, r.Password, r.TLSCA, r.TLSCert, r.TLSKey
		return c
	}
	var inproc *natsnet.Server
	if so.InProcess && !so.Secure && len(servers) == 1 {
		inproc = servers[0]
	}
	log.Info("simulation", "nats", cfg.NATS.URL, "servers", len(servers), "in_process", inproc != nil, "workers", cfg.Cluster.Workers, "run_dir", cfg.Run.Dir)

	nc, err := connect(ctx, role("coordinator"), "coordinator", log, inproc)
	if err != nil {
		return Summary{}, err
	}
	defer nc.Close()

	// The workers share the cores. Each gets a budget of its own, its
	// share of the process's threads (at least one), and at most as many
	// compute at once as those shares fill: the others wait for a turn
	// instead of taking turns with them at every yield of the kernels,
	// where each switch would bring another replica's parameters,
	// gradients and activations into the caches.
	perWorker, turns := shareCores(env.Pool.Threads(), cfg.Cluster.Workers)
	if turns > 0 && !so.IsolateWorkers {
		env.turns = make(chan struct{}, turns)
	}
	wctx, stopWorkers := context.WithCancel(ctx)
	defer stopWorkers()
	var wg sync.WaitGroup
	errs := make([]error, cfg.Cluster.Workers)
	for i := range cfg.Cluster.Workers {
		id := fmt.Sprintf("w%d", i)
		wcfg := role("worker")
		wcfg.NATS.URL = natsnet.URLs(servers, i%len(servers))
		wnc, err := connect(ctx, wcfg, "worker "+id, log, inproc)
		if err != nil {
			return Summary{}, err
		}
		defer wnc.Close()
		wenv := env.withPool(kernels.NewPool(perWorker))
		if so.IsolateWorkers {
			// A locked thread that yields would hand its core to another
			// thread and sleep until it gets it back, inside the compute
			// this mode measures.
			wenv = env.withPool(kernels.NewPool(1))
			wenv.Pool.SetYield(false)
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

// startSimServers starts the embedded server of a simulation, or k of them
// in a cluster (named nats-0 ...; when secure, routes with mutual TLS, the
// route certificate beside the server's, and a random route password).
func startSimServers(k int, so natsnet.ServerOptions, secure bool) ([]*natsnet.Server, error) {
	if k <= 1 {
		s, err := natsnet.StartServer(so)
		if err != nil {
			return nil, err
		}
		return []*natsnet.Server{s}, nil
	}
	so.Name = "nats"
	co := &natsnet.ClusterOptions{Name: "klring-sim"}
	if secure {
		// Routes as a deployment's: mutual TLS with the route certificate
		// and a password of their own.
		dir := filepath.Dir(so.TLSCert)
		co.User, co.Password = "route", rand.Text()
		co.TLSCert, co.TLSKey = filepath.Join(dir, "route.pem"), filepath.Join(dir, "route-key.pem")
	}
	so.Cluster = co
	return natsnet.StartCluster(k, so)
}

// secureServer makes certificates for a simulation in dir, sets so to serve
// mutual TLS with one user per role, and returns each role's credentials.
func secureServer(so *natsnet.ServerOptions, dir, job string) (map[string]config.NATS, error) {
	if _, err := certs.Generate(dir, certs.Request{Hosts: []string{"127.0.0.1", "localhost"}, Clients: []string{"coordinator", "worker"}, Route: true}); err != nil {
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
// plus its NATS header must fit in the server's max_payload. inproc, if not
// nil, is the embedded server of this process to reach in memory
// (SimOptions.InProcess).
func connect(ctx context.Context, cfg config.Config, name string, log *slog.Logger, inproc *natsnet.Server) (*natsnet.Conn, error) {
	c, err := natsnet.Connect(ctx, natsnet.Options{
		URL: cfg.NATS.URL, User: cfg.NATS.User, Password: cfg.NATS.Password, Token: cfg.NATS.Token, Creds: cfg.NATS.Creds,
		TLSCA: cfg.NATS.TLSCA, TLSCert: cfg.NATS.TLSCert, TLSKey: cfg.NATS.TLSKey,
		Name: "klring " + cfg.Job + " " + name, ChunkBytes: cfg.AllReduce.ChunkBytes + natsnet.HeaderRoom, Logger: log,
		InProcess: inproc,
	})
	if err != nil {
		return nil, fmt.Errorf("connecting %s: %w", name, err)
	}
	return c, nil
}

// shareCores splits a budget of threads kernel threads between workers
// in-process workers: each gets perWorker threads (its share, at least
// one), and at most turns of them compute at once (0: all of them, when
// their shares fit the budget).
func shareCores(threads, workers int) (perWorker, turns int) {
	perWorker = max(1, threads/max(1, workers))
	if at := max(1, threads/perWorker); workers > at {
		turns = at
	}
	return perWorker, turns
}
