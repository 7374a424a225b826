package scale

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/klring/klring/allreduce"
	"github.com/klring/klring/cluster"
	"github.com/klring/klring/config"
	"github.com/klring/klring/netem"
	"github.com/klring/klring/outputs"
)

// Options describe a sweep.
type Options struct {
	Workers  []int               // worker counts, e.g. 1, 2, 4, 8
	Presets  []string            // model presets; empty: the configuration's
	Networks []netem.LinkProfile // link profiles; empty: none (unshaped)
	Steps    int                 // steps of each point; default 12
	Warmup   int                 // first steps left out of the medians; default 2
	// Project is the network of the projection table; default 1GbE.
	Project netem.LinkProfile
	// ProjectTo is the largest worker count of the projection table; default 1024.
	ProjectTo int
	// Ring is how the simulated workers' ring travels: "mem" (default),
	// in-process links shaped by the network profiles, or "nats", through
	// the embedded NATS server (Servers of them in a cluster, one worker
	// count each in turn), as in a deployment; the profiles then do not
	// apply. Not used by RunExternal.
	Ring string
	// Servers is the number of clustered NATS servers of a "nats" ring
	// (default 1: one server, a star).
	Servers int
	// ServerThroughput is the bytes per second one NATS server moves in
	// all (BenchmarkNATSThroughput), for the projection through one server
	// and through a cluster; 0: the fit of the measured points, when they
	// went through NATS.
	ServerThroughput float64
}

// Validate checks the options and names what is wrong.
func (o Options) Validate() error {
	if len(o.Workers) == 0 {
		return fmt.Errorf("scale: no worker counts")
	}
	for _, n := range o.Workers {
		if n < 1 || n > 64 {
			return fmt.Errorf("scale: %d workers: want 1..64", n)
		}
	}
	if o.Steps < 0 || o.Warmup < 0 || o.ProjectTo < 0 {
		return fmt.Errorf("scale: %d steps, %d warmup steps, projection to %d workers: want >= 0 (0: the default)", o.Steps, o.Warmup, o.ProjectTo)
	}
	if o.Steps != 0 && o.Steps <= o.Warmup {
		return fmt.Errorf("scale: %d steps with %d warmup steps leaves nothing to measure", o.Steps, o.Warmup)
	}
	if o.Ring != "" && o.Ring != "mem" && o.Ring != "nats" {
		return fmt.Errorf("scale: ring %q: want mem or nats", o.Ring)
	}
	if o.Servers < 0 || o.Servers > 64 || o.ServerThroughput < 0 {
		return fmt.Errorf("scale: %d servers, server throughput %g: want 0..64 and >= 0", o.Servers, o.ServerThroughput)
	}
	return nil
}

func (o Options) withDefaults() Options {
	if o.Steps == 0 {
		o.Steps = 12
	}
	if o.Warmup == 0 {
		o.Warmup = 2
	}
	if len(o.Networks) == 0 {
		o.Networks = []netem.LinkProfile{{Name: "none"}}
	}
	if o.Project.Name == "" {
		o.Project, _ = netem.ParseProfile("1GbE")
	}
	if o.ProjectTo == 0 {
		o.ProjectTo = 1024
	}
	if o.Ring == "" {
		o.Ring = "mem"
	}
	if o.Servers == 0 {
		o.Servers = 1
	}
	if o.Ring == "nats" {
		// The ring goes through NATS on this machine: no link is shaped.
		o.Networks = []netem.LinkProfile{{Name: "none"}}
	}
	o.Workers = slices.Clone(o.Workers)
	slices.Sort(o.Workers)
	o.Workers = slices.Compact(o.Workers)
	return o
}

