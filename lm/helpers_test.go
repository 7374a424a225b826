package lm

import "math"

// ceHead is a cross-entropy head for tests and benchmarks (lm must not import
// loss): mean over every row of -log softmax(logits)[target], gradient
// scaled by scale (1/rows for the mean). It accumulates the loss sum.
type ceHead struct {
	targets []int32 // [rows of the whole batch]; backward skips -100
	V       int
	scale   float32
	sum     float64
}

func (h *ceHead) forward(logits []float32, first, rows int) error {
	for r := 0; r < rows; r++ {
		row := logits[r*h.V : (r+1)*h.V]
		mx := row[0]
		for _, v := range row {
			mx = max(mx, v)
		}
		var s float64
		for _, v := range row {
			s += math.Exp(float64(v - mx))
		}
		lse := float64(mx) + math.Log(s)
		h.sum += lse - float64(row[h.targets[first+r]])
	}
	return nil
}

func (h *ceHead) backward(logits []float32, first, rows int) error {
	for r := 0; r < rows; r++ {
		row := logits[r*h.V : (r+1)*h.V]
		mx := row[0]
		for _, v := range row {
			mx = max(mx, v)
		}
		var s float64
		for _, v := range row {
			s += math.Exp(float64(v - mx))
		}
		lse := float64(mx) + math.Log(s)
		tgt := h.targets[first+r]
		if tgt == -100 { // ignored: no loss, no gradient
			clear(row)
			continue
		}
		h.sum += lse - float64(row[tgt])
		for j, v := range row {
			p := math.Exp(float64(v) - lse)
			if int32(j) == tgt {
				p--
			}
			row[j] = float32(p) * h.scale
		}
	}
	return nil
}

// windows cuts toks into windows of ctx+1 tokens at stride ctx and returns
// inputs and targets [nWin, ctx] each.
func windows(toks []int32, ctx int) (inputs, targets []int32, n int) {
	for s := 0; s+ctx+1 <= len(toks); s += ctx {
		inputs = append(inputs, toks[s:s+ctx]...)
		targets = append(targets, toks[s+1:s+ctx+1]...)
		n++
	}
	return inputs, targets, n
}
