package lm

import (
	"errors"
	"math"
	"strings"
	"sync"
	"testing"
)

// TestBlockHeadMatchesHeadFunc: ForwardBackwardBlocks with the cross-entropy
// as a BlockHead (BlockCE) gives the loss and gradient of ForwardBackward
// with the same loss as a HeadFunc (ceHead), on a vocabulary of one block
// (rows cut into parts) and on one of many blocks (the blocked backward), on
// 1 to 3 threads.
func TestBlockHeadMatchesHeadFunc(t *testing.T) {
	// B = 30 makes 1200 rows: more than one chunk of the blocked head.
	// ignore: every 7th row's target is the ignore index (-100), left out
	// of the loss, its gradient zero.
	for _, V := range []int{50, 9000} {
		for _, c := range []struct {
			threads, B int
			ignore     bool
		}{{1, 10, false}, {2, 10, false}, {3, 10, false}, {2, 30, false}, {2, 30, true}} {
			threads, B, T := c.threads, c.B, 40
			cfg := Config{Vocab: V, NEmbd: 16, NLayer: 1, NHead: 2, Ctx: 40}
			r := NewRNG(9)
			toks, tgts := randTokens(r, B*T, cfg.Vocab), randTokens(r, B*T, cfg.Vocab)
			kept := B * T
			if c.ignore {
				for i := 0; i < len(tgts); i += 7 {
					tgts[i] = -100
					kept--
				}
			}
			m := newMicro(t, cfg, threads, 11)
			h := &ceHead{targets: tgts, V: cfg.Vocab, scale: 0.5}
			if err := m.ForwardBackward(toks, B, T, h.backward); err != nil {
				t.Fatal(err)
			}
			want := append([]float32(nil), m.Grads...)
			m.ZeroGrad()
			bh := NewBlockCE(V, B*T, -100)
			bh.Start(tgts, 0.5)
			if err := m.ForwardBackwardBlocks(toks, B, T, bh, nil); err != nil {
				t.Fatal(err)
			}
			loss, rows := bh.Loss()
			if rows != kept {
				t.Errorf("V %d, %d threads: %d rows in the loss; want %d", V, threads, rows, kept)
			}
			if math.Abs(loss-h.sum) > 1e-6*h.sum {
				t.Errorf("V %d, %d threads: loss %g; HeadFunc %g", V, threads, loss, h.sum)
			}
			// float32 sums in another order: errors relative to the
			// gradient's largest entry where entries cancel.
			var scale float64
			for _, g := range want {
				scale = max(scale, math.Abs(float64(g)))
			}
			for i := range want {
				if d := math.Abs(float64(m.Grads[i] - want[i])); d > 1e-6*scale+1e-4*math.Abs(float64(want[i])) {
					t.Fatalf("V %d, %d threads: grad[%d] = %g; HeadFunc %g", V, threads, i, m.Grads[i], want[i])
				}
			}
		}
	}
}

// cover is a BlockHead that checks the model's calls: every row and
// vocabulary column of a chunk goes through Block once, then Chunk, then Grad
// once; Block gets the logits of Forward's HeadFunc (want); Keep holds what
// Block wrote until Grad.
type cover struct {
	t       *testing.T
	V       int
	want    []float32 // [N, V] logits
	mu      sync.Mutex
	blocks  []int // [N*V]: calls of Block covering the entry
	grads   []int
	chunks  []int // rows of each Chunk call
	chunked []bool
}

func (c *cover) Block(b HeadBlock) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for r := range b.Rows {
		i := b.First + r
		if c.chunked[i] {
			c.t.Errorf("Block on row %d after its Chunk", i)
		}
		for j := range b.Width {
			z, want := b.Z[r*b.LdZ+j], c.want[i*c.V+b.V0+j]
			if math.Abs(float64(z-want)) > 1e-5*(1+math.Abs(float64(want))) {
				c.t.Fatalf("Block: logit (%d, %d) = %g; Forward %g", i, b.V0+j, z, want)
			}
			c.blocks[i*c.V+b.V0+j]++
		}
	}
	for r := range b.Rows { // after reading Z: it may be Keep
		for j := range b.Width {
			b.Keep[r*b.LdKeep+j] = float32(b.First + r + (b.V0+j)*7)
		}
	}
}

func (c *cover) Chunk(first, rows int) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	for i := first; i < first+rows; i++ {
		for v := range c.V {
			if c.blocks[i*c.V+v] != 1 {
				c.t.Fatalf("Chunk: row %d token %d went through Block %d times", i, v, c.blocks[i*c.V+v])
			}
		}
		c.chunked[i] = true
	}
	c.chunks = append(c.chunks, rows)
	return nil
}