// Point is one measured configuration of the sweep.
type Point struct {
	Preset  string `json:"preset"`
	Network string `json:"network"`
	Workers int    `json:"workers"`
	// Ring is what carried the ring: "mem" (in-process links shaped by
	// Network), "nats" (one NATS server), "nats-cluster-K" (K clustered
	// servers), or "external" (the NATS deployment of workers started
	// elsewhere).
	Ring string `json:"ring"`
	// Real says the workers were processes started elsewhere
	// (RunExternal), each on its own machine or container, not in-process
	// workers of a simulation.
	Real bool `json:"real_processes"`

	TokensPerStep float64 `json:"tokens_per_step"`
	Bytes         float64 `json:"allreduce_bytes"` // bytes all-reduced per step
	MeasuredStepS float64 `json:"measured_step_s"` // wall time on this machine
	MeasuredTokS  float64 `json:"measured_tokens_per_s"`
	ComputeS      float64 `json:"compute_s"` // slowest worker, CPU seconds of its own thread
	AllReduceS    float64 `json:"allreduce_s"`
	WaitS         float64 `json:"wait_s"`
	ModelARS      float64 `json:"model_allreduce_s"` // cost model over the point's network
	// VirtualARS is the ring's schedule driven through the point's link
	// model in virtual time (VirtualAllReduce): the all-reduce of a network
	// that is exactly the model, pipelining included.
	VirtualARS     float64 `json:"virtual_allreduce_s"`
	LowerBoundS    float64 `json:"lower_bound_s"` // 2(n-1)/n S / B
	BusBW          float64 `json:"busbw_bytes_per_s"`
	ProjectedStepS float64 `json:"projected_step_s"` // compute + model all-reduce: N machines
	ProjectedTokS  float64 `json:"projected_tokens_per_s"`
	Speedup        float64 `json:"speedup"`    // projected, over 1 worker
	Efficiency     float64 `json:"efficiency"` // Speedup / workers
	MeasuredSpeed  float64 `json:"measured_speedup"`
	FinalLoss      float64 `json:"final_loss"`
	RunDir         string  `json:"run_dir"`
}

// Run runs the sweep: one short simulation per (preset, network, workers),
// each worker on a thread of its own, links shaped by the network. It writes
// every point's run into dir/points and returns the report (not yet written).
func Run(ctx context.Context, base config.Config, o Options, dir string, log *slog.Logger) (*Report, error) {
	if err := o.Validate(); err != nil {
		return nil, err
	}
	o = o.withDefaults()
	presets := o.Presets
	if len(presets) == 0 {
		presets = []string{base.Model.Preset}
	}
	rep := &Report{Options: o, Dir: dir}
	total := len(presets) * len(o.Networks) * len(o.Workers)
	k := 0
	for _, preset := range presets {
		for _, net := range o.Networks {
			var first *Point
			for _, n := range o.Workers {
				k++
				cfg := base
				cfg.Model.Preset = preset
				cfg.Train.Steps = o.Steps
				cfg.Cluster.Workers = n
				cfg.Cluster.MinWorkers = 1
				cfg.Run.EvalEvery = 0
				cfg.Run.CheckpointEvery = 0
				cfg.Run.MetricsAddr = ""
				cfg.Run.Dir = filepath.Join(dir, "points", fmt.Sprintf("%s-%s-n%d", preset, safeName(net.Name), n))
				if err := cfg.Validate(); err != nil {
					return nil, err
				}
				log.Info("scaling point", "point", fmt.Sprintf("%d/%d", k, total), "preset", preset, "network", net.Name, "ring", o.ring(), "workers", n)
				t0 := time.Now()
				quiet := slog.New(slog.DiscardHandler)
				so := cluster.SimOptions{Link: net, IsolateWorkers: true, LocalRing: true}
				if o.Ring == "nats" {
					so = cluster.SimOptions{IsolateWorkers: true, Servers: o.Servers}
				}
				if _, err := cluster.SimulateWith(ctx, cfg, quiet, nil, so); err != nil {
					return nil, fmt.Errorf("scale: %s, %s, %d workers: %w", preset, net.Name, n, err)
				}
				rows, err := outputs.ReadMetrics(cfg.Run.Dir)
				if err != nil {
					return nil, err
				}
				p := measure(rows, o.Warmup, preset, net, n)
				p.Ring = o.ring()
				if net.Shaped() && net.Loss == 0 && o.Ring == "mem" {
					v, err := VirtualAllReduce(n, int(p.Bytes)/4, allreduce.Options{ChunkBytes: cfg.AllReduce.ChunkBytes}, net, cfg.Data.Seed)
					if err != nil {
						return nil, err
					}
					p.VirtualARS = v.Seconds()
				}
				p.RunDir = cfg.Run.Dir
				if first == nil {
					first = &p
				}
				p.Speedup = p.ProjectedTokS / first.ProjectedTokS * float64(first.Workers)
				p.Efficiency = p.Speedup / float64(n)
				p.MeasuredSpeed = p.MeasuredTokS / first.MeasuredTokS * float64(first.Workers)
				rep.Points = append(rep.Points, p)
				log.Info("scaling point done", "workers", n, "measured_tokens_per_s", int(p.MeasuredTokS), "projected_tokens_per_s", int(p.ProjectedTokS),
					"allreduce_ms", round(p.AllReduceS*1e3), "model_allreduce_ms", round(p.ModelARS*1e3), "took", time.Since(t0).Round(time.Millisecond))
			}
		}
	}
	rep.finish(o)
	return rep, nil
}

