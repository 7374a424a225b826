package cli

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/klring/klring/shard"
	"github.com/klring/klring/tokenizer"
)

func tokenizeCmd() *cobra.Command {
	var data, name, out, format string
	var verbose, force bool
	cmd := &cobra.Command{
		Use:   "tokenize --data text:PATH --tokenizer gpt2 --out FILE.bin",
		Short: "Tokenize a text file into a token file (llm.c's or nanoGPT's layout)",
		Long: "Tokenize a text file into a token file that the tokens:PATH source reads: exactly the text's ids, " +
			"no end-of-text or beginning token added. --format llmc (default) writes llm.c's .bin (a 1024-byte header, " +
			"then uint16 ids), nanogpt nanoGPT's headerless uint16 train.bin. Tokenizers: " + strings.Join(tokenizer.Names(), ", ") + ".",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			path, ok := strings.CutPrefix(data, "text:")
			if !ok || path == "" {
				return fmt.Errorf("--data %q: want text:PATH, the text file to tokenize", data)
			}
			if out == "" {
				return fmt.Errorf("--out is required: the token file to write")
			}
			f, err := shard.ParseTokenFormat(format)
			if err != nil {
				return fmt.Errorf("--format: %w", err)
			}
			tok, err := tokenizer.New(name)
			if err != nil {
				return fmt.Errorf("--tokenizer: %w", err)
			}
			if same(path, out) {
				return fmt.Errorf("--out %s is the text itself", out)
			}
			if err := checkTokenOut(out, force); err != nil {
				return err
			}
			log := newLogger(cmd.ErrOrStderr(), verbose)
			enc, err := tokenizer.EncodeFile(cmd.Context(), path, tok, tokenizer.FileOptions{
				Log: log, Progress: bytesProgress(cmd.ErrOrStderr(), log),
			})
			if err != nil {
				return err
			}
			if len(enc.IDs) == 0 {
				return fmt.Errorf("%s is empty: no tokens to write", path)
			}
			if err := shard.WriteTokenFile(out, f, enc.IDs); err != nil {
				return fmt.Errorf("--out: %w", err)
			}
			st, err := os.Stat(out)
			if err != nil {
				return err
			}
			w := cmd.OutOrStdout()
			fmt.Fprintf(w, "tokenized %s with %s (vocabulary %d)\n", path, tok.Name(), tok.Vocab())
			fmt.Fprintf(w, "  tokens        %d\n", len(enc.IDs))
			fmt.Fprintf(w, "  bytes         %d\n", enc.Bytes)
			fmt.Fprintf(w, "  bytes/token   %.3f\n", float64(enc.Bytes)/float64(len(enc.IDs)))
			fmt.Fprintf(w, "  output        %s (%s, %d bytes)\n", out, f, st.Size())
			return nil
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&data, "data", "", "the text to tokenize: text:PATH")
	fl.StringVar(&name, "tokenizer", tokenizer.NameGPT2, "tokenizer: "+strings.Join(tokenizer.Names(), ", "))
	fl.StringVar(&out, "out", "", "token file to write; an existing llm.c token file is replaced (atomically), any other existing file only with --force")
	fl.BoolVar(&force, "force", false, "replace an existing --out that is not an llm.c token file: a nanoGPT token file, having no header, "+
		"cannot be told from other data (a checkpoint's model.safetensors, say)")
	fl.StringVar(&format, "format", string(shard.LLMC), "token file layout: llmc or nanogpt")
	fl.BoolVarP(&verbose, "verbose", "v", false, "log debug messages")
	return cmd
}

// checkTokenOut reports, before any tokenizing, why the token file out
// cannot be written: its folder is missing, not a folder or not writable,
// or out exists and is a folder, or a file other than an llm.c token file
// while force is false.
func checkTokenOut(out string, force bool) error {
	dir := filepath.Dir(out)
	st, err := os.Stat(dir)
	switch {
	case err != nil:
		return fmt.Errorf("--out %s: its folder %s: %w", out, dir, pathErr(err))
	case !st.IsDir():
		return fmt.Errorf("--out %s: %s is not a folder", out, dir)
	}
	probe, err := os.CreateTemp(dir, "."+filepath.Base(out)+".probe-*")
	if err != nil {
		return fmt.Errorf("--out %s: cannot create files in its folder %s: %w", out, dir, pathErr(err))
	}
	probe.Close()
	os.Remove(probe.Name())
	st, err = os.Stat(out)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil
	case err != nil:
		return fmt.Errorf("--out %s: %w", out, pathErr(err))
	case st.IsDir():
		return fmt.Errorf("--out %s is a folder", out)
	case force:
		return nil
	}
	ok, err := isLLMCFile(out)
	if err != nil {
		return fmt.Errorf("--out %s: %w", out, pathErr(err))
	}
	if !ok {
		return fmt.Errorf("--out %s exists and is not an llm.c token file; give --force to replace it", out)
	}
	return nil
}

// isLLMCFile says whether the file at path starts with llm.c's magic.
func isLLMCFile(path string) (bool, error) {
	f, err := os.Open(path)
	if err != nil {
		return false, err
	}
	defer f.Close()
	var b [4]byte
	n, err := io.ReadFull(f, b[:])
	if err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) {
		return false, err
	}
	return shard.IsLLMC(b[:n]), nil
}

// pathErr is err without the path of an *fs.PathError, for messages that
// name the path themselves.
func pathErr(err error) error {
	if pe, ok := errors.AsType[*fs.PathError](err); ok {
		return pe.Err
	}
	return err
}

// same says whether paths a and b name one existing file.
func same(a, b string) bool {
	sa, errA := os.Stat(a)
	sb, errB := os.Stat(b)
	return errA == nil && errB == nil && os.SameFile(sa, sb)
}

// bytesProgress shows a progress bar on a terminal and a log line every
// tenth of the text otherwise.
func bytesProgress(w io.Writer, log *slog.Logger) func(done, total int64) {
	if f, ok := w.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		start := time.Now()
		return func(done, total int64) {
			const width = 30
			fill := int(float64(done) / float64(max(total, 1)) * width)
			rate := float64(done) / 1e6 / max(time.Since(start).Seconds(), 1e-9)
			fmt.Fprintf(w, "\r[%s%s] %.1f/%.1f MB %.1f MB/s   ", strings.Repeat("=", fill), strings.Repeat(" ", width-fill),
				float64(done)/1e6, float64(total)/1e6, rate)
			if done >= total {
				fmt.Fprintln(w)
			}
		}
	}
	var next int64
	return func(done, total int64) {
		if done < next && done < total {
			return
		}
		log.Info("tokenizing", "bytes", done, "of", total)
		next = done + total/10
	}
}
