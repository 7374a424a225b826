package loss

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/klring/klring/kernels"
)

// This file holds a float64 reference of the distillation loss written
// straight from its definition (see testdata/gen_distill.py), independent of
// the package's code, and the tests that hold both paths to it.

// distillRow is one row of a distillation case.
type distillRow struct {
	z, t []float64 // student and teacher logits
	hard int       // the hard next token, or -1 for none
	// A sparse teacher row instead of t: ids and probabilities.
	ids []int
	ps  []float64
}

// refDistillRow returns the row's loss, divergence, cross-entropy and kept
// mass, from dense distributions.
func refDistillRow(row distillRow, o Options) (loss, div, ce, kept float64) {
	V := len(row.z)
	q := refSoftmax(row.z, o.Temperature)
	var p []float64
	var listed []bool
	k := 0
	S := 1.0
	if row.ids != nil {
		p = make([]float64, V)
		listed = make([]bool, V)
		S = 0
		for n, id := range row.ids {
			p[id] = row.ps[n]
			listed[id] = true
			S += row.ps[n]
		}
		if k = len(row.ids); k == V {
			k = 0 // used as given
		}
	} else {
		p = refSoftmax(row.t, o.TeacherTemperature)
		if o.TeacherTopK > 0 && o.TeacherTopK < V {
			k = o.TeacherTopK
			idx := make([]int, V)
			for i := range idx {
				idx[i] = i
			}
			slices.SortStableFunc(idx, func(a, b int) int {
				switch {
				case row.t[a] > row.t[b]:
					return -1
				case row.t[a] < row.t[b]:
					return 1
				}
				return 0
			})
			listed = make([]bool, V)
			S = 0
			for _, id := range idx[:k] {
				listed[id] = true
				S += p[id]
			}
		}
	}
	kept = S
	dir := o.Direction
	if dir == JSD && o.Beta == 0 {
		dir = Forward
	}
	if dir == JSD && o.Beta == 1 {
		dir = Reverse
	}
	eps := o.LabelSmoothing
	if k > 0 {
		R := 0.0
		for i := range p {
			if !listed[i] {
				R += p[i]
			}
		}
		if row.ids != nil {
			R = 1 - S
			if R <= 1e-6 {
				R = 0
			}
		}
		switch o.TeacherTail {
		case TailRenormalize:
			for i := range p {
				if listed[i] {
					p[i] /= S
				} else {
					p[i] = 0
				}
			}
		case TailUniform:
			for i := range p {
				if !listed[i] {
					p[i] = R / float64(V-k)
				}
			}
		case TailRest:
			// Forward KL over the k listed ids and one bucket.
			Pr, Qr := R, 0.0
			for i := range p {
				if !listed[i] {
					Qr += q[i]
				}
			}
			if eps > 0 {
				Pr = (1-eps)*Pr + eps*float64(V-k)/float64(V)
			}
			for i := range p {
				if !listed[i] {
					continue
				}
				pi := p[i]
				if eps > 0 {
					pi = (1-eps)*pi + eps/float64(V)
				}
				if pi > 0 {
					div += pi * math.Log(pi/q[i])
				}
			}
			if Pr > 0 {
				div += Pr * math.Log(Pr/Qr)
			}
			return finishRef(row, o, div, kept)
		}
	}
	if eps > 0 {
		for i := range p {
			p[i] = (1-eps)*p[i] + eps/float64(V)
		}
	}
	switch dir {
	case Forward:
		div = kl(p, q)
	case Reverse:
		div = kl(q, p)
	default:
		m := make([]float64, V)
		for i := range m {
			m[i] = o.Beta*p[i] + (1-o.Beta)*q[i]
		}
		div = o.Beta*kl(p, m) + (1-o.Beta)*kl(q, m)
	}
	return finishRef(row, o, div, kept)
}

