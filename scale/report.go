package scale

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"

	"github.com/klring/klring/charts"
)

// Report is the outcome of a sweep.
type Report struct {
	Options Options `json:"options"`
	Dir     string  `json:"dir"`
	Points  []Point `json:"points"`
	// Topology fits the single-server and the cluster model to every series
	// whose ring went through NATS (FitTopology).
	Topology   []TopologyFit `json:"topology,omitempty"`
	Projection []Projection  `json:"projection"`
	// ServerThroughput is the bytes per second of one NATS server the
	// projection's single-server and cluster columns use (0: none known).
	ServerThroughput float64 `json:"server_throughput_bytes_per_s,omitempty"`
}

// Files are the paths Write produced.
type Files struct {
	CSV, JSON, Markdown                    string
	Throughput, Efficiency, Breakdown, ARP string
}

// Write writes scaling.csv, scaling.json, report.md and the plots into r.Dir.
func (r *Report) Write() (Files, error) {
	if err := os.MkdirAll(r.Dir, 0o755); err != nil {
		return Files{}, fmt.Errorf("scale: %w", err)
	}
	f := Files{
		CSV: filepath.Join(r.Dir, "scaling.csv"), JSON: filepath.Join(r.Dir, "scaling.json"),
		Markdown: filepath.Join(r.Dir, "report.md"), Throughput: filepath.Join(r.Dir, "throughput.png"),
		Efficiency: filepath.Join(r.Dir, "efficiency.png"), Breakdown: filepath.Join(r.Dir, "step_breakdown.png"),
		ARP: filepath.Join(r.Dir, "allreduce.png"),
	}
	if err := os.WriteFile(f.CSV, r.csv(), 0o644); err != nil {
		return f, err
	}
	js, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return f, err
	}
	if err := os.WriteFile(f.JSON, append(js, '\n'), 0o644); err != nil {
		return f, err
	}
	if err := os.WriteFile(f.Markdown, []byte(r.Markdown()), 0o644); err != nil {
		return f, err
	}
	for _, p := range []struct {
		path string
		fn   func(string) error
	}{{f.Throughput, r.plotThroughput}, {f.Efficiency, r.plotEfficiency}, {f.Breakdown, r.plotBreakdown}, {f.ARP, r.plotAllReduce}} {
		if err := p.fn(p.path); err != nil {
			return f, fmt.Errorf("scale: %s: %w", p.path, err)
		}
	}
	return f, nil
}

var csvHeader = []string{"preset", "network", "ring", "real_processes", "workers", "measured_tokens_per_s", "projected_tokens_per_s", "speedup", "efficiency",
	"measured_speedup", "compute_s", "allreduce_s", "wait_s", "step_s", "model_allreduce_s", "virtual_allreduce_s", "lower_bound_s", "allreduce_bytes", "busbw_GBps", "final_loss"}

func (r *Report) csv() []byte {
	var b bytes.Buffer
	w := csv.NewWriter(&b)
	w.Write(csvHeader)
	g := func(x float64) string { return strconv.FormatFloat(x, 'g', 6, 64) }
	for _, p := range r.Points {
		w.Write([]string{p.Preset, p.Network, p.Ring, strconv.FormatBool(p.Real), strconv.Itoa(p.Workers), g(p.MeasuredTokS), g(p.ProjectedTokS), g(p.Speedup), g(p.Efficiency),
			g(p.MeasuredSpeed), g(p.ComputeS), g(p.AllReduceS), g(p.WaitS), g(p.MeasuredStepS), g(p.ModelARS), g(p.VirtualARS), g(p.LowerBoundS),
			g(p.Bytes), g(p.BusBW / 1e9), g(p.FinalLoss)})
	}
	w.Flush()
	return b.Bytes()
}