func (c *cover) Grad(b HeadBlock) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for r := range b.Rows {
		i := b.First + r
		if !c.chunked[i] {
			c.t.Errorf("Grad on row %d before its Chunk", i)
		}
		for j := range b.Width {
			if k, want := b.Keep[r*b.LdKeep+j], float32(i+(b.V0+j)*7); k != want {
				c.t.Fatalf("Grad: Keep (%d, %d) = %g; Block wrote %g", i, b.V0+j, k, want)
			}
			c.grads[i*c.V+b.V0+j]++
		}
	}
	for r := range b.Rows {
		clear(b.Z[r*b.LdZ : r*b.LdZ+b.Width])
	}
}

// TestBlockHeadCalls checks the calls of ForwardBackwardBlocks with cover,
// on the shapes of TestBlockHeadMatchesHeadFunc and one cut into several
// chunks, and that an error of Chunk stops the pass.
func TestBlockHeadCalls(t *testing.T) {
	for _, c := range []struct{ V, B, T, threads int }{{50, 10, 40, 1}, {50, 10, 40, 2}, {9000, 10, 40, 2}, {9000, 30, 40, 3}} {
		cfg := Config{Vocab: c.V, NEmbd: 16, NLayer: 1, NHead: 2, Ctx: 40}
		r := NewRNG(3)
		toks := randTokens(r, c.B*c.T, cfg.Vocab)
		m := newMicro(t, cfg, c.threads, 11)
		ch := &cover{t: t, V: c.V, blocks: make([]int, c.B*c.T*c.V), grads: make([]int, c.B*c.T*c.V), chunked: make([]bool, c.B*c.T)}
		ch.want = make([]float32, 0, c.B*c.T*c.V)
		if err := m.Forward(toks, c.B, c.T, func(logits []float32, _, _ int) error {
			ch.want = append(ch.want, logits...)
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		if err := m.ForwardBackwardBlocks(toks, c.B, c.T, ch, nil); err != nil {
			t.Fatal(err)
		}
		rows := m.act.headRows
		if headGroups(c.V) > 1 {
			rows = blockHeadRows
		}
		wantChunks := (c.B*c.T + rows - 1) / rows
		if len(ch.chunks) != wantChunks {
			t.Errorf("V %d: %d Chunk calls %v; want %d", c.V, len(ch.chunks), ch.chunks, wantChunks)
		}
		for i, n := range ch.grads {
			if n != 1 {
				t.Fatalf("V %d: row %d token %d went through Grad %d times", c.V, i/c.V, i%c.V, n)
			}
		}
	}
	m := newMicro(t, Config{Vocab: 50, NEmbd: 16, NLayer: 1, NHead: 2, Ctx: 40}, 1, 11)
	boom := errors.New("boom")
	err := m.ForwardBackwardBlocks(make([]int32, 40), 1, 40, failChunk{boom}, nil)
	if !errors.Is(err, boom) {
		t.Errorf("ForwardBackwardBlocks with a failing Chunk = %v; want %v", err, boom)
	}
}

type failChunk struct{ err error }

func (failChunk) Block(HeadBlock)        {}
func (f failChunk) Chunk(int, int) error { return f.err }
func (failChunk) Grad(HeadBlock)         { panic("Grad after a failed Chunk") }

// TestBlockCEBadTarget checks that a target outside the vocabulary stops
// the pass with an error naming the row and the target, and that the
// chunk it falls in adds nothing to the loss (the chunks before it do).
func TestBlockCEBadTarget(t *testing.T) {
	const V, B, T = 9000, 30, 40 // 1200 rows: chunks of 512, 512, 176
	cfg := Config{Vocab: V, NEmbd: 16, NLayer: 1, NHead: 2, Ctx: T}
	r := NewRNG(4)
	toks, tgts := randTokens(r, B*T, V), randTokens(r, B*T, V)
	tgts[700] = V
	m := newMicro(t, cfg, 2, 11)
	bh := NewBlockCE(V, B*T, -100)
	bh.Start(tgts, 1)
	err := m.ForwardBackwardBlocks(toks, B, T, bh, nil)
	if err == nil || !strings.Contains(err.Error(), "row 700: target 9000 outside the vocabulary of 9000") {
		t.Fatalf("ForwardBackwardBlocks with target %d at row 700 = %v; want an error naming both", V, err)
	}
	if sum, rows := bh.Loss(); rows != blockHeadRows || !(sum > 0) {
		t.Errorf("after the error: loss %g over %d rows; want the first chunk's %d rows", sum, rows, blockHeadRows)
	}
}
