// Package cli builds the cobra commands of cmd/coordinator and cmd/worker:
// flags -> config -> the cluster layer. It holds no training logic.
package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"golang.org/x/term"

	"github.com/klring/klring/cluster"
	"github.com/klring/klring/config"
	"github.com/klring/klring/engine"
	"github.com/klring/klring/outputs"
)

// keyHelp lists every configuration key for --help.
func keyHelp() string {
	var b strings.Builder
	b.WriteString("\n\nConfiguration keys (flag --KEY, environment KLRING_KEY with dots as underscores, or YAML in --config FILE):\n")
	for _, k := range config.Keys() {
		fmt.Fprintf(&b, "  %-24s %v\n", k.Name, k.Usage)
	}
	return b.String()
}

func newLogger(w io.Writer, verbose bool) *slog.Logger {
	lvl := slog.LevelInfo
	if verbose {
		lvl = slog.LevelDebug
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: lvl}))
}

func withConfigFlags(cmd *cobra.Command) {
	config.AddFlags(cmd.Flags())
	cmd.Flags().BoolP("verbose", "v", false, "log debug messages")
	cmd.Long += keyHelp()
}

func loadConfig(fs *pflag.FlagSet) (config.Config, *slog.Logger, error) {
	cfg, err := config.Load(fs)
	verbose, _ := fs.GetBool("verbose")
	return cfg, newLogger(os.Stderr, verbose), err
}

// Coordinator returns the coordinator command tree.
func Coordinator() *cobra.Command {
	root := &cobra.Command{
		Use:           "coordinator",
		Short:         "Serve, simulate, evaluate and sample klring training jobs",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(runCmd(), simCmd(), evalCmd(), sampleCmd(), scaleCmd(), tokenizeCmd(), certsCmd(), verifyCmd(), chaosCmd(), teacherDumpCmd(), compareCmd())
	return root
}

// trainCmd is a command that trains: config -> run -> summary.
func trainCmd(use, short, long string, run func(context.Context, config.Config, *slog.Logger, func(outputs.StepMetrics)) (cluster.Summary, error)) *cobra.Command {
	cmd := &cobra.Command{
		Use:   use,
		Short: short,
		Long:  long,
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, log, err := loadConfig(cmd.Flags())
			if err != nil {
				return err
			}
			tuneGC()
			if path, _ := cmd.Flags().GetString("cpuprofile"); path != "" {
				stop, err := startCPUProfile(path)
				if err != nil {
					return err
				}
				defer stop()
			}
			sum, err := run(cmd.Context(), cfg, log, progressFor(os.Stderr, cfg, log))
			if path, _ := cmd.Flags().GetString("memprofile"); path != "" {
				if perr := writeHeapProfile(path); perr != nil {
					log.Error("--memprofile", "err", perr)
				}
			}
			if err != nil {
				return err
			}
			printSummary(os.Stdout, sum, cfg.Train.Steps)
			return nil
		},
	}
	withConfigFlags(cmd)
	cmd.Flags().String("cpuprofile", "", "write a CPU profile of the run to this file (go tool pprof)")
	cmd.Flags().String("memprofile", "", "write a heap profile (what the run allocated) to this file at its end (go tool pprof)")
	return cmd
}

// tuneGC collects garbage when the heap has grown by a tenth over what is
// live (Go's default waits for it to double), unless GOGC says otherwise. A
// training process's live heap is mostly a few large buffers without
// pointers (parameters, moments, activations), which a collection does not
// scan, while its garbage is the messages of every step: a collection is
// cheap (about 3% of the main job's CPU at this setting, 1% at 25) and frequent ones
// keep the resident memory near what is live (the main job's peak: 390 MB
// at Go's default, 299 MB at GOGC 25; with micro-batches of 2 windows,
// 256 MB at 25 and 233 MB at 10).
func tuneGC() {
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(10)
	}
}

// writeHeapProfile writes the heap profile of the process to path.
func writeHeapProfile(path string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	runtime.GC()
	return pprof.Lookup("allocs").WriteTo(f, 0)
}

// startCPUProfile profiles the process into path until stop is called.
func startCPUProfile(path string) (stop func(), err error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("--cpuprofile: %w", err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("--cpuprofile: %w", err)
	}
	return func() { pprof.StopCPUProfile(); f.Close() }, nil
}