// Markdown renders the report as tables a person can read.
func (r *Report) Markdown() string {
	var b bytes.Buffer
	fmt.Fprintf(&b, "# Scaling report\n\nEach point is a %d-step run (the first %d steps left out of the medians). Simulated points (ring mem or nats) run their workers in this process, each computing on one thread of its own and accounted in that thread's CPU time; points over real processes (ring external, marked *real*) are workers started elsewhere, accounted in their wall time. All-reduce time runs from the moment the last rank entered the ring. Projected: the measured compute plus the ring cost model 2(n-1) x latency + 2(n-1)/n x S / bandwidth, i.e. a cluster of N one-core machines on the point's network.\n\n", r.Options.Steps, r.Options.Warmup)
	b.WriteString("| preset | network | ring | workers | measured tok/s | projected tok/s | speedup | efficiency | compute ms | all-reduce ms | model ms | virtual ms | lower bound ms | wait ms | MB/step | busbw GB/s |\n")
	b.WriteString("| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n")
	for _, p := range r.Points {
		ring := p.Ring
		if p.Real {
			ring += " (*real*)"
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %d | %.0f | %.0f | %.2f | %.0f%% | %.1f | %.1f | %.1f | %.1f | %.1f | %.1f | %.2f | %.3f |\n",
			p.Preset, p.Network, ring, p.Workers, p.MeasuredTokS, p.ProjectedTokS, p.Speedup, 100*p.Efficiency, p.ComputeS*1e3,
			p.AllReduceS*1e3, p.ModelARS*1e3, p.VirtualARS*1e3, p.LowerBoundS*1e3, p.WaitS*1e3, p.Bytes/1e6, p.BusBW/1e9)
	}
	b.WriteString("\nVirtual: the ring's own schedule driven through the link model in virtual time (no CPU, no sleeping): what the all-reduce takes on a network that is exactly the model, pipelining of parts included.\n")
	if len(r.Topology) > 0 {
		b.WriteString("\n## Through one NATS server or a cluster\n\n")
		b.WriteString("Through one server the ring is physically a star: the 2(n-1) S bytes all ranks send share the server's throughput A, so the all-reduce takes 2(n-1) S / A and busbw falls as A/n. Through a cluster, one server per node and the ring placed on them, each hop crosses one route: 2(n-1)/n S / B with B the smaller of a link and half a server's throughput, and busbw stays B. Each model is fitted to the measured all-reduces with one rate; the smaller error (RMS of the log deviation, 0.1 is about 10%) says which one the points follow.\n\n")
		b.WriteString("| series | points | one server: A GB/s | error | cluster: B GB/s | error | the points follow |\n| --- | ---: | ---: | ---: | ---: | ---: | --- |\n")
		for _, f := range r.Topology {
			follows := f.Follows
			switch {
			case follows == "":
				follows = "(one worker count: cannot tell)"
			case f.Bound > 2:
				follows = fmt.Sprintf("neither: not bandwidth-bound (%.1fx what one server of %.2f GB/s allows; latency or CPU sets the time); nearer: %s", f.Bound, r.ServerThroughput/1e9, follows)
			case min(f.StarErr, f.ClusterErr) > 0.2:
				follows = "neither fits well; nearer: " + follows
			}
			fmt.Fprintf(&b, "| %s | %d | %.3f | %.2f | %.3f | %.2f | %s |\n", f.Series, f.Points, f.Aggregate/1e9, f.StarErr, f.Link/1e9, f.ClusterErr, follows)
		}
	}
	if len(r.Projection) > 0 {
		net := r.Options.Project
		fmt.Fprintf(&b, "\n## Projection to %d workers on %s (%.0f MB/s per link, %v latency)\n\n", r.Options.ProjectTo, net.Name, net.Bandwidth/1e6, net.Latency)
		b.WriteString("Weak scaling: each worker keeps the share of the global batch it had at the largest measured point, with the compute per token measured at the smallest.")
		if r.ServerThroughput > 0 {
			fmt.Fprintf(&b, " The last two columns are the all-reduce through one NATS server of %.2f GB/s (capped by its node's link) and through a cluster of such servers, one per node.", r.ServerThroughput/1e9)
		}
		b.WriteString("\n\n| workers | tokens/step | compute ms | all-reduce ms | step ms | tokens/s | efficiency | communication share | one server ms | cluster ms |\n| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n")
		dominated := 0
		for _, p := range r.Projection {
			mark := ""
			if p.CommShare >= 0.5 && dominated == 0 {
				dominated = p.Workers
				mark = " **<- communication dominates**"
			}
			star, clus := "-", "-"
			if r.ServerThroughput > 0 {
				star, clus = fmt.Sprintf("%.1f", p.StarAllReduce.Seconds()*1e3), fmt.Sprintf("%.1f", p.ClusterAllReduce.Seconds()*1e3)
			}
			fmt.Fprintf(&b, "| %d | %.0f | %.1f | %.1f | %.1f | %.0f | %.0f%% | %.0f%%%s | %s | %s |\n", p.Workers, p.Tokens, p.Compute.Seconds()*1e3,
				p.AllReduce.Seconds()*1e3, p.Step.Seconds()*1e3, p.TokensPerS, 100*p.Efficiency, 100*p.CommShare, mark, star, clus)
		}
		if dominated == 0 {
			b.WriteString("\nCommunication stays below half of the step up to the largest size.\n")
		}
		fmt.Fprintf(&b, "\n### Overlap and bfloat16 on the wire\n\nThe same steps when the ring overlaps backward (%d buckets that backward, two thirds of the compute, finishes one after another; each bucket's ring starts when it is ready: OverlappedStep), with parts in bfloat16 (`allreduce.wire bf16`: half the bytes), and both. Each bucket pays the ring's latency, so where latency sets the ring's time (small gradients, many workers) overlap loses. klring's runtime overlaps its ring with backward (`allreduce.bucket_bytes`, 256 KiB by default; its buckets are whole rows of the ring's stripes, as many as that size makes): it hands each bucket to one ring as backward finishes it, so the buckets' parts pipeline and the ring's latency is paid once, not once a bucket as in this model, which is an upper bound where latency matters.\n\n", OverlapBuckets)
		b.WriteString("| workers | step ms | efficiency | overlap: step ms | efficiency | bf16: step ms | efficiency | overlap + bf16: step ms | efficiency |\n| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n")
		for _, p := range r.Projection {
			fmt.Fprintf(&b, "| %d | %.1f | %.0f%% | %.1f | %.0f%% | %.1f | %.0f%% | %.1f | %.0f%% |\n", p.Workers, p.Step.Seconds()*1e3, 100*p.Efficiency,
				p.Overlap.Step.Seconds()*1e3, 100*p.Overlap.Efficiency, p.BF16.Step.Seconds()*1e3, 100*p.BF16.Efficiency,
				p.OverlapBF16.Step.Seconds()*1e3, 100*p.OverlapBF16.Efficiency)
		}
	}
	return b.String()
}

