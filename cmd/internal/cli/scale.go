package cli

import (
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

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
	)
	cmd := &cobra.Command{
		Use:   "scale",
		Short: "Run a scaling sweep in simulation mode and write a report",
		Long: "Run a scaling sweep: one short simulation run per worker count, model preset and network profile, each worker on a thread of its own, " +
			"links shaped by the profile. Writes scaling.csv, scaling.json, report.md and PNG plots into run.dir. " +
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
			o.Workers, o.Presets, o.ProjectTo = workers, presets, projectTo
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
			rep, err := scale.Run(cmd.Context(), cfg, o, cfg.Run.Dir, log)
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
	f.IntVar(&o.Warmup, "warmup", 2, "first steps of each point left out of the medians")
	f.StringVar(&project, "project", "1GbE", "network of the projection table")
	f.IntVar(&projectTo, "project-to", 1024, "largest worker count of the projection table")
	return cmd
}