func finishRef(row distillRow, o Options, div, kept float64) (loss, d, ce, k float64) {
	if o.ScaleT2 {
		div *= o.Temperature * o.Temperature
	}
	if row.hard >= 0 {
		q1 := refSoftmax(row.z, 1)
		ce = -math.Log(q1[row.hard])
	}
	w := o.HardWeight
	return (1-w)*div + w*ce, div, ce, kept
}

// distillConfig is one setting of the options for the randomized tests.
type distillConfig struct {
	name   string
	o      Options
	sparse bool // the teacher's top k as a Sparse target
}

// distillConfigs lists settings that cover every direction, tail, top-k,
// temperature, T^2, hard weight and label smoothing, on teacher logits and
// sparse rows.
func distillConfigs() []distillConfig {
	var out []distillConfig
	add := func(name string, sparse bool, f func(o *Options)) {
		o := DefaultOptions()
		f(&o)
		out = append(out, distillConfig{name, o, sparse})
	}
	for _, dir := range []Direction{Forward, Reverse, JSD} {
		for _, T := range []float64{1, 2} {
			add(fmt.Sprintf("dense/%v/T=%v", dir, T), false, func(o *Options) {
				o.Direction, o.Temperature, o.TeacherTemperature, o.ScaleT2, o.Beta = dir, T, T, T != 1, 0.3
			})
		}
		add(fmt.Sprintf("dense/%v/teacherT=0.6/hard=0.4", dir), false, func(o *Options) {
			o.Direction, o.TeacherTemperature, o.HardWeight, o.Temperature = dir, 0.6, 0.4, 1.3
		})
		add(fmt.Sprintf("dense/%v/eps=0.1", dir), false, func(o *Options) {
			o.Direction, o.LabelSmoothing = dir, 0.1
		})
		for _, sparse := range []bool{false, true} {
			src := "top3"
			if sparse {
				src = "store3"
			}
			for _, tail := range []Tail{TailUniform, TailRenormalize, TailRest} {
				for _, eps := range []float64{0, 0.05} {
					if tail == TailRest && dir != Forward || tail == TailRenormalize && dir == Reverse && eps == 0 {
						continue // refused: see TestDistillBadOptions
					}
					add(fmt.Sprintf("%s/%v/%v/eps=%v", src, dir, tail, eps), sparse, func(o *Options) {
						o.Direction, o.TeacherTopK, o.TeacherTail, o.LabelSmoothing = dir, 3, tail, eps
						o.Temperature, o.ScaleT2, o.HardWeight = 0.8, true, 0.25
					})
				}
			}
		}
	}
	for _, beta := range []float64{0, 1} {
		add(fmt.Sprintf("dense/jsd/beta=%v", beta), false, func(o *Options) { o.Direction, o.Beta = JSD, beta })
		add(fmt.Sprintf("top3/jsd/beta=%v/uniform", beta), false, func(o *Options) {
			o.Direction, o.Beta, o.TeacherTopK = JSD, beta, 3
		})
	}
	add("top3/jsd/beta=0/rest", false, func(o *Options) { o.Direction, o.Beta, o.TeacherTopK, o.TeacherTail = JSD, 0, 3, TailRest })
	return out
}

// distillCaseData returns student logits, teacher logits, hard tokens and
// the target of a config; one row has a huge teacher logit.
func distillCaseData(rng *rand.Rand, cfg distillConfig, rows, V int) (z, tl []float32, rowsOf []distillRow, tg Target) {
	z = randLogits(rng, rows*V, 2)
	tl = randLogits(rng, rows*V, 2.5)
	if rows > 1 {
		// A confident teacher: the rest of its top k is about 1e-15 (a
		// sparse store of float32 probabilities cannot hold that: 1e-4).
		if cfg.sparse {
			tl[V+rng.IntN(V)] = 12
		} else {
			tl[V+rng.IntN(V)] = 40
		}
	}
	hard := make([]int32, rows)
	for r := range hard {
		hard[r] = int32(rng.IntN(V))
	}
	tg = Target{Hard: hard, TeacherLogits: tl}
	k := cfg.o.TeacherTopK
	if cfg.sparse {
		ids, ps := topKRows(tl, rows, V, k, cfg.o.TeacherTemperature)
		tg = Target{Hard: hard, K: k, SparseIDs: ids, SparseProbs: ps}
	}
	for r := 0; r < rows; r++ {
		row := distillRow{z: f64s(z[r*V : (r+1)*V]), t: f64s(tl[r*V : (r+1)*V]), hard: int(hard[r])}
		if cfg.sparse {
			for n := 0; n < k; n++ {
				row.ids = append(row.ids, int(tg.SparseIDs[r*k+n]))
				row.ps = append(row.ps, float64(tg.SparseProbs[r*k+n]))
			}
		}
		rowsOf = append(rowsOf, row)
	}
	return z, tl, rowsOf, tg
}

