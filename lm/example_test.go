package lm_test

import (
	"encoding/json"
	"fmt"
	"os"
	"slices"

	"github.com/klring/klring/kernels"
	"github.com/klring/klring/lm"
)

func ExampleConfig_NumParams() {
	cfg, _ := lm.Preset("tiny")
	cfg.Vocab = 256 // byte-level text
	fmt.Println(cfg.NumParams())
	// Output: 842496
}

// A trainer's step: zero the gradient, run forward and backward with the
// loss's gradient written by the head, append the loss sum and the token count
// to the flat gradient, divide by the count, clip, update.
func ExampleModel_ForwardBackward() {
	cfg := lm.Config{Vocab: 8, NEmbd: 16, NLayer: 1, NHead: 2, Ctx: 4}
	pool := kernels.NewPool(1)
	m, _ := lm.New(cfg, pool)
	m.Init(1)
	opt, _ := lm.NewAdamW(m.Layout(), lm.DefaultAdamWOptions(), pool)
	tokens := []int32{1, 2, 3, 4}
	n := cfg.NumParams()

	m.ZeroGrad()
	head := func(logits []float32, first, rows int) error {
		for i := range logits {
			logits[i] = 0 // a loss that is flat: dL/dlogits = 0
		}
		return nil
	}
	if err := m.ForwardBackward(tokens, 1, 4, head); err != nil {
		fmt.Println(err)
	}
	g := m.Grads[:n+2] // room for the loss sum and the token count
	g[n], g[n+1] = 0, 4
	fmt.Printf("%d values to all-reduce\n", len(g))
	norm := lm.ClipGradNorm(g[:n], 1)
	opt.Step(m.Params, g[:n], 1e-3)
	fmt.Println("gradient norm", norm)
	// Output:
	// 3506 values to all-reduce
	// gradient norm 0
}

// A checkpoint is a Hugging Face GPT-2 folder plus the trainer's state.
func ExampleSaveCheckpoint() {
	pool := kernels.NewPool(1)
	m, _ := lm.New(lm.Config{Vocab: 16, NEmbd: 8, NLayer: 1, NHead: 2, Ctx: 4}, pool)
	m.Init(1)
	opt, _ := lm.NewAdamW(m.Layout(), lm.DefaultAdamWOptions(), pool)
	dir, _ := os.MkdirTemp("", "ckpt")
	defer os.RemoveAll(dir)
	st := &lm.TrainerState{Step: 10, RNG: 42, Data: json.RawMessage(`{"epoch":0,"pos":80}`), Adam: &opt.State}
	if err := lm.SaveCheckpoint(dir, m, st); err != nil {
		fmt.Println(err)
	}
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		fmt.Println(e.Name())
	}
	m2, st2, err := lm.LoadCheckpoint(dir, pool)
	fmt.Println(err, m2.Config, st2.Step, string(st2.Data), slices.Equal(m2.Params, m.Params))
	// Output:
	// config.json
	// model.safetensors
	// optimizer.safetensors
	// trainer_state.json
	// <nil> {16 8 1 2 4 0} 10 {"epoch":0,"pos":80} true
}