// ring names what carried the ring of a simulated point.
func (o Options) ring() string {
	switch {
	case o.Ring != "nats":
		return "mem"
	case o.Servers > 1:
		return fmt.Sprintf("nats-cluster-%d", o.Servers)
	}
	return "nats"
}

// RunExternal runs the sweep over workers started elsewhere (for instance
// `docker compose up --scale worker=4`) that reach base.NATS.URL: for each
// worker count n, a short training run served by a coordinator that waits
// for n workers (cluster.min_workers = n) and uses exactly n of them. Every
// run but the last ends with a pause (the workers wait for the next one);
// the last ends the job, and the workers exit. Workers compute on their own
// machines, so compute is their wall time; the points are marked Real.
// Presets and networks do not apply: the model is base's, the network the
// deployment's.
func RunExternal(ctx context.Context, base config.Config, o Options, dir string, log *slog.Logger) (*Report, error) {
	if err := o.Validate(); err != nil {
		return nil, err
	}
	o = o.withDefaults()
	o.Networks, o.Presets, o.Ring = []netem.LinkProfile{{Name: "external"}}, []string{base.Model.Preset}, "external"
	rep := &Report{Options: o, Dir: dir}
	var first *Point
	for i, n := range o.Workers {
		cfg := base
		cfg.Train.Steps = o.Steps
		cfg.Cluster.MinWorkers = n
		cfg.Run.EvalEvery, cfg.Run.CheckpointEvery, cfg.Run.MetricsAddr = 0, 0, ""
		cfg.Run.Dir = filepath.Join(dir, "points", fmt.Sprintf("%s-external-n%d", base.Model.Preset, n))
		if err := cfg.Validate(); err != nil {
			return nil, err
		}
		log.Info("scaling point over external workers", "point", fmt.Sprintf("%d/%d", i+1, len(o.Workers)), "workers", n, "nats", natsURL(cfg.NATS.URL))
		t0 := time.Now()
		if _, err := cluster.ServeWith(ctx, cfg, log.With("workers", n), nil, cluster.ServeOptions{MaxWorkers: n, Linger: i < len(o.Workers)-1}); err != nil {
			return nil, fmt.Errorf("scale: %d external workers: %w", n, err)
		}
		rows, err := outputs.ReadMetrics(cfg.Run.Dir)
		if err != nil {
			return nil, err
		}
		p := measure(rows, o.Warmup, base.Model.Preset, o.Networks[0], n)
		p.Ring, p.Real, p.RunDir = "external", true, cfg.Run.Dir
		if first == nil {
			first = &p
		}
		p.Speedup = p.ProjectedTokS / first.ProjectedTokS * float64(first.Workers)
		p.Efficiency = p.Speedup / float64(n)
		p.MeasuredSpeed = p.MeasuredTokS / first.MeasuredTokS * float64(first.Workers)
		rep.Points = append(rep.Points, p)
		log.Info("scaling point done", "workers", n, "measured_tokens_per_s", int(p.MeasuredTokS), "allreduce_ms", round(p.AllReduceS*1e3),
			"busbw_GBps", round(p.BusBW/1e9), "took", time.Since(t0).Round(time.Millisecond))
	}
	rep.finish(o)
	return rep, nil
}

// natsURL is the URL list without credentials, for the log.
func natsURL(u string) string {
	if i := strings.Index(u, "@"); i >= 0 {
		if j := strings.Index(u, "://"); j >= 0 && j < i {
			return u[:j+3] + "redacted" + u[i:]
		}
	}
	return u
}

// finish fits the network models to every series that went through NATS
// and projects the first series to large clusters.
func (rep *Report) finish(o Options) {
	for _, k := range rep.keys() {
		pts := rep.series()[k]
		if pts[0].Ring == "mem" {
			continue
		}
		rep.Topology = append(rep.Topology, FitTopology(k, pts))
	}
	rep.ServerThroughput = o.ServerThroughput
	if rep.ServerThroughput > 0 {
		for i := range rep.Topology {
			rep.Topology[i].CheckBound(rep.series()[rep.Topology[i].Series], rep.ServerThroughput)
		}
	} else {
		for _, f := range rep.Topology {
			if f.Follows == SingleServer {
				rep.ServerThroughput = f.Aggregate
				break
			}
		}
	}
	rep.Projection = project(rep, o)
}

