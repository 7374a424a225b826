package cli

import (
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/klring/klring/config"
	"github.com/klring/klring/netem"
	"github.com/klring/klring/scale"
)

func scaleCmd() *cobra.Command {
	var (
		workers   []int
		presets   []string
		networks  []string
		project   string
		o         scale.Options
		projectTo int
		external  bool
		serverGBs float64
	)
	cmd := &cobra.Command{
		Use:   "scale",
		Short: "Run a scaling sweep (in simulation mode, or over workers started elsewhere) and write a report",
		Long: "Run a scaling sweep: one short simulation run per worker count, model preset and network profile, each worker on a thread of its own, " +
			"links shaped by the profile (--ring mem) or the ring through the embedded NATS server, nats.servers of them in a cluster (--ring nats). " +
			"With --external, the runs are served to workers started elsewhere that reach nats.url (docker compose up --scale worker=4): " +
			"each point waits for and uses exactly that many of them. " +
			"Writes scaling.csv, scaling.json, report.md and PNG plots into run.dir; the report fits a single-server and a cluster model to points whose ring went through NATS. " +
			"Network profiles: none, 10GbE, 1GbE, 100MBps, wan, or BANDWIDTH:LATENCY such as 100MB/s:1ms.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, log, err := loadConfig(cmd.Flags())
			if err != nil {
				return err
			}
			if cfg.Run.Dir == "" {
				cfg.Run.Dir = filepath.Join("runs", "scale-"+time.Now().Format("20060102-150405"))
			}
			// The flags' values are taken as given: scale.Options reads 0
			// as its default, which a user who typed 0 did not ask for.
			for _, f := range []struct {
				name string
				v    int
			}{{"steps", o.Steps}, {"warmup", o.Warmup}, {"project-to", projectTo}} {
				if f.v < 1 {
					return fmt.Errorf("%w: --%s %d: want >= 1", config.ErrInvalid, f.name, f.v)
				}
			}
			o.Workers, o.Presets, o.ProjectTo = workers, presets, projectTo
			o.Servers, o.ServerThroughput = cfg.NATS.Servers, serverGBs*1e9
			for _, n := range networks {
				p, err := netem.ParseProfile(n)
				if err != nil {
					return err
				}
				o.Networks = append(o.Networks, p)
			}
			if o.Project, err = netem.ParseProfile(project); err != nil {
				return err
			}
			run := scale.Run
			if external {
				run = scale.RunExternal
			}
			rep, err := run(cmd.Context(), cfg, o, cfg.Run.Dir, log)
			if err != nil {
				return err
			}
			files, err := rep.Write()
			if err != nil {
				return err
			}
			fmt.Fprintln(os.Stdout, rep.Markdown())
			fmt.Fprintf(os.Stdout, "report: %s\ndata:   %s, %s\nplots:  %s, %s, %s, %s\n", files.Markdown, files.CSV, files.JSON,
				files.Throughput, files.Efficiency, files.Breakdown, files.ARP)
			return nil
		},
	}
	withConfigFlags(cmd)
	f := cmd.Flags()
	f.IntSliceVar(&workers, "workers", []int{1, 2, 4, 8}, "worker counts to sweep")
	f.StringSliceVar(&presets, "presets", nil, "model presets to sweep (default: model.preset)")
	f.StringArrayVar(&networks, "network", []string{"1GbE"}, "network profile of the in-process links (repeat the flag to sweep several)")
	f.IntVar(&o.Steps, "steps", 12, "steps of each point")
	f.IntVar(&o.Warmup, "warmup", 2, "first steps of each point left out of the medians (at least 1: the first step warms up)")
	f.StringVar(&project, "project", "1GbE", "network of the projection table")
	f.IntVar(&projectTo, "project-to", 1024, "largest worker count of the projection table")
	f.BoolVar(&external, "external", false, "serve the runs to workers started elsewhere on nats.url instead of simulating them")
	f.StringVar(&o.Ring, "ring", "mem", "simulated ring: mem (in-process links shaped by --network) or nats (through the embedded NATS server, nats.servers of them in a cluster)")
	f.Float64Var(&serverGBs, "server-throughput", 0, "GB/s one NATS server moves in all (natsnet BenchmarkNATSThroughput), for the projection through one server and a cluster; 0: fitted from the points")
	return cmd
}
