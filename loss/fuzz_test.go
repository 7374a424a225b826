package loss

import (
	"encoding/binary"
	"math"
	"testing"
)

// FuzzValidate feeds arbitrary float bits as logits and targets through every
// direction and target kind: a call never panics, and when it returns no
// error its losses and gradients are finite.
func FuzzValidate(f *testing.F) {
	f.Add([]byte{0, 0, 128, 63, 0, 0, 0, 64}, uint8(0), uint8(0), uint8(3))
	f.Add([]byte{0, 0, 192, 127, 0, 0, 128, 255, 0, 0, 128, 127, 1, 0, 0, 0}, uint8(1), uint8(1), uint8(4))
	f.Add([]byte{255, 255, 127, 127, 255, 255, 127, 255, 0, 0, 0, 0}, uint8(2), uint8(2), uint8(2))
	f.Add([]byte{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16}, uint8(5), uint8(3), uint8(7))
	// Ordinary rows long enough for the fast paths and the assembly: V = 20,
	// logits in (-3, 3), then targets (ids 3 and 7, or probabilities).
	ordinary := make([]byte, 0, 4*80)
	for i := 0; i < 80; i++ {
		v := float32(math.Sin(float64(i))) * 3
		if i >= 40 {
			v = float32(1+i%3) / 40 // 20 probabilities summing to 1 per row
		}
		if i == 40 {
			v = 3 // hard id
		}
		if i == 41 {
			v = 7
		}
		ordinary = binary.LittleEndian.AppendUint32(ordinary, math.Float32bits(v))
	}
	f.Add(ordinary, uint8(0), uint8(1), uint8(19))
	f.Add(ordinary, uint8(0x80), uint8(0), uint8(19))
	f.Add(ordinary, uint8(0x30), uint8(3), uint8(19))
	f.Add(ordinary, uint8(1), uint8(1), uint8(19))
	f.Add(ordinary, uint8(2), uint8(1), uint8(19))
	f.Fuzz(func(t *testing.T, data []byte, mode, kind, vb uint8) {
		const rows = 2
		V := 1 + int(vb)%40 // up to 40: the assembly runs from 16
		word := func(i int) uint32 {
			if len(data) < 4 {
				return 0x3f800000 // 1.0
			}
			i %= len(data) / 4
			return binary.LittleEndian.Uint32(data[4*i:])
		}
		fl := func(i int) float32 { return math.Float32frombits(word(i)) }
		logits := make([]float32, rows*V)
		for i := range logits {
			logits[i] = fl(i)
		}
		var tg Target
		switch kind % 4 {
		case 0:
			tg.Hard = []int32{int32(word(rows*V)) % 12, int32(word(rows*V+1)) % 12}
		case 1:
			tg.Probs = make([]float32, rows*V)
			for i := range tg.Probs {
				tg.Probs[i] = fl(rows*V + i)
			}
		case 2:
			tg.LogProbs = make([]float32, rows*V)
			for i := range tg.LogProbs {
				tg.LogProbs[i] = fl(rows*V + i)
			}
		case 3:
			tg.K = 1 + int(mode>>4)%V
			tg.SparseIDs = make([]int32, rows*tg.K)
			tg.SparseProbs = make([]float32, rows*tg.K)
			for i := range tg.SparseIDs {
				tg.SparseIDs[i] = int32(word(rows*V+2*i)) % 12
				tg.SparseProbs[i] = fl(rows*V + 2*i + 1)
			}
		}
		o := DefaultOptions()
		o.Direction = Direction(mode % 3)
		o.Temperature = []float64{1, 0.25, 3, 1e-8}[(mode>>2)%4]
		o.ScaleT2 = mode&0x40 != 0
		if tg.Hard != nil && mode&0x80 != 0 {
			o.LabelSmoothing = 0.1
		}
		c := NewComputer(nil)
		orig := append([]float32(nil), logits...)
		rowLoss := make([]float64, rows)
		res, err := c.Forward(logits, rows, V, tg, o, rowLoss)
		ferr := err
		fwdLoss := append([]float64(nil), rowLoss...)
		check := func(op string, res Result, err error) {
			if err != nil {
				return
			}
			if math.IsNaN(res.Sum) || math.IsInf(res.Sum, 0) {
				t.Fatalf("%s: sum = %v with no error", op, res.Sum)
			}
			for r, l := range rowLoss {
				// A target row may sum to 1 - 1e-3 only (a loss just below
				// 0), and T^2 <= 9 here.
				if math.IsNaN(l) || math.IsInf(l, 0) || l < -0.02 {
					t.Fatalf("%s: row %d loss = %v with no error", op, r, l)
				}
			}
		}
		check("Forward", res, err)
		res, err = c.ForwardBackward(logits, rows, V, tg, o, 1, rowLoss)
		check("ForwardBackward", res, err)
		if err == nil {
			for i, g := range logits {
				if g != g || math.IsInf(float64(g), 0) {
					t.Fatalf("ForwardBackward: grad[%d] = %v with no error", i, g)
				}
			}
		}
		// The fast paths agree with the float64 reference path.
		ref := NewComputer(nil)
		ref.noFast = true
		refLoss := make([]float64, rows)
		if _, rerr := ref.Forward(orig, rows, V, tg, o, refLoss); (rerr == nil) != (ferr == nil) {
			t.Fatalf("Forward = %v; reference path = %v", ferr, rerr)
		} else if rerr == nil {
			for r := range fwdLoss {
				if !closeTo(fwdLoss[r], refLoss[r], 1e-5, 1e-4) {
					t.Fatalf("row %d loss = %v; reference path %v", r, fwdLoss[r], refLoss[r])
				}
			}
		}
	})
}
