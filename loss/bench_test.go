package loss

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/klring/klring/kernels"
)

// BenchmarkKL times ForwardBackward (forward KL, gradient over the logits) on
// 2 threads. B/s (SetBytes) counts the bytes read: logits, plus the dense
// target for probs; traffic-GB/s adds the gradient written. cpu-ms/op is the
// process's CPU time per op (both threads): on a shared machine it says more
// than the wall time.
func BenchmarkKL(b *testing.B) {
	const rows = 8192
	for _, kind := range []targetKind{kindHard, kindProbs} {
		for _, shape := range [][2]int{{rows, 256}, {rows, 4096}, {rows, 32768}, {512, 50257}} {
			rows, V := shape[0], shape[1]
			b.Run(fmt.Sprintf("%s/V=%d/rows=%d", kindNames[kind], V, rows), func(b *testing.B) {
				rng := rand.New(rand.NewPCG(1, uint64(V)))
				logits := randLogits(rng, rows*V, 2)
				var tg Target
				read := int64(rows * V * 4)
				if kind == kindHard {
					tg = randTarget(rng, kindHard, rows, V, false)
				} else {
					tg = randTarget(rng, kindProbs, rows, V, false)
					read *= 2
				}
				c := NewComputer(kernels.NewPool(2))
				o := DefaultOptions()
				b.SetBytes(read)
				cpu0 := cpuSeconds()
				for b.Loop() {
					// The gradient of one iteration is the next one's logits:
					// finite and of ordinary size, so the work is the same.
					if _, err := c.ForwardBackward(logits, rows, V, tg, o, 1/float32(rows), nil); err != nil {
						b.Fatal(err)
					}
				}
				sec := b.Elapsed().Seconds() / float64(b.N)
				b.ReportMetric(float64(read+int64(rows*V*4))/sec/1e9, "traffic-GB/s")
				b.ReportMetric(sec*1e3, "ms/op")
				if cpu := cpuSeconds() - cpu0; cpu0 > 0 {
					b.ReportMetric(cpu/float64(b.N)*1e3, "cpu-ms/op")
				}
			})
		}
	}
	// Distillation: a teacher's logits, dense and top-k, every direction, at
	// V = 4096 and at GPT-2's vocabulary.
	for _, shape := range [][2]int{{rows, 4096}, {512, 50257}} {
		for _, c := range distillBenches {
			if shape[1] > 4096 && (c.tail != TailUniform || c.store) {
				continue
			}
			b.Run(fmt.Sprintf("%s/%v/V=%d/rows=%d", c.name, c.dir, shape[1], shape[0]), func(b *testing.B) {
				benchDistill(b, c, shape[0], shape[1])
			})
		}
	}
}

// distillBench is one teacher-target case of BenchmarkKL.
type distillBench struct {
	name  string
	dir   Direction
	topK  int
	tail  Tail
	store bool // the top k as a Sparse target (a precomputed teacher store)
}

var distillBenches = []distillBench{
	{name: "teacher", dir: Forward},
	{name: "teacher", dir: Reverse},
	{name: "teacher", dir: JSD},
	{name: "teacher-top64-uniform", dir: Forward, topK: 64},
	{name: "teacher-top64-renormalize", dir: Forward, topK: 64, tail: TailRenormalize},
	{name: "teacher-top64-rest", dir: Forward, topK: 64, tail: TailRest},
	{name: "teacher-top64-uniform", dir: Reverse, topK: 64},
	{name: "teacher-top64-uniform", dir: JSD, topK: 64},
	{name: "store-top64-uniform", dir: Forward, topK: 64, store: true},
	{name: "store-top64-uniform", dir: Reverse, topK: 64, store: true},
	{name: "store-top64-uniform", dir: JSD, topK: 64, store: true},
}

// benchDistill times ForwardBackward against a teacher's logits (or its top
// k as a sparse store) on 2 threads; B/s counts the bytes read (student and
// teacher logits, or the store's ids and probabilities), traffic-GB/s adds
// the gradient written.
func benchDistill(b *testing.B, c distillBench, rows, V int) {
	rng := rand.New(rand.NewPCG(3, uint64(V)))
	logits := randLogits(rng, rows*V, 2)
	teacher := randLogits(rng, rows*V, 3)
	o := DefaultOptions()
	o.Direction, o.TeacherTopK, o.TeacherTail = c.dir, c.topK, c.tail
	tg := Target{TeacherLogits: teacher}
	read := int64(2 * rows * V * 4)
	if c.store {
		ids, ps := topKRows(teacher, rows, V, c.topK, 1)
		tg = Target{K: c.topK, SparseIDs: ids, SparseProbs: ps}
		read = int64(rows*V*4 + rows*c.topK*8)
	}
	lc := NewComputer(kernels.NewPool(2))
	b.SetBytes(read)
	cpu0 := cpuSeconds()
	for b.Loop() {
		if _, err := lc.ForwardBackward(logits, rows, V, tg, o, 1.0/float32(rows), nil); err != nil {
			b.Fatal(err)
		}
	}
	sec := b.Elapsed().Seconds() / float64(b.N)
	b.ReportMetric(float64(read+int64(rows*V*4))/sec/1e9, "traffic-GB/s")
	b.ReportMetric(sec*1e3, "ms/op")
	if cpu := cpuSeconds() - cpu0; cpu0 > 0 {
		b.ReportMetric(cpu/float64(b.N)*1e3, "cpu-ms/op")
	}
}

// BenchmarkKLDirections times ForwardBackward of each direction against
// dense probabilities on 2 threads (bytes as BenchmarkKL's probs).
func BenchmarkKLDirections(b *testing.B) {
	const rows, V = 8192, 4096
	rng := rand.New(rand.NewPCG(2, V))
	logits := randLogits(rng, rows*V, 2)
	tg := randTarget(rng, kindProbs, rows, V, false)
	for _, dir := range []Direction{Forward, Reverse, JSD} {
		b.Run(fmt.Sprintf("%v/V=%d/rows=%d", dir, V, rows), func(b *testing.B) {
			c := NewComputer(kernels.NewPool(2))
			o := DefaultOptions()
			o.Direction = dir
			b.SetBytes(2 * rows * V * 4)
			cpu0 := cpuSeconds()
			for b.Loop() {
				if _, err := c.ForwardBackward(logits, rows, V, tg, o, 1.0/rows, nil); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(b.Elapsed().Seconds()/float64(b.N)*1e3, "ms/op")
			if cpu := cpuSeconds() - cpu0; cpu0 > 0 {
				b.ReportMetric(cpu/float64(b.N)*1e3, "cpu-ms/op")
			}
		})
	}
}