// measure turns a point's metrics into medians and the projection.
func measure(rows []outputs.StepMetrics, warmup int, preset string, net netem.LinkProfile, n int) Point {
	if len(rows) > warmup {
		rows = rows[warmup:]
	}
	med := func(f func(outputs.StepMetrics) float64) float64 {
		v := make([]float64, len(rows))
		for i, r := range rows {
			v[i] = f(r)
		}
		return median(v)
	}
	p := Point{Preset: preset, Network: net.Name, Workers: n}
	p.TokensPerStep = med(func(r outputs.StepMetrics) float64 { return float64(r.Tokens) })
	p.Bytes = med(func(r outputs.StepMetrics) float64 { return float64(r.Bytes) })
	p.MeasuredStepS = med(func(r outputs.StepMetrics) float64 { return r.StepS })
	p.ComputeS = med(func(r outputs.StepMetrics) float64 { return r.ComputeCPUS })
	if p.ComputeS == 0 {
		// Workers that do not account their own CPU time (processes on
		// machines of their own): their wall time is their compute.
		p.ComputeS = med(func(r outputs.StepMetrics) float64 { return r.ComputeS })
	}
	p.AllReduceS = med(func(r outputs.StepMetrics) float64 { return r.AllReduceS })
	p.WaitS = med(func(r outputs.StepMetrics) float64 { return r.WaitS })
	if p.MeasuredStepS > 0 {
		p.MeasuredTokS = p.TokensPerStep / p.MeasuredStepS
	}
	nw := Network{Bandwidth: net.Bandwidth, Latency: net.Latency}
	p.ModelARS = RingAllReduce(n, p.Bytes, nw).Seconds()
	p.LowerBoundS = LowerBound(n, p.Bytes, nw).Seconds()
	p.BusBW = BusBW(n, p.Bytes, time.Duration(p.AllReduceS*float64(time.Second)))
	ar := p.ModelARS
	if net.Bandwidth == 0 && net.Latency == 0 {
		ar = p.AllReduceS // unshaped links: no model, take the measurement
	}
	p.ProjectedStepS = p.ComputeS + ar
	if p.ProjectedStepS > 0 {
		p.ProjectedTokS = p.TokensPerStep / p.ProjectedStepS
	}
	if len(rows) > 0 {
		p.FinalLoss = rows[len(rows)-1].Loss
	}
	return p
}

// project extends the first preset's measurements to large clusters on the
// projection network, with the per-token compute of its 1-worker point (or
// its smallest) and the per-worker batch of its largest point held fixed
// (weak scaling: the global batch grows with the cluster).
func project(rep *Report, o Options) []Projection {
	var small, large *Point
	for i := range rep.Points {
		p := &rep.Points[i]
		if p.Preset != rep.Points[0].Preset || p.Network != rep.Points[0].Network {
			continue
		}
		if small == nil || p.Workers < small.Workers {
			small = p
		}
		if large == nil || p.Workers > large.Workers {
			large = p
		}
	}
	if small == nil || small.TokensPerStep == 0 {
		return nil
	}
	perToken := time.Duration(small.ComputeS * float64(small.Workers) / small.TokensPerStep * float64(time.Second))
	perWorker := large.TokensPerStep / float64(large.Workers)
	net := Network{Bandwidth: o.Project.Bandwidth, Latency: o.Project.Latency}
	A := rep.ServerThroughput
	var out []Projection
	for n := 1; n <= o.ProjectTo; n *= 2 {
		p := Project(n, perWorker*float64(n), perToken, small.Bytes, net)
		if A > 0 {
			agg := A
			if net.Bandwidth > 0 && net.Bandwidth < agg {
				agg = net.Bandwidth // the server's node's link carries every flow
			}
			p.StarAllReduce = StarAllReduce(n, small.Bytes, agg, net.Latency)
			p.ClusterAllReduce = ClusterAllReduce(n, small.Bytes, net.Bandwidth, A, net.Latency)
		}
		// Weak scaling: a worker's share stays the same, so speedup is
		// measured against one worker doing the whole global batch.
		out = append(out, p)
	}
	return out
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func round(x float64) float64 { return float64(int64(x*100+0.5)) / 100 }

func safeName(s string) string {
	b := []byte(s)
	for i, c := range b {
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-') {
			b[i] = '_'
		}
	}
	return string(b)
}
