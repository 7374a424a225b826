package engine

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	"github.com/klring/klring/kernels"
	"github.com/klring/klring/lm"
	"github.com/klring/klring/loss"
	"github.com/klring/klring/shard"
	"github.com/klring/klring/tokenizer"
)

// EvalRequest names a checkpoint and the data to evaluate it on.
type EvalRequest struct {
	Checkpoint  string
	Data        string // synthetic, text:PATH or tokens:PATH
	Tokenizer   string // of the data; "": the checkpoint's (tokenizer_config.json), else bytes
	CacheDir    string // of tokenized texts; "": the user's cache folder
	All         bool   // every window, not only the held-out ones
	ValFraction float64
	Seed        uint64
	Threads     int
}

// EvalResult is what `coordinator eval --json` prints.
type EvalResult struct {
	Loss         float64  `json:"loss"` // mean cross-entropy, nats/token
	Tokens       int      `json:"tokens"`
	Windows      int      `json:"windows"`
	BitsPerByte  *float64 `json:"bits_per_byte,omitempty"`
	KLToTruth    *float64 `json:"kl_to_truth,omitempty"`
	EntropyFloor *float64 `json:"entropy_floor,omitempty"`
	Checkpoint   string   `json:"checkpoint"`
	Data         string   `json:"data"`
}

// EvaluateCheckpoint computes the mean loss of a checkpoint over the held-out
// windows of a data source (every window with All).
func EvaluateCheckpoint(r EvalRequest) (EvalResult, error) {
	pool := kernels.NewPool(r.Threads)
	model, _, err := lm.LoadCheckpoint(r.Checkpoint, pool)
	if err != nil {
		return EvalResult{}, fmt.Errorf("loading %s: %w", r.Checkpoint, err)
	}
	name := r.Tokenizer
	if name == "" {
		if name, err = ReadTokenizer(r.Checkpoint); err != nil {
			return EvalResult{}, fmt.Errorf("loading %s: %w", r.Checkpoint, err)
		}
	}
	data, err := OpenData(context.Background(), DataRequest{Options: shard.Options{Source: r.Data, Ctx: model.Config.Ctx, ValFraction: r.ValFraction, Seed: r.Seed},
		Tokenizer: name}, r.CacheDir, nil)
	if err != nil {
		return EvalResult{}, fmt.Errorf("data %s: %w", r.Data, err)
	}
	defer data.Close()
	o := Options{Loss: loss.DefaultOptions(), Target: TargetHard, MaxWindows: 8}
	if strings.HasPrefix(r.Data, "text:") || strings.HasPrefix(r.Data, "tokens:") && name != "" && name != tokenizer.NameBytes {
		tok, err := tokenizer.New(orBytes(name))
		if err != nil {
			return EvalResult{}, err
		}
		o.TokenBytes = tok.TokenBytes
	}
	eng, err := New(o, model, data, pool)
	if err != nil {
		return EvalResult{}, err
	}
	windows := data.ValWindows()
	if r.All {
		windows = data.AllWindows()
	}
	if len(windows) == 0 {
		return EvalResult{}, fmt.Errorf("data %s has no held-out windows (use --all, or a val_fraction > 0)", r.Data)
	}
	ev, err := eng.Evaluate(windows)
	if err != nil {
		return EvalResult{}, err
	}
	out := EvalResult{Loss: ev.CE, Tokens: ev.Tokens, Windows: ev.Windows, Checkpoint: r.Checkpoint, Data: r.Data}
	if ev.BPB >= 0 {
		v := ev.BPB
		out.BitsPerByte = &v
	}
	if ev.KL >= 0 {
		kl, fl := ev.KL, ev.Floor
		out.KLToTruth, out.EntropyFloor = &kl, &fl
	}
	return out, nil
}

// SampleRequest names a checkpoint and a prompt.
type SampleRequest struct {
	Checkpoint  string
	Prompt      string
	Tokenizer   string // "": the checkpoint's (tokenizer_config.json); with none, bytes for a vocabulary of 256, else token ids
	Tokens      int
	Temperature float64
	TopK        int
	Seed        uint64
}

// SampleCheckpoint continues a prompt. With a tokenizer (the checkpoint's
// or the request's) the prompt is text, encoded, and the output decoded
// (bytes that are not whole UTF-8 characters stay as they are); without one
// the prompt and the output are token ids, and the output follows a "|".
func SampleCheckpoint(ctx context.Context, r SampleRequest) (string, error) {
	model, _, err := lm.LoadCheckpoint(r.Checkpoint, kernels.NewPool(0))
	if err != nil {
		return "", fmt.Errorf("loading %s: %w", r.Checkpoint, err)
	}
	V := model.Config.Vocab
	name := r.Tokenizer
	if name == "" {
		if name, err = ReadTokenizer(r.Checkpoint); err != nil {
			return "", fmt.Errorf("loading %s: %w", r.Checkpoint, err)
		}
		if name == "" && V == 256 {
			name = tokenizer.NameBytes
		}
	}
	var tok tokenizer.Tokenizer
	var prompt []int32
	if name != "" {
		if tok, err = tokenizer.New(name); err != nil {
			return "", err
		}
		if tok.Vocab() > V {
			return "", fmt.Errorf("the %s tokenizer has %d tokens, the checkpoint's model %d", name, tok.Vocab(), V)
		}
		prompt = tok.Encode([]byte(r.Prompt))
	} else {
		for _, f := range strings.FieldsFunc(r.Prompt, func(c rune) bool { return c == ' ' || c == ',' }) {
			v, err := strconv.Atoi(f)
			if err != nil || v < 0 || v >= V {
				return "", fmt.Errorf("prompt token %q: want an integer in [0, %d) (the checkpoint names no tokenizer)", f, V)
			}
			prompt = append(prompt, int32(v))
		}
	}
	if len(prompt) == 0 {
		return "", fmt.Errorf("empty prompt")
	}
	out, err := model.Sample(ctx, prompt, r.Tokens, lm.SampleOptions{Temperature: r.Temperature, TopK: r.TopK, Seed: r.Seed})
	if err != nil {
		return "", err
	}
	if tok != nil {
		b, err := tok.Decode(append(prompt, out...))
		if err != nil {
			return "", fmt.Errorf("decoding the sample: %w", err)
		}
		return string(b), nil
	}
	parts := make([]string, 0, len(prompt)+len(out)+1)
	for _, t := range prompt {
		parts = append(parts, strconv.Itoa(int(t)))
	}
	parts = append(parts, "|")
	for _, t := range out {
		parts = append(parts, strconv.Itoa(int(t)))
	}
	return strings.Join(parts, " "), nil
}

func orBytes(name string) string {
	if name == "" {
		return tokenizer.NameBytes
	}
	return name
}
