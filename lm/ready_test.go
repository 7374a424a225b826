package lm

import (
	"math"
	"testing"
)

// TestForwardBackwardReady: ready is called once after ln_f, three times per
// block from the last to the first (its MLP from ln_2, its attn.c_proj, the
// rest from ln_1) and once after the embeddings, with lo
// falling to 0, and the gradients it says are final are the ones the call
// returns, bit for bit; the gradients are those of ForwardBackward.
func TestForwardBackwardReady(t *testing.T) {
	cfg := Config{Vocab: 50, NEmbd: 32, NLayer: 3, NHead: 4, Ctx: 16}
	B, T := 2, 16
	r := NewRNG(5)
	toks, tgts := randTokens(r, B*T, cfg.Vocab), randTokens(r, B*T, cfg.Vocab)
	N := cfg.NumParams()

	plain := newMicro(t, cfg, 2, 7)
	h := &ceHead{targets: tgts, V: cfg.Vocab, scale: 1}
	if err := plain.ForwardBackward(toks, B, T, h.backward); err != nil {
		t.Fatal(err)
	}

	m := newMicro(t, cfg, 2, 7)
	type snap struct {
		lo int
		g  []float32
	}
	var snaps []snap
	h = &ceHead{targets: tgts, V: cfg.Vocab, scale: 1}
	err := m.ForwardBackwardReady(toks, B, T, h.backward, func(lo int) {
		snaps = append(snaps, snap{lo, append([]float32(nil), m.Grads[lo:N]...)})
	})
	if err != nil {
		t.Fatal(err)
	}
	lay := m.Layout()
	want := []int{lay[len(lay)-2].Offset}
	for l := cfg.NLayer - 1; l >= 0; l-- {
		for _, name := range []string{"ln_2.weight", "attn.c_proj.weight", "ln_1.weight"} {
			tn, _ := m.Tensor("h." + string(rune('0'+l)) + "." + name)
			want = append(want, tn.Offset)
		}
	}
	want = append(want, 0)
	if len(snaps) != len(want) {
		t.Fatalf("%d calls of ready; want %d", len(snaps), len(want))
	}
	for i, s := range snaps {
		if s.lo != want[i] {
			t.Fatalf("call %d: lo = %d; want %d", i, s.lo, want[i])
		}
		for j, v := range s.g {
			if math.Float32bits(v) != math.Float32bits(m.Grads[s.lo+j]) {
				t.Fatalf("call %d (lo %d): grad[%d] = %v when ready, %v at the end", i, s.lo, s.lo+j, v, m.Grads[s.lo+j])
			}
		}
	}
	for i := range N {
		if math.Float32bits(m.Grads[i]) != math.Float32bits(plain.Grads[i]) {
			t.Fatalf("grad[%d] = %v with ready, %v without", i, m.Grads[i], plain.Grads[i])
		}
	}
}