func runCmd() *cobra.Command {
	return trainCmd("run", "Serve one training job on nats.url",
		"Serve one training job on nats.url: admit workers, plan steps, apply every update to the master copy, checkpoint, evaluate. With a run.dir that holds checkpoints, resume from the newest.",
		func(ctx context.Context, cfg config.Config, log *slog.Logger, progress func(outputs.StepMetrics)) (cluster.Summary, error) {
			if cfg.Run.Dir == "" {
				cfg.Run.Dir = "runs/" + cfg.Job
			}
			return cluster.Serve(ctx, cfg, log, progress)
		})
}

func simCmd() *cobra.Command {
	return trainCmd("sim", "Run a whole job in one process: embedded NATS, the coordinator and cluster.workers workers",
		"Run a whole job in one process: an embedded NATS server on a free loopback port, the coordinator and cluster.workers workers (default 4), on the default synthetic data and the tiny model.",
		cluster.Simulate)
}

func evalCmd() *cobra.Command {
	var ckpt, data, tok string
	var all, asJSON bool
	var valFraction float64
	var seed uint64
	cmd := &cobra.Command{
		Use:   "eval --checkpoint DIR --data SOURCE",
		Short: "Mean loss of a checkpoint over held-out windows (or every window with --all)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if ckpt == "" {
				return fmt.Errorf("--checkpoint is required")
			}
			if !(valFraction >= 0 && valFraction <= 0.5) {
				return fmt.Errorf("%w: --data.val_fraction %v: want [0, 0.5], as in training", config.ErrInvalid, valFraction)
			}
			if tok != "" && strings.HasPrefix(data, "synthetic") {
				return fmt.Errorf("%w: --tokenizer %s: applies to text:PATH and tokens:PATH data, not %s", config.ErrInvalid, tok, data)
			}
			res, err := engine.EvaluateCheckpoint(engine.EvalRequest{Checkpoint: ckpt, Data: data, Tokenizer: tok, All: all, ValFraction: valFraction, Seed: seed})
			if err != nil {
				return err
			}
			if asJSON {
				return json.NewEncoder(os.Stdout).Encode(res)
			}
			fmt.Printf("loss %.6f nats/token over %d tokens (%d windows)\n", res.Loss, res.Tokens, res.Windows)
			if res.BitsPerByte != nil {
				fmt.Printf("%.6f bits per byte of text\n", *res.BitsPerByte)
			}
			if res.KLToTruth != nil {
				fmt.Printf("KL to the true distribution %.6f, entropy floor %.6f\n", *res.KLToTruth, *res.EntropyFloor)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&ckpt, "checkpoint", "", "checkpoint folder (model.safetensors, config.json)")
	cmd.Flags().StringVar(&data, "data", "synthetic", "data source: synthetic, text:PATH or tokens:PATH")
	cmd.Flags().StringVar(&tok, "tokenizer", "", "tokenizer of the data: bytes or gpt2; default: the checkpoint's")
	cmd.Flags().BoolVar(&all, "all", false, "evaluate every window, not only the held-out ones")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print one JSON object")
	cmd.Flags().Float64Var(&valFraction, "data.val_fraction", 0.05, "held-out fraction, as in training")
	cmd.Flags().Uint64Var(&seed, "data.seed", 1, "data seed, as in training")
	return cmd
}

func sampleCmd() *cobra.Command {
	var req engine.SampleRequest
	cmd := &cobra.Command{
		Use:   "sample --checkpoint DIR --prompt TEXT",
		Short: "Continue a prompt from a checkpoint",
		Long:  "Continue a prompt from a checkpoint. With a tokenizer (the checkpoint's tokenizer_config.json, or --tokenizer) the prompt is text and the output is decoded; a checkpoint without one and a vocabulary of 256 uses bytes; otherwise the prompt is a list of token ids separated by spaces or commas.",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if req.Checkpoint == "" {
				return fmt.Errorf("--checkpoint is required")
			}
			out, err := engine.SampleCheckpoint(cmd.Context(), req)
			if err != nil {
				return err
			}
			fmt.Println(out)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&req.Checkpoint, "checkpoint", "", "checkpoint folder")
	f.StringVar(&req.Prompt, "prompt", "", "prompt: text (with the checkpoint's tokenizer) or token ids (without one)")
	f.StringVar(&req.Tokenizer, "tokenizer", "", "bytes or gpt2; default: the checkpoint's (tokenizer_config.json)")
	f.IntVar(&req.Tokens, "tokens", 64, "tokens to generate (at most 1048576)")
	f.Float64Var(&req.Temperature, "temperature", 1.0, "sampling temperature (>= 0; 0: greedy, always the most likely token)")
	f.IntVar(&req.TopK, "top-k", 0, "sample among the k most likely tokens; 0: all")
	f.Uint64Var(&req.Seed, "seed", 1, "sampling seed")
	return cmd
}