func f64s(x []float32) []float64 {
	out := make([]float64, len(x))
	for i, v := range x {
		out[i] = float64(v)
	}
	return out
}

// TestDistillFiniteDifferences holds both paths to the reference (losses
// and parts) and to its central differences (gradients), for every config.
func TestDistillFiniteDifferences(t *testing.T) {
	rng := rand.New(rand.NewPCG(31, 32))
	for _, cfg := range distillConfigs() {
		for _, V := range []int{7, 33} {
			for _, path := range []string{"fast", "reference"} {
				t.Run(fmt.Sprintf("%s/V=%d/%s", cfg.name, V, path), func(t *testing.T) {
					const rows = 3
					z, _, rowsOf, tg := distillCaseData(rng, cfg, rows, V)
					c := NewComputer(nil)
					c.noFast = path == "reference"
					const scale = 0.37
					g := append([]float32(nil), z...)
					rowLoss := make([]float64, rows)
					res, err := c.ForwardBackward(g, rows, V, tg, cfg.o, scale, rowLoss)
					if err != nil {
						t.Fatalf("ForwardBackward: %v", err)
					}
					var wl, wd, wc, wk float64
					for r, row := range rowsOf {
						l, d, ce, k := refDistillRow(row, cfg.o)
						wl, wd, wc, wk = wl+l, wd+d, wc+ce, wk+k
						if !closeTo(rowLoss[r], l, 2e-6, 1e-5) {
							t.Errorf("row %d loss = %.10g; want %.10g", r, rowLoss[r], l)
						}
						for i := range row.z {
							h := 1e-5 * max(1, math.Abs(row.z[i]))
							x := row.z[i]
							row.z[i] = x + h
							lp, _, _, _ := refDistillRow(row, cfg.o)
							row.z[i] = x - h
							lm, _, _, _ := refDistillRow(row, cfg.o)
							row.z[i] = x
							want := scale * (lp - lm) / (2 * h)
							if got := float64(g[r*V+i]); !closeTo(got, want, 2e-6, 2e-4) {
								t.Errorf("grad[%d][%d] = %.8g; want %.8g (finite differences)", r, i, got, want)
							}
						}
					}
					for _, chk := range []struct {
						name      string
						got, want float64
					}{{"Sum", res.Sum, wl}, {"Div", res.Div, wd}, {"CE", res.CE, wc}, {"Kept", res.Kept, wk}} {
						if !closeTo(chk.got, chk.want, 5e-6, 1e-5) {
							t.Errorf("%s = %.10g; want %.10g", chk.name, chk.got, chk.want)
						}
					}
				})
			}
		}
	}
}

