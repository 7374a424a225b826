package lm

import (
	"encoding/binary"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"testing"

	"github.com/klring/klring/kernels"
)

const goldenDir = "testdata/gpt_micro"

func readGoldenTokens(t *testing.T) []int32 {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(goldenDir, "tokens.bin"))
	if err != nil {
		t.Fatalf("golden tokens: %v", err)
	}
	toks := make([]int32, len(b)/2)
	for i := range toks {
		toks[i] = int32(binary.LittleEndian.Uint16(b[2*i:]))
	}
	return toks
}

func TestGoldenGPTMicro(t *testing.T) {
	for _, threads := range []int{1, 2} {
		pool := kernels.NewPool(threads)
		m, st, err := LoadCheckpoint(goldenDir, pool)
		if err != nil {
			t.Fatalf("LoadCheckpoint(%s) = %v; want the golden model", goldenDir, err)
		}
		if st != nil {
			t.Errorf("golden folder has trainer state %+v; want none", st)
		}
		var exp struct {
			Windows  int     `json:"windows"`
			Ctx      int     `json:"ctx"`
			Loss64   float64 `json:"mean_loss_float64"`
			GradNorm float64 `json:"grad_norm"`
		}
		b, err := os.ReadFile(filepath.Join(goldenDir, "expected.json"))
		if err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(b, &exp); err != nil {
			t.Fatal(err)
		}
		inputs, targets, nw := windows(readGoldenTokens(t), m.Config.Ctx)
		if nw != exp.Windows || m.Config.Ctx != exp.Ctx {
			t.Fatalf("windows = %d (ctx %d); want %d (ctx %d)", nw, m.Config.Ctx, exp.Windows, exp.Ctx)
		}
		T := m.Config.Ctx
		rows := nw * T

		// Forward only.
		fh := &ceHead{targets: targets, V: m.Config.Vocab}
		if err := m.Forward(inputs, nw, T, fh.forward); err != nil {
			t.Fatal(err)
		}
		if got := fh.sum / float64(rows); math.Abs(got-exp.Loss64) > 1e-5*exp.Loss64 {
			t.Errorf("threads %d: Forward mean loss = %.9g; want %.9g (rel 1e-5)", threads, got, exp.Loss64)
		}

		// Forward and backward of the mean loss.
		m.ZeroGrad()
		h := &ceHead{targets: targets, V: m.Config.Vocab, scale: 1 / float32(rows)}
		if err := m.ForwardBackward(inputs, nw, T, h.backward); err != nil {
			t.Fatal(err)
		}
		got := h.sum / float64(rows)
		if math.Abs(got-exp.Loss64) > 1e-5*exp.Loss64 {
			t.Errorf("threads %d: mean loss = %.9g; want %.9g (rel 1e-5)", threads, got, exp.Loss64)
		}
		t.Logf("threads %d: mean loss %.9g, want %.9g, rel diff %.2g", threads, got, exp.Loss64, math.Abs(got-exp.Loss64)/exp.Loss64)

		gb, err := os.ReadFile(filepath.Join(goldenDir, "grads.safetensors"))
		if err != nil {
			t.Fatal(err)
		}
		want := make([]float32, m.Config.NumParams())
		if err := loadParams(m.layout, want, gb, ""); err != nil {
			t.Fatalf("golden grads: %v", err)
		}
		if norm := math.Sqrt(dot64(m.Grads, m.Grads)); math.Abs(norm-exp.GradNorm) > 1e-4*exp.GradNorm {
			t.Errorf("threads %d: grad norm = %.9g; want %.9g", threads, norm, exp.GradNorm)
		}
		worst := 0.0
		for _, ten := range m.layout {
			g, w := ten.View(m.Grads), ten.View(want)
			wn := math.Sqrt(dot64(w, w))
			maxd, at := 0.0, 0
			for i := range g {
				if d := math.Abs(float64(g[i]) - float64(w[i])); d > maxd || math.IsNaN(d) {
					maxd, at = d, i
				}
			}
			worst = max(worst, maxd/wn)
			if !(maxd <= 1e-4*wn) {
				t.Errorf("threads %d: grad %s: max diff %.3g (%.3g of norm %.3g) at %d: got %.9g; want %.9g",
					threads, ten.Name, maxd, maxd/wn, wn, at, g[at], w[at])
			}
		}
		t.Logf("threads %d: worst tensor max diff / norm = %.3g", threads, worst)
	}
}

func dot64(a, b []float32) float64 {
	var s float64
	for i := range a {
		s += float64(a[i]) * float64(b[i])
	}
	return s
}
