package loss

import (
	"encoding/binary"
	"errors"
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
		switch kind % 5 {
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
		case 4:
			tg.TeacherLogits = make([]float32, rows*V)
			for i := range tg.TeacherLogits {
				tg.TeacherLogits[i] = fl(rows*V + i)
			}
			tg.Hard = []int32{int32(word(1)) % 12, -100}
		}
		o := DefaultOptions()
		o.Direction = Direction(mode % 3)
		o.Temperature = []float64{1, 0.25, 3, 1e-8}[(mode>>2)%4]
		o.ScaleT2 = mode&0x40 != 0
		if (tg.Hard != nil || tg.SparseIDs != nil) && mode&0x80 != 0 {
			o.LabelSmoothing = 0.1
		}
		if tg.TeacherLogits != nil || tg.SparseIDs != nil {
			// Distillation settings from the kind byte's high bits.
			o.TeacherTail = Tail(kind>>3) % 3
			o.Beta = []float64{0.5, 0, 1, 0.9}[(kind>>5)%4]
			if tg.TeacherLogits != nil {
				o.TeacherTopK = int(mode>>4) % (V + 1)
				o.TeacherTemperature = []float64{1, 0.5}[(kind>>7)&1]
				o.HardWeight = []float64{0, 0.4}[(mode>>5)&1]
			}
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
		// The fast paths agree with the float64 reference path, on the
		// losses and (see FuzzDistill for the tolerance) the gradients.
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
		if err == nil {
			gr := append([]float32(nil), orig...)
			if _, rerr := ref.ForwardBackward(gr, rows, V, tg, o, 1, nil); rerr != nil {
				t.Fatalf("ForwardBackward succeeded; reference path = %v", rerr)
			}
			factor := max(1/o.Temperature, 1)
			if o.ScaleT2 {
				factor = max(o.Temperature, 1)
			}
			for r := 0; r < rows; r++ {
				gmax := 0.0
				for _, v := range gr[r*V : (r+1)*V] {
					gmax = max(gmax, math.Abs(float64(v)))
				}
				for i := r * V; i < (r+1)*V; i++ {
					if math.Abs(float64(logits[i])-float64(gr[i])) > 1e-4*gmax+2e-6*factor {
						t.Fatalf("grad[%d] = %v; reference path %v (row max %v)", i, logits[i], gr[i], gmax)
					}
				}
			}
		}
	})
}

