package cli

import (
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/klring/klring/engine"
	"github.com/klring/klring/kernels"
	"github.com/klring/klring/lm"
	"github.com/klring/klring/shard"
	"github.com/klring/klring/teacherstore"
	"github.com/klring/klring/tokenizer"
)

func teacherDumpCmd() *cobra.Command {
	var (
		teacherDir, data, tok, out, dtype, cacheDir string
		k, batch, threads, ctxLen                   int
		temperature                                 float64
		seed                                        uint64
		verbose                                     bool
	)
	cmd := &cobra.Command{
		Use:   "teacher-dump --teacher DIR --data SOURCE --top-k K --out FILE",
		Short: "Run a teacher over every window of a data source and store its top-k next-token distribution",
		Long: "Run a teacher (a Hugging Face GPT-2 folder) forward over every window of a data source, training and held-out alike, " +
			"and write the k most likely next tokens at every position with their probabilities (at --temperature) into a store " +
			"that training reads with loss.teacher_store instead of running the teacher. Windows are cut at the teacher's context " +
			"(n_positions) unless --ctx is smaller; the student's context must be the store's. The store is written to FILE.partial " +
			"and renamed to FILE once complete and verified (every window's checksum); run the command again on an interrupted output to continue it " +
			"(from its first damaged window, if any). A damaged FILE is not written over: remove it to write the store again.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			switch {
			case teacherDir == "":
				return fmt.Errorf("--teacher is required: a Hugging Face GPT-2 folder (model.safetensors, config.json)")
			case data == "":
				return fmt.Errorf("--data is required: synthetic[:SETTINGS], text:PATH or tokens:PATH")
			case out == "":
				return fmt.Errorf("--out is required: the store to write")
			case k < 1:
				return fmt.Errorf("--top-k = %d: want the number of tokens to keep per position, at least 1", k)
			case !(temperature > 0) || math.IsInf(temperature, 0):
				return fmt.Errorf("--temperature = %v: want a finite number > 0", temperature)
			case batch < 1:
				return fmt.Errorf("--batch = %d: want the windows of a teacher forward pass, at least 1", batch)
			case ctxLen < 0:
				return fmt.Errorf("--ctx = %d: want the tokens of a window, or 0 for the teacher's context", ctxLen)
			case threads < 0:
				return fmt.Errorf("--threads = %d: want the kernel threads, or 0 for every core", threads)
			case tok != "" && !slices.Contains(tokenizer.Names(), tok):
				return fmt.Errorf("--tokenizer %q: want one of %v", tok, tokenizer.Names())
			case tok == tokenizer.NameGPT2 && strings.HasPrefix(data, "synthetic"):
				return fmt.Errorf("--tokenizer %q applies to text:PATH and tokens:PATH sources, not synthetic", tok)
			}
			dt, err := teacherstore.ParseDtype(dtype)
			if err != nil {
				return fmt.Errorf("--dtype: %w", err)
			}
			log := newLogger(cmd.ErrOrStderr(), verbose)
			pool := kernels.NewPool(threads)
			teacher, _, err := lm.LoadCheckpoint(teacherDir, pool)
			if err != nil {
				return fmt.Errorf("--teacher %s: %w", teacherDir, err)
			}
			sha, err := teacherstore.TeacherSHA256(teacherDir)
			if err != nil {
				return fmt.Errorf("--teacher %s: %w", teacherDir, err)
			}
			if k > teacher.Config.Vocab {
				return fmt.Errorf("--top-k = %d: the teacher's vocabulary is %d", k, teacher.Config.Vocab)
			}
			T := teacher.Config.Ctx
			if ctxLen > 0 {
				if ctxLen > T {
					return fmt.Errorf("--ctx = %d: the teacher's context is %d", ctxLen, T)
				}
				T = ctxLen
			}
			teacherTok, err := engine.ReadTokenizer(teacherDir)
			if err != nil {
				return fmt.Errorf("--teacher %s: %w", teacherDir, err)
			}
			switch {
			case tok == "":
				tok = teacherTok
			case teacherTok != "" && tok != teacherTok:
				return fmt.Errorf("--tokenizer %q: the teacher %s was trained with the %q tokenizer (its %s); its distributions over %q ids would mean nothing (leave --tokenizer out, or give %q)",
					tok, teacherDir, teacherTok, engine.TokenizerFile, tok, teacherTok)
			}
			ds, err := engine.OpenData(cmd.Context(), engine.DataRequest{Options: shard.Options{Source: data, Ctx: T, Seed: seed}, Tokenizer: tok}, cacheDir, log)
			if err != nil {
				return fmt.Errorf("--data %s: %w", data, err)
			}
			defer ds.Close()
			if ds.Vocab() > teacher.Config.Vocab {
				what, cached := data, ""
				if tok != "" && !strings.HasPrefix(data, "synthetic") {
					what += " with the " + tok + " tokenizer"
				}
				if src := ds.Source(); src != data {
					cached = " (tokens cached in " + strings.TrimPrefix(src, "tokens:") + ")"
				}
				return fmt.Errorf("--data %s has vocabulary %d, more than the teacher's %d%s", what, ds.Vocab(), teacher.Config.Vocab, cached)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "teacher %s (vocabulary %d, context %d, SHA-256 %s)\n", teacherDir, teacher.Config.Vocab, teacher.Config.Ctx, sha[:16])
			fmt.Fprintf(cmd.OutOrStdout(), "data %s: %d windows of %d tokens\n", data, ds.NumWindows(), T)
			st, err := teacherstore.Dump(cmd.Context(), out, teacher, ds, teacherstore.DumpOptions{
				K: k, Dtype: dt, Temperature: temperature, Batch: batch, TeacherSHA256: sha, Pool: pool,
				Progress: windowProgress(cmd.ErrOrStderr(), log, T),
			})
			if err != nil {
				return err
			}
			printDump(cmd.OutOrStdout(), st)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&teacherDir, "teacher", "", "the teacher: a Hugging Face GPT-2 folder (model.safetensors, config.json)")
	f.StringVar(&data, "data", "", "data source: synthetic[:SETTINGS], text:PATH or tokens:PATH")
	f.StringVar(&tok, "tokenizer", "", "tokenizer of text:PATH and tokens:PATH data: bytes or gpt2 (not gpt2 with synthetic data); default: the teacher's (tokenizer_config.json), else bytes; one other than the teacher's is refused")
	f.IntVar(&k, "top-k", 0, "tokens kept per position (1..the teacher's vocabulary)")
	f.StringVar(&out, "out", "", "the store to write (FILE.partial until it is complete)")
	f.StringVar(&dtype, "dtype", "float32", "type of the stored probabilities: float32 or float16")
	f.Float64Var(&temperature, "temperature", 1, "the teacher's softmax temperature (recorded in the store; training's loss.teacher_temperature must match)")
	f.IntVar(&batch, "batch", 8, "windows per teacher forward pass (at least 1)")
	f.IntVar(&threads, "threads", 0, "kernel threads; 0 uses every core")
	f.IntVar(&ctxLen, "ctx", 0, "tokens per window; 0: the teacher's context (n_positions)")
	f.Uint64Var(&seed, "data.seed", 1, "seed of the synthetic source (other sources do not depend on it)")
	f.StringVar(&cacheDir, "data.cache_dir", "", "folder of tokenized texts; empty: the user's cache folder")
	f.BoolVarP(&verbose, "verbose", "v", false, "log debug messages")
	return cmd
}

