package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/klring/klring/cluster"
	"github.com/klring/klring/outputs"
)

// chaosDefaults are the timings coordinator chaos runs with unless a flag,
// the environment or the file sets them: short enough that thirty faults
// fit in a few minutes.
var chaosDefaults = map[string]string{
	"cluster.heartbeat":           "200ms",
	"cluster.step_deadline":       "3s",
	"allreduce.deadline":          "2s",
	"cluster.coordinator_timeout": "2m",
	"run.checkpoint_every":        "10",
	"run.eval_every":              "0",
	"train.steps":                 "120",
}

func chaosCmd() *cobra.Command {
	var faults int
	var seed uint64
	var kinds []string
	cmd := &cobra.Command{
		Use:   "chaos",
		Short: "A simulation run with random faults, checked against the same run without them",
		Long: "Run the job in simulation mode twice: without faults, then with --faults faults drawn from --seed " +
			"(workers killed, frozen or leaving, ring parts lost or damaged, the NATS server and the coordinator restarted), " +
			"and check the outcome: every step committed once and every window once per data epoch (coordinator verify), " +
			"and the final loss equal to the run without faults within 1e-3. Unless set, it runs 120 steps with a 200ms " +
			"heartbeat, a 3s step deadline and a checkpoint every 10 steps. Exits 1 when the check fails.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			setUnset(cmd.Flags(), chaosDefaults)
			cfg, log, err := loadConfig(cmd.Flags())
			if err != nil {
				return err
			}
			opts := cluster.ChaosOptions{Faults: faults, Seed: seed, Kinds: kinds}
			// Bad options stop here, before anything is printed or written:
			// an earlier chaos.json in run.dir stays as it was.
			if err := opts.Validate(cfg.Train.Steps); err != nil {
				return err
			}
			if cfg.Run.Dir == "" {
				cfg.Run.Dir = filepath.Join("runs", cfg.Job+"-chaos-"+time.Now().Format("20060102-150405"))
			}
			rep, err := cluster.Chaos(cmd.Context(), cfg, opts, log)
			printChaos(os.Stdout, rep)
			if b, jerr := json.MarshalIndent(rep, "", "  "); jerr == nil {
				outputs.WriteFileAtomic(filepath.Join(cfg.Run.Dir, "chaos.json"), append(b, '\n'))
			}
			return err
		},
	}
	withConfigFlags(cmd)
	cmd.Flags().IntVar(&faults, "faults", 10, "faults to inject, spread over the run")
	cmd.Flags().Uint64Var(&seed, "seed", 1, "seed of which faults, where and when")
	cmd.Flags().StringSliceVar(&kinds, "kinds", nil, "fault kinds to draw from (default all: "+strings.Join(cluster.FaultKinds(), ",")+")")
	return cmd
}

// setUnset sets each flag of defaults that the user did not set on the
// command line or in the environment.
func setUnset(fs *pflag.FlagSet, defaults map[string]string) {
	for k, v := range defaults {
		env := "KLRING_" + strings.ToUpper(strings.ReplaceAll(k, ".", "_"))
		if f := fs.Lookup(k); f != nil && !f.Changed && os.Getenv(env) == "" {
			fs.Set(k, v)
		}
	}
}

func printChaos(w io.Writer, rep cluster.ChaosReport) {
	fmt.Fprintf(w, "\n%-10s %-12s %-7s %-8s %s\n", "after step", "fault", "target", "retries", "aborted attempts")
	for _, f := range rep.Faults {
		var ab []string
		for k, n := range f.Aborts {
			ab = append(ab, fmt.Sprintf("%s %d", k, n))
		}
		sort.Strings(ab)
		target := f.Target
		if f.Kind == cluster.FaultNATSRestart || f.Kind == cluster.FaultCoordinator {
			target = "-"
		}
		fmt.Fprintf(w, "%-10d %-12s %-7s %-8d %s\n", f.Step, f.Kind, target, f.Retries, strings.Join(ab, ", "))
	}
	fmt.Fprintf(w, "\n%d faults in %d steps, %.0f s\n", len(rep.Faults), rep.Steps, rep.Seconds)
	fmt.Fprintf(w, "  ledger: %d steps committed once each, %d window contributions, every data epoch visits each window once\n", rep.Verify.Steps, rep.Verify.Windows)
	fmt.Fprintf(w, "  final loss %.6f with faults, %.6f without (difference %.2g)\n", rep.Loss, rep.CleanLoss, rep.Loss-rep.CleanLoss)
}