// Worker returns the worker command.
func Worker() *cobra.Command {
	var id string
	cmd := &cobra.Command{
		Use:           "worker",
		Short:         "Join the job on nats.url and train until it ends",
		Long:          "Join the job on nats.url and train until it ends. The worker waits for the server and the coordinator; SIGTERM leaves at a step boundary.",
		Args:          cobra.NoArgs,
		SilenceUsage:  true,
		SilenceErrors: true,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, log, err := loadConfig(cmd.Flags())
			if err != nil {
				return err
			}
			return cluster.Work(cmd.Context(), cfg, id, log)
		},
	}
	withConfigFlags(cmd)
	cmd.Flags().StringVar(&id, "id", "", "worker name, unique within the job (default: host name and process id)")
	return cmd
}

// progressFor shows a progress bar on a terminal and plain log lines otherwise.
func progressFor(w *os.File, cfg config.Config, log *slog.Logger) func(outputs.StepMetrics) {
	if term.IsTerminal(int(w.Fd())) {
		return ProgressBar(w, cfg.Train.Steps)
	}
	return ProgressLog(log, cfg.Train.Steps)
}

// printSummary prints what a run did; steps is train.steps, which a run
// stopped on request (SIGINT, SIGTERM) did not reach.
func printSummary(w io.Writer, s cluster.Summary, steps int) {
	if s.Stopped {
		fmt.Fprintf(w, "\nklring run stopped at step %d of %d, checkpointed: run the same command with --run.dir %s to resume\n", s.Steps, steps, s.RunDir)
		fmt.Fprintf(w, "  %d tokens so far; this part ran %.1f s at %.0f tokens/s\n", s.Tokens, s.Seconds, s.TokensPerS)
	} else if s.ResumedFrom > 0 && s.Steps <= s.ResumedFrom {
		fmt.Fprintf(w, "\nklring run finished: it had reached step %d of %d already (%d tokens); nothing was trained, the final evaluation is below\n", s.Steps, steps, s.Tokens)
	} else if s.ResumedFrom > 0 {
		fmt.Fprintf(w, "\nklring run finished: %d steps, %d tokens in all; resumed at step %d, this part ran %d steps in %.1f s at %.0f tokens/s\n",
			s.Steps, s.Tokens, s.ResumedFrom, s.Steps-s.ResumedFrom, s.Seconds, s.TokensPerS)
	} else {
		fmt.Fprintf(w, "\nklring run finished: %d steps, %d tokens in %.1f s (%.0f tokens/s)\n", s.Steps, s.Tokens, s.Seconds, s.TokensPerS)
	}
	fmt.Fprintf(w, "  train loss          %.4f nats/token (last step)\n", s.TrainLoss)
	fmt.Fprintf(w, "  held-out loss       %.4f nats/token (cross-entropy)\n", s.ValLoss)
	if s.ValBPB > 0 {
		fmt.Fprintf(w, "  held-out bits/byte  %.4f (the same loss per byte of text)\n", s.ValBPB)
	}
	if s.ValTeacherKL != nil {
		fmt.Fprintf(w, "  KL from the teacher %.4f nats/token (held-out, KL(teacher || student))\n", *s.ValTeacherKL)
	}
	if s.TeacherKLToTruth != nil {
		fmt.Fprintf(w, "  teacher KL to truth %.4f nats/token (exact, held-out; the student's is below)\n", *s.TeacherKLToTruth)
	}
	if s.EntropyFloor >= 0 {
		fmt.Fprintf(w, "  entropy floor       %.4f nats/token (no model can do better)\n", s.EntropyFloor)
		fmt.Fprintf(w, "  KL to the truth     %.4f nats/token (exact, held-out)\n", s.ValKL)
		fmt.Fprintf(w, "  gap to the floor    %.4f nats/token\n", s.ValLoss-s.EntropyFloor)
	}
	if s.PeakGFLOPs > 0 {
		fmt.Fprintf(w, "  MFU                 %.1f%% of %.0f GFLOP/s (model FLOPs over the whole run)\n", 100*s.MFU, s.PeakGFLOPs)
	}
	if s.Aborts > 0 {
		fmt.Fprintf(w, "  aborted attempts    %d (retried)\n", s.Aborts)
	}
	fmt.Fprintf(w, "  checkpoint          %s\n", s.Checkpoint)
	fmt.Fprintf(w, "  metrics             %s\n", s.Metrics)
	fmt.Fprintf(w, "  plot                %s\n", s.Plot)
}