func seriesKey(p Point) string {
	k := p.Preset + " / " + p.Network
	if p.Ring != "" && p.Ring != "mem" && p.Ring != p.Network {
		k += " / " + p.Ring
	}
	return k
}

func (r *Report) series() map[string][]Point {
	m := map[string][]Point{}
	for _, p := range r.Points {
		k := seriesKey(p)
		m[k] = append(m[k], p)
	}
	return m
}

func (r *Report) keys() []string {
	var ks []string
	seen := map[string]bool{}
	for _, p := range r.Points {
		k := seriesKey(p)
		if !seen[k] {
			seen[k] = true
			ks = append(ks, k)
		}
	}
	return ks
}

func (r *Report) plotThroughput(path string) error {
	c := charts.New("Throughput against workers", "workers", "tokens / s")
	for i, k := range r.keys() {
		var meas, proj []charts.XY
		for _, pt := range r.series()[k] {
			meas = append(meas, charts.XY{X: float64(pt.Workers), Y: pt.MeasuredTokS})
			proj = append(proj, charts.XY{X: float64(pt.Workers), Y: pt.ProjectedTokS})
		}
		if err := c.Add(charts.Line{Name: k + ": projected, N machines", Points: proj, Color: i, Marks: true}); err != nil {
			return err
		}
		what := ": measured, this machine"
		if pts := r.series()[k]; len(pts) > 0 && pts[0].Real {
			what = ": measured, real processes"
		}
		if err := c.Add(charts.Line{Name: k + what, Points: meas, Color: i, Dashed: true, Marks: true}); err != nil {
			return err
		}
	}
	return c.Save(path)
}

func (r *Report) plotEfficiency(path string) error {
	c := charts.New("Scaling efficiency (projected speedup / workers)", "workers", "efficiency")
	c.P.Y.Min, c.P.Y.Max = 0, 1.1
	for i, k := range r.keys() {
		var xy []charts.XY
		for _, pt := range r.series()[k] {
			xy = append(xy, charts.XY{X: float64(pt.Workers), Y: pt.Efficiency})
		}
		if err := c.Add(charts.Line{Name: k, Points: xy, Color: i, Marks: true}); err != nil {
			return err
		}
	}
	return c.Save(path)
}

func (r *Report) plotBreakdown(path string) error {
	k := r.keys()[0]
	pts := r.series()[k]
	c := charts.New("Time of a step, broken down ("+k+")", "workers", "milliseconds")
	comp, ar, wait := make([]float64, len(pts)), make([]float64, len(pts)), make([]float64, len(pts))
	var names []string
	for i, pt := range pts {
		comp[i], ar[i], wait[i] = pt.ComputeS*1e3, pt.AllReduceS*1e3, pt.WaitS*1e3
		names = append(names, strconv.Itoa(pt.Workers))
	}
	if err := c.Stacked(names, []charts.Bars{{Name: "compute (CPU time of one thread)", Values: comp},
		{Name: "all-reduce", Values: ar}, {Name: "wait (stragglers, contention, protocol)", Values: wait}}); err != nil {
		return err
	}
	return c.Save(path)
}

func (r *Report) plotAllReduce(path string) error {
	c := charts.New("All-reduce time: measured, cost model and lower bound", "workers", "milliseconds")
	for i, k := range r.keys() {
		var meas, model, lb []charts.XY
		for _, pt := range r.series()[k] {
			if pt.Workers < 2 {
				continue
			}
			x := float64(pt.Workers)
			meas = append(meas, charts.XY{X: x, Y: pt.AllReduceS * 1e3})
			model = append(model, charts.XY{X: x, Y: pt.ModelARS * 1e3})
			lb = append(lb, charts.XY{X: x, Y: pt.LowerBoundS * 1e3})
		}
		if len(meas) == 0 {
			continue
		}
		for _, l := range []charts.Line{{Name: k + ": measured", Points: meas, Color: i, Dashed: true, Marks: true},
			{Name: k + ": model", Points: model, Color: i, Marks: true},
			{Name: k + ": lower bound 2(n-1)/n S/B", Points: lb, Color: 7, Dashed: true}} {
			if err := c.Add(l); err != nil {
				return err
			}
		}
	}
	return c.Save(path)
}