// windowProgress shows a progress bar on a terminal and a log line every
// tenth of the windows otherwise.
func windowProgress(w io.Writer, log *slog.Logger, T int) func(done, total int) {
	start, first := time.Now(), -1
	rate := func(done int) float64 {
		return float64((done-first)*T) / max(time.Since(start).Seconds(), 1e-9)
	}
	if f, ok := w.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		return func(done, total int) {
			if first < 0 {
				first, start = done-min(done, 1), time.Now()
			}
			const width = 30
			frac := float64(done) / float64(max(total, 1))
			fill := int(frac * width)
			r := rate(done)
			eta := time.Duration(float64(total-done) * float64(T) / max(r, 1e-9) * float64(time.Second)).Round(time.Second)
			fmt.Fprintf(w, "\r[%s%s] %d/%d windows %.0f tok/s eta %s   ", strings.Repeat("=", fill), strings.Repeat(" ", width-fill), done, total, r, eta)
			if done >= total {
				fmt.Fprintln(w)
			}
		}
	}
	var next int
	return func(done, total int) {
		if first < 0 {
			first, next = done-min(done, 1), done
		}
		if done < next && done < total {
			return
		}
		log.Info("teacher-dump", "windows", done, "of", total, "tokens_per_s", int(rate(done)))
		next = done + max(total/10, 1)
	}
}

func printDump(w io.Writer, st teacherstore.DumpStats) {
	h := st.Header
	switch {
	case st.Complete:
		fmt.Fprintf(w, "\nteacher store %s was already complete\n", st.Path)
	case st.Dropped > 0:
		again := "it was"
		if st.Dropped > 1 {
			again = fmt.Sprintf("it and the %d after it that run recorded were", st.Dropped-1)
		}
		fmt.Fprintf(w, "\nteacher store %s written (continued after %d windows: window %d, recorded by the interrupted run, was cut off or damaged, so %s written again)\n",
			st.Path, st.Resumed, st.Resumed, again)
	case st.Resumed > 0:
		fmt.Fprintf(w, "\nteacher store %s written (continued after %d windows)\n", st.Path, st.Resumed)
	default:
		fmt.Fprintf(w, "\nteacher store %s written\n", st.Path)
	}
	fmt.Fprintf(w, "  windows          %d of %d tokens (%d tokens)\n", st.Windows, h.Ctx, st.Tokens)
	fmt.Fprintf(w, "  top k            %d of %d, %s, temperature %g\n", h.K, h.Vocab, h.Dtype, h.Temperature)
	if st.NewTokens > 0 {
		fmt.Fprintf(w, "  computed         %d tokens in %.1f s (%.0f tokens/s)\n", st.NewTokens, st.Seconds, st.TokensPerS)
	}
	fmt.Fprintf(w, "  mean kept mass   %.6f (of the teacher's probability, held by its top %d)\n", st.MeanKept, h.K)
	fmt.Fprintf(w, "  bytes per token  %.1f (%.1f in the records, the rest is the header and checksums)\n", st.BytesPerToken, float64(h.RecordBytes())/float64(h.Ctx))
	fmt.Fprintf(w, "  file size        %d bytes (%.1f MiB)\n", st.FileBytes, float64(st.FileBytes)/(1<<20))
}
