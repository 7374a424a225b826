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
)

// EvalRequest names a checkpoint and the data to evaluate it on.
type EvalRequest struct {
	Checkpoint  string
	Data        string // synthetic, text:PATH or tokens:PATH
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
	data, err := shard.Open(shard.Options{Source: r.Data, Ctx: model.Config.Ctx, ValFraction: r.ValFraction, Seed: r.Seed})
	if err != nil {
		return EvalResult{}, fmt.Errorf("data %s: %w", r.Data, err)
	}
	defer data.Close()
	eng, err := New(Options{Loss: loss.DefaultOptions(), Target: TargetHard, MaxWindows: 8}, model, data, pool)
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
	Tokens      int
	Temperature float64
	TopK        int
	Seed        uint64
}

// SampleCheckpoint continues a prompt. With a byte-level vocabulary (256) the
// prompt and the output are text; otherwise token ids.
func SampleCheckpoint(ctx context.Context, r SampleRequest) (string, error) {
	model, _, err := lm.LoadCheckpoint(r.Checkpoint, kernels.NewPool(0))
	if err != nil {
		return "", fmt.Errorf("loading %s: %w", r.Checkpoint, err)
	}
	V := model.Config.Vocab
	bytes := V == 256
	var prompt []int32
	if bytes {
		for _, b := range []byte(r.Prompt) {
			prompt = append(prompt, int32(b))
		}
	} else {
		for _, f := range strings.FieldsFunc(r.Prompt, func(c rune) bool { return c == ' ' || c == ',' }) {
			v, err := strconv.Atoi(f)
			if err != nil || v < 0 || v >= V {
				return "", fmt.Errorf("prompt token %q: want an integer in [0, %d)", f, V)
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
	if bytes {
		b := make([]byte, 0, len(prompt)+len(out))
		for _, t := range append(prompt, out...) {
			b = append(b, byte(t))
		}
		return string(b), nil
	}
	parts := make([]string, 0, len(prompt)+len(out))
	for _, t := range prompt {
		parts = append(parts, strconv.Itoa(int(t)))
	}
	parts = append(parts, "|")
	for _, t := range out {
		parts = append(parts, strconv.Itoa(int(t)))
	}
	return strings.Join(parts, " "), nil
}