// TestDistillFastMatchesGeneric runs every config on the fast paths (which
// must not decline these rows) and on the float64 reference path, on rows
// long enough for the assembly, with a huge logit in both models.
func TestDistillFastMatchesGeneric(t *testing.T) {
	rng := rand.New(rand.NewPCG(33, 34))
	for _, cfg := range distillConfigs() {
		for _, V := range []int{16, 100, 4099} {
			t.Run(fmt.Sprintf("%s/V=%d", cfg.name, V), func(t *testing.T) {
				const rows = 12
				o := cfg.o
				if o.TeacherTopK > 0 {
					o.TeacherTopK = min(V-1, 3+V/20)
				}
				cfg := distillConfig{cfg.name, o, cfg.sparse}
				z, _, _, tg := distillCaseData(rng, cfg, rows, V)
				// A confident student (where the rest tail's Q_rest would
				// underflow the fast path's float32 exps, rowGeneric takes the
				// row: 30 keeps it on the fast path).
				z[2*V+5] = 300
				if o.TeacherTail == TailRest && o.TeacherTopK > 0 {
					z[2*V+5] = 30
				}
				fast, ref := NewComputer(kernels.NewPool(2)), NewComputer(nil)
				fast.fastOnly, ref.noFast = true, true
				gf, gr := append([]float32(nil), z...), append([]float32(nil), z...)
				lf, lr := make([]float64, rows), make([]float64, rows)
				rf, err := fast.ForwardBackward(gf, rows, V, tg, o, 0.01, lf)
				if err != nil {
					t.Fatalf("fast: %v", err)
				}
				rr, err := ref.ForwardBackward(gr, rows, V, tg, o, 0.01, lr)
				if err != nil {
					t.Fatalf("reference: %v", err)
				}
				for r := range lf {
					if !closeTo(lf[r], lr[r], 2e-6, 2e-6) {
						t.Errorf("row %d loss = %.10g; want %.10g", r, lf[r], lr[r])
					}
				}
				if !closeTo(rf.Div, rr.Div, 1e-5, 2e-6) || !closeTo(rf.CE, rr.CE, 1e-5, 2e-6) || !closeTo(rf.Kept, rr.Kept, 1e-6, 1e-6) {
					t.Errorf("parts %+v; want %+v", rf, rr)
				}
				for i := range gf {
					// 0.01 * (absolute 1e-6, relative 1e-4): the golden
					// tolerance; reverse KL and JSD gradients cancel in float32.
					if !closeTo(float64(gf[i]), float64(gr[i]), 1e-8, 1e-4) {
						t.Fatalf("grad[%d] = %.8g; want %.8g", i, gf[i], gr[i])
					}
				}
			})
		}
	}
}

