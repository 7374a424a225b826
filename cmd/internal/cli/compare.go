package cli

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/klring/klring/cluster"
	"github.com/klring/klring/compare"
	"github.com/klring/klring/config"
	"github.com/klring/klring/outputs"
)

func compareCmd() *cobra.Command {
	var (
		varies []string
		cases  []string
		steps  int
	)
	cmd := &cobra.Command{
		Use:   "compare (--vary KEY=a,b[,...] | --case NAME:KEY=V[;KEY=V]) ... [--steps N]",
		Short: "Train the same budget under several settings in simulation mode and compare them",
		Long: "Train the same budget under every combination of the varied keys (the rest of the configuration from flags, " +
			"KLRING_* variables and --config, as for sim), one simulation after the other, each in its own folder under run.dir, " +
			"with held-out evaluations every train.steps/20 steps (or run.eval_every when given). Every setting is checked before " +
			"anything runs (its values, that it can train to a finite loss, and that the files it names open), and run.dir must not " +
			"hold an earlier comparison (compare.json, compare.csv or a setting's run folder): compare neither resumes nor replaces one. Writes compare.csv, compare.json " +
			"and plots against tokens (compare_kl.png: exact KL to the synthetic truth; compare_ce.png: cross-entropy; " +
			"compare_entropy.png: the model's entropy) into run.dir, and prints a table. Example: " +
			"coordinator compare --vary loss.direction=forward,reverse,jsd --loss.label_smoothing 0.01 --steps 200",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			fs := cmd.Flags()
			var vary []compare.Vary
			for _, s := range varies {
				v, err := compare.ParseVary(s)
				if err != nil {
					return err
				}
				vary = append(vary, v)
			}
			if len(cases) > 0 {
				v, err := compare.ParseCases(cases)
				if err != nil {
					return err
				}
				vary = append([]compare.Vary{v}, vary...)
			}
			// The shared flags are checked with each setting (Plan), not
			// alone: --loss.beta 0.3 with --vary loss.direction=jsd is fine.
			base, err := config.Decode(fs)
			if err != nil {
				return err
			}
			verbose, _ := fs.GetBool("verbose")
			log := newLogger(os.Stderr, verbose)
			if base.Run.Dir == "" {
				base.Run.Dir = filepath.Join("runs", "compare-"+time.Now().Format("20060102-150405"))
			}
			load := compare.FlagLoader(fs, "run.dir")
			if steps > 0 {
				inner := load
				load = func(set [][2]string) (config.Config, error) {
					return inner(append([][2]string{{"train.steps", fmt.Sprint(steps)}}, set...))
				}
			} else if steps < 0 {
				return fmt.Errorf("--steps = %d: want a number of steps > 0 (0: train.steps)", steps)
			}
			evalEvery := 0
			if fs.Changed("run.eval_every") {
				evalEvery = base.Run.EvalEvery
			}
			settings, err := compare.Plan(vary, load, base.Run.Dir, evalEvery)
			if err != nil {
				return err
			}
			runLog := log
			if !verbose {
				runLog = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
			}
			res, err := compare.Run(cmd.Context(), vary, settings, compare.Options{
				Dir: base.Run.Dir, Log: runLog,
				Simulate: func(ctx context.Context, cfg config.Config, l *slog.Logger, p func(outputs.StepMetrics)) (outputs.Summary, error) {
					return cluster.Simulate(ctx, cfg, l, p)
				},
				Check: func(cfg config.Config) error { return cluster.CheckJob(cfg, runLog) },
				Progress: func(i int, s compare.Setting) func(outputs.StepMetrics) {
					fmt.Fprintf(cmd.ErrOrStderr(), "[%d/%d] %s (%d steps, run.dir %s)\n", i+1, len(settings), s.Name, s.Config.Train.Steps, s.Config.Run.Dir)
					return compareProgress(cmd.ErrOrStderr(), log, s.Config.Train.Steps)
				},
			})
			if err != nil {
				return err
			}
			printCompare(cmd.OutOrStdout(), res)
			return nil
		},
	}
	withConfigFlags(cmd)
	cmd.Flags().StringArrayVar(&varies, "vary", nil, "KEY=a,b,...: a configuration key and its values to compare (repeat for a grid)")
	cmd.Flags().StringArrayVar(&cases, "case", nil, "NAME:KEY=V[;KEY=V...]: a named setting of several keys (repeat for each; combined with --vary as a grid)")
	cmd.Flags().IntVar(&steps, "steps", 0, "optimizer steps of every run (sets train.steps; 0: train.steps)")
	return cmd
}

// compareProgress is a run's progress bar on a terminal, log lines
// otherwise.
func compareProgress(w io.Writer, log *slog.Logger, steps int) func(outputs.StepMetrics) {
	if f, ok := w.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		return ProgressBar(w, steps)
	}
	return ProgressLog(log, steps)
}

func printCompare(w io.Writer, res compare.Result) {
	width := len("setting")
	for _, r := range res.Rows {
		width = max(width, len(r.Setting))
	}
	opt := func(p *float64) string {
		if p == nil {
			return "-"
		}
		return fmt.Sprintf("%.4f", *p)
	}
	fmt.Fprintf(w, "\n%-*s  %12s  %13s  %9s  %10s  %9s\n", width, "setting", "KL to truth", "cross-entropy", "entropy", "sample KL", "tokens/s")
	for _, r := range res.Rows {
		fmt.Fprintf(w, "%-*s  %12s  %13.4f  %9.4f  %10s  %9.0f\n", width, r.Setting, opt(r.KL), r.CE, r.Entropy, opt(r.SampleKL), r.TokensPerS)
	}
	if len(res.Rows) > 0 && res.Rows[0].Floor != nil {
		fmt.Fprintf(w, "(held-out, nats/token; the entropy floor of the data is %.4f; sample KL: KL(model || truth) on the model's own samples, run.sample_kl_windows)\n", *res.Rows[0].Floor)
	}
	fmt.Fprintf(w, "\n  table  %s\n  data   %s\n  plots  %s\n", res.CSV, res.JSON, strings.Join(res.Plots, "\n         "))
}