// FuzzDistill feeds arbitrary float bits as student and teacher logits
// through every distillation setting (direction, beta and its endpoints,
// temperatures, T^2, hard weight, top-k, tail, label smoothing, teacher
// logits or a sparse store): a call never panics, the fast paths and the
// float64 reference path agree on whether the row is an error, and when it
// is not on the loss, its parts and the gradient.
func FuzzDistill(f *testing.F) {
	ordinary := make([]byte, 0, 4*96)
	for i := 0; i < 96; i++ {
		v := float32(math.Sin(float64(i)*1.7)) * 4
		ordinary = binary.LittleEndian.AppendUint32(ordinary, math.Float32bits(v))
	}
	for _, m := range [][3]uint8{{0, 0, 19}, {1, 0x11, 23}, {2, 0x22, 40}, {0x42, 0x35, 37}, {0x83, 0x46, 17}, {0x21, 0x93, 33}, {0x14, 0xa7, 30}} {
		f.Add(ordinary, m[0], m[1], m[2])
	}
	f.Add([]byte{0, 0, 128, 127, 0, 0, 192, 127, 1, 2, 3, 4}, uint8(1), uint8(2), uint8(5))
	f.Fuzz(func(t *testing.T, data []byte, mode, opt, vb uint8) {
		const rows = 2
		V := 2 + int(vb)%39 // up to 40: the assembly runs from 16
		word := func(i int) uint32 {
			if len(data) < 4 {
				return 0x3f800000
			}
			i %= len(data) / 4
			return binary.LittleEndian.Uint32(data[4*i:])
		}
		z := make([]float32, rows*V)
		tl := make([]float32, rows*V)
		for i := range z {
			z[i] = math.Float32frombits(word(i))
			tl[i] = math.Float32frombits(word(i + 7))
		}
		o := DefaultOptions()
		o.Direction = Direction(mode % 3)
		o.Beta = []float64{0.5, 0, 1, 0.2}[(mode>>2)%4]
		o.Temperature = []float64{1, 0.5, 2.5, 1e-3}[(mode>>4)%4]
		o.TeacherTemperature = []float64{1, 0.7, 3}[int(mode>>6)%3]
		o.ScaleT2 = opt&1 != 0
		o.HardWeight = []float64{0, 0.3}[(opt>>1)&1]
		o.TeacherTopK = []int{0, 1, 3, V - 1, V}[int(opt>>2)%5]
		o.TeacherTail = Tail((opt >> 5) % 3)
		if opt&0x80 != 0 {
			o.LabelSmoothing = 0.05
		}
		hard := []int32{int32(word(3)) % int32(V+1), int32(word(5)) % int32(V)}
		if hard[0] == int32(V) {
			hard[0] = o.IgnoreIndex
		}
		tg := Target{TeacherLogits: tl, Hard: hard}
		if vb&0x80 != 0 && o.TeacherTopK > 0 {
			// A sparse store: the first k ids of each row with probabilities
			// from the teacher logits' bits.
			k := min(o.TeacherTopK, V)
			o.TeacherTopK = k
			tg = Target{Hard: hard, K: k, SparseIDs: make([]int32, rows*k), SparseProbs: make([]float32, rows*k)}
			for r := 0; r < rows; r++ {
				for n := 0; n < k; n++ {
					tg.SparseIDs[r*k+n] = int32(n)
					tg.SparseProbs[r*k+n] = float32(math.Abs(float64(tl[r*V+n]))) / float32(k)
				}
			}
		}
		fast, ref := NewComputer(nil), NewComputer(nil)
		ref.noFast = true
		gf, gr := append([]float32(nil), z...), append([]float32(nil), z...)
		lf, lr := make([]float64, rows), make([]float64, rows)
		rf, errF := fast.ForwardBackward(gf, rows, V, tg, o, 0.5, lf)
		rr, errR := ref.ForwardBackward(gr, rows, V, tg, o, 0.5, lr)
		if (errF == nil) != (errR == nil) {
			t.Fatalf("fast path: %v; reference path: %v", errF, errR)
		}
		if errF != nil {
			if errors.Is(errF, ErrOption) != errors.Is(errR, ErrOption) {
				t.Fatalf("fast path: %v; reference path: %v", errF, errR)
			}
			return
		}
		for _, chk := range []struct {
			name      string
			got, want float64
		}{{"Sum", rf.Sum, rr.Sum}, {"Div", rf.Div, rr.Div}, {"CE", rf.CE, rr.CE}, {"Kept", rf.Kept, rr.Kept}} {
			if math.IsNaN(chk.got) || math.IsInf(chk.got, 0) || !closeTo(chk.got, chk.want, 1e-5, 1e-4) {
				t.Fatalf("%s = %v; reference path %v", chk.name, chk.got, chk.want)
			}
		}
		// Gradients: relative 1e-4 of the row's largest, plus absolute 2e-6
		// of the gradient's factor gradScale/T (times T^2): q - p cancels in
		// float32 where q and p are close.
		factor := 0.5 / o.Temperature
		if o.ScaleT2 {
			factor *= o.Temperature * o.Temperature
		}
		factor = max(factor, 0.5)
		for r := 0; r < rows; r++ {
			gmax := 0.0
			for _, v := range gr[r*V : (r+1)*V] {
				gmax = max(gmax, math.Abs(float64(v)))
			}
			for i := r * V; i < (r+1)*V; i++ {
				if g := float64(gf[i]); math.IsNaN(g) || math.IsInf(g, 0) || math.Abs(g-float64(gr[i])) > 1e-4*gmax+2e-6*factor {
					t.Fatalf("grad[%d] = %v; reference path %v (row max %v)", i, gf[i], gr[i], gmax)
				}
			}
		}
	})
}