// TestDistillInvariants: JSD at beta 0 and 1 is forward and reverse KL bit
// for bit; the parts add up; the cross-entropy is that of hard targets
// alone; a dense teacher keeps all its mass; the result does not depend on
// the split over goroutines; the teacher equal to the student gives 0.
func TestDistillInvariants(t *testing.T) {
	rng := rand.New(rand.NewPCG(35, 36))
	const rows, V = 50, 300
	z := randLogits(rng, rows*V, 2)
	tl := randLogits(rng, rows*V, 2)
	hard := make([]int32, rows)
	for r := range hard {
		hard[r] = int32(rng.IntN(V))
	}
	hard[7] = -100
	run := func(c *Computer, o Options, tg Target) (Result, []float32) {
		t.Helper()
		g := append([]float32(nil), z...)
		res, err := c.ForwardBackward(g, rows, V, tg, o, 0.5, nil)
		if err != nil {
			t.Fatal(err)
		}
		return res, g
	}
	c := NewComputer(nil)
	tg := Target{TeacherLogits: tl, Hard: hard}
	for _, k := range []int{0, 10} {
		for _, end := range []struct {
			beta float64
			dir  Direction
		}{{0, Forward}, {1, Reverse}} {
			o := DefaultOptions()
			o.Direction, o.Beta, o.TeacherTopK, o.Temperature = JSD, end.beta, k, 1.7
			r1, g1 := run(c, o, tg)
			o.Direction = end.dir
			r2, g2 := run(c, o, tg)
			if r1 != r2 || !slices.Equal(g1, g2) {
				t.Errorf("top-k %d: JSD at beta %v = %+v; want %v KL bit for bit, %+v", k, end.beta, r1, end.dir, r2)
			}
		}
	}
	o := DefaultOptions()
	o.HardWeight, o.Temperature, o.ScaleT2 = 0.3, 2, true
	res, g := run(c, o, tg)
	if res.Rows != rows-1 || !closeTo(res.Sum, 0.7*res.Div+0.3*res.CE, 1e-9, 1e-12) || res.Kept != rows-1 {
		t.Errorf("result %+v; want rows %d, Sum = 0.7 Div + 0.3 CE, Kept %d", res, rows-1, rows-1)
	}
	for i := 7 * V; i < 8*V; i++ {
		if g[i] != 0 {
			t.Fatalf("ignored row: grad[%d] = %v; want 0", i, g[i])
		}
	}
	ceOnly, err := c.Forward(z, rows, V, Target{Hard: hard}, DefaultOptions(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if !closeTo(res.CE, ceOnly.Sum, 1e-9, 1e-9) || !closeTo(ceOnly.CE, ceOnly.Sum, 0, 0) {
		t.Errorf("CE = %v; hard targets alone give %v (their CE part %v)", res.CE, ceOnly.Sum, ceOnly.CE)
	}
	// Parallel: bit for bit.
	o.TeacherTopK, o.Direction, o.Beta = 12, JSD, 0.4
	r1, g1 := run(NewComputer(nil), o, tg)
	r2, g2 := run(NewComputer(kernels.NewPool(4)), o, tg)
	if r1 != r2 || !slices.Equal(g1, g2) {
		t.Errorf("parallel %+v; want serial %+v, bit for bit", r2, r1)
	}
	// The teacher is the student: 0, in every direction, with and without
	// a temperature (the teacher's equal to the student's).
	for _, dir := range []Direction{Forward, Reverse, JSD} {
		o := DefaultOptions()
		o.Direction, o.Temperature, o.TeacherTemperature = dir, 1.5, 1.5
		g := append([]float32(nil), z...)
		res, err := c.ForwardBackward(g, rows, V, Target{TeacherLogits: z}, o, 1, nil)
		if err != nil {
			t.Fatal(err)
		}
		if math.Abs(res.Sum) > 1e-5 {
			t.Errorf("%v: loss of the student against itself = %v; want 0", dir, res.Sum)
		}
		for i, v := range g {
			if math.Abs(float64(v)) > 1e-6 {
				t.Fatalf("%v: grad[%d] against itself = %v; want 0", dir, i, v)
			}
		}
	}
}

// TestDistillUnderflow: reverse KL against a teacher whose probabilities
// underflow is finite (log P comes from the logits), and matches the
// reference; a uniform tail whose mass underflows to 0 is an infinite
// divergence, refused by name, unless label smoothing fills it.
func TestDistillUnderflow(t *testing.T) {
	const V = 40
	z := make([]float32, V)
	tl := make([]float32, V)
	for i := range tl {
		z[i] = float32(i%7) / 3
		tl[i] = -float32(i) * 1000 // P(i) = exp(-1000 i): 0 in float64 from i = 1
	}
	o := DefaultOptions()
	o.Direction = Reverse
	for _, path := range []string{"fast", "reference"} {
		c := NewComputer(nil)
		c.noFast = path == "reference"
		g := append([]float32(nil), z...)
		res, err := c.ForwardBackward(g, 1, V, Target{TeacherLogits: tl}, o, 1, nil)
		if err != nil {
			t.Fatalf("%s: reverse KL against an underflowing teacher = %v; want it finite", path, err)
		}
		row := distillRow{z: f64s(z), hard: -1}
		// The reference from log P directly: sum q (log q - log p).
		q := refSoftmax(row.z, 1)
		want := 0.0
		for i := range q {
			want += q[i] * (math.Log(q[i]) - float64(tl[i]))
		}
		if !closeTo(res.Sum, want, 1e-9, 1e-6) {
			t.Errorf("%s: reverse KL = %.10g; want %.10g", path, res.Sum, want)
		}
	}
	o.TeacherTopK = 5
	for _, path := range []string{"fast", "reference"} {
		c := NewComputer(nil)
		c.noFast = path == "reference"
		_, err := c.ForwardBackward(append([]float32(nil), z...), 1, V, Target{TeacherLogits: tl}, o, 1, nil)
		var re *RowError
		if !errors.Is(err, ErrInfiniteKL) || !errors.As(err, &re) || re.Row != 0 {
			t.Errorf("%s: reverse KL, top 5 of an underflowing teacher, uniform tail = %v; want %v at row 0", path, err, ErrInfiniteKL)
		}
		o2 := o
		o2.LabelSmoothing = 0.01
		if _, err := c.ForwardBackward(append([]float32(nil), z...), 1, V, Target{TeacherLogits: tl}, o2, 1, nil); err != nil {
			t.Errorf("%s: with label smoothing = %v; want it finite", path, err)
		}
	}
}

// TestDistillBadInput: bad teacher rows are errors naming their row.
func TestDistillBadInput(t *testing.T) {
	const rows, V = 3, 20
	z := make([]float32, rows*V)
	for _, tt := range []struct {
		name string
		set  func(tl []float32)
		want error
	}{
		{"NaN teacher logit", func(tl []float32) { tl[V+3] = nan }, ErrNonFiniteLogit},
		{"+Inf teacher logit", func(tl []float32) { tl[2*V] = inf }, ErrNonFiniteLogit},
		{"masked teacher row", func(tl []float32) {
			for i := V; i < 2*V; i++ {
				tl[i] = -inf
			}
		}, ErrAllMasked},
	} {
		for _, k := range []int{0, 4} {
			tl := make([]float32, rows*V)
			tt.set(tl)
			o := DefaultOptions()
			o.TeacherTopK = k
			_, err := NewComputer(nil).ForwardBackward(append([]float32(nil), z...), rows, V, Target{TeacherLogits: tl}, o, 1, nil)
			var re *RowError
			if !errors.Is(err, tt.want) || !errors.As(err, &re) || re.Row != 1 && re.Row != 2 || !strings.Contains(err.Error(), "teacher") {
				t.Errorf("%s (top-k %d) = %v; want %v naming the teacher and its row", tt.name, k, err, tt.want)
			}
		}
	}
	// Masked teacher tokens are probability 0: fine for forward KL.
	tl := make([]float32, rows*V)
	tl[5] = -inf
	if _, err := NewComputer(nil).Forward(z, rows, V, Target{TeacherLogits: tl}, DefaultOptions(), nil); err != nil {
		t.Errorf("forward KL with a masked teacher token = %v; want no error", err)
	}
}

// TestDistillBadOptions: options that do not fit the target are ErrOption.
func TestDistillBadOptions(t *testing.T) {
	const rows, V = 2, 10
	z := make([]float32, rows*V)
	tl := make([]float32, rows*V)
	sparse := Target{K: 2, SparseIDs: []int32{0, 1, 2, 3}, SparseProbs: []float32{0.5, 0.3, 0.5, 0.3}}
	mod := func(f func(*Options)) Options { o := DefaultOptions(); f(&o); return o }
	for _, tt := range []struct {
		name, want string
		o          Options
		tg         Target
	}{
		{"hard weight without hard", "hard weight", mod(func(o *Options) { o.HardWeight = 0.5 }), Target{TeacherLogits: tl}},
		{"hard weight with hard alone", "hard weight", mod(func(o *Options) { o.HardWeight = 0.5 }), Target{Hard: []int32{0, 1}}},
		{"hard weight above 1", "hard weight", mod(func(o *Options) { o.HardWeight = 1.5 }), Target{TeacherLogits: tl, Hard: []int32{0, 1}}},
		{"teacher temperature 0", "teacher temperature", mod(func(o *Options) { o.TeacherTemperature = 0 }), Target{TeacherLogits: tl}},
		{"negative top k", "top k", mod(func(o *Options) { o.TeacherTopK = -1 }), Target{TeacherLogits: tl}},
		{"tail 7", "tail", mod(func(o *Options) { o.TeacherTail = 7 }), Target{TeacherLogits: tl}},
		{"rest with reverse", "rest", mod(func(o *Options) { o.TeacherTopK, o.TeacherTail, o.Direction = 3, TailRest, Reverse }), Target{TeacherLogits: tl}},
		{"rest with JSD", "rest", mod(func(o *Options) { o.TeacherTopK, o.TeacherTail, o.Direction = 3, TailRest, JSD }), Target{TeacherLogits: tl}},
		{"rest with sparse reverse", "rest", mod(func(o *Options) { o.TeacherTail, o.Direction = TailRest, Reverse }), sparse},
		{"renormalize with reverse", "renormalized", mod(func(o *Options) { o.TeacherTopK, o.TeacherTail, o.Direction = 3, TailRenormalize, Reverse }), Target{TeacherLogits: tl}},
		{"renormalize with JSD beta 1", "renormalized", mod(func(o *Options) {
			o.TeacherTopK, o.TeacherTail, o.Direction, o.Beta = 3, TailRenormalize, JSD, 1
		}), Target{TeacherLogits: tl}},
		{"top k other than the sparse K", "sparse target", mod(func(o *Options) { o.TeacherTopK = 5 }), sparse},
		{"label smoothing on probs", "label smoothing", mod(func(o *Options) { o.LabelSmoothing = 0.1 }), Target{Probs: make([]float32, rows*V)}},
	} {
		_, err := NewComputer(nil).ForwardBackward(append([]float32(nil), z...), rows, V, tt.tg, tt.o, 1, nil)
		if !errors.Is(err, ErrOption) || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s = %v; want %v naming %q", tt.name, err, ErrOption, tt.want)
		}
	}
	// Allowed: the tail is ignored without a top k, or with k = V; JSD with
	// a renormalized top k; renormalized reverse KL with label smoothing.
	for _, o := range []Options{
		mod(func(o *Options) { o.TeacherTail, o.Direction = TailRest, Reverse }),
		mod(func(o *Options) { o.TeacherTopK, o.TeacherTail, o.Direction = V, TailRest, Reverse }),
		mod(func(o *Options) { o.TeacherTopK, o.TeacherTail, o.Direction = 3, TailRenormalize, JSD }),
		mod(func(o *Options) {
			o.TeacherTopK, o.TeacherTail, o.Direction, o.LabelSmoothing = 3, TailRenormalize, Reverse, 0.1
		}),
	} {
		if _, err := NewComputer(nil).ForwardBackward(append([]float32(nil), z...), rows, V, Target{TeacherLogits: tl}, o, 1, nil); err != nil {
			t.Errorf("options %+v = %v; want no error", o, err)
		}
	}
	if _, err := ParseTail("middle"); !errors.Is(err, ErrOption) {
		t.Errorf("ParseTail(middle) = %v; want %v", err, ErrOption)
	}
	for _, tail := range []Tail{TailUniform, TailRenormalize, TailRest} {
		if got, err := ParseTail(strings.ToUpper(tail.String())); got != tail || err != nil {
			t.Errorf("ParseTail(%q) = %v, %v; want %v", strings.ToUpper(tail.String()), got, err, tail)
		}
	}
}

// TestDistillNoAllocs: teacher targets allocate nothing in the steady state.
func TestDistillNoAllocs(t *testing.T) {
	rng := rand.New(rand.NewPCG(37, 38))
	const rows, V = 32, 700
	z := randLogits(rng, rows*V, 2)
	tl := randLogits(rng, rows*V, 2)
	hard := make([]int32, rows)
	c := NewComputer(nil)
	for _, k := range []int{0, 20} {
		for _, dir := range []Direction{Forward, Reverse, JSD} {
			o := DefaultOptions()
			o.Direction, o.TeacherTopK, o.HardWeight, o.Temperature = dir, k, 0.2, 2
			allocs := testing.AllocsPerRun(5, func() {
				if _, err := c.ForwardBackward(z, rows, V, Target{TeacherLogits: tl, Hard: hard}, o, 1e-3, nil); err != nil {
					t.Fatal(err)
				}
			})
			if allocs != 0 {
				t.Errorf("%v, top-k %d: ForwardBackward allocates %v times per call; want 0", dir, k, allocs)
			}
		}
	}
}
