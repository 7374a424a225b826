package kernels_test

import (
	"fmt"
	"sync/atomic"

	"github.com/klring/klring/kernels"
)

// A linear layer's forward pass, out = inp @ W^T: inp is [2, 3], W is [2, 3]
// (out features by in features), out is [2, 2].
func ExamplePool_Sgemm() {
	p := kernels.NewPool(2)
	inp := []float32{
		1, 2, 3,
		4, 5, 6,
	}
	w := []float32{
		1, 0, 0,
		0, 1, 1,
	}
	out := make([]float32, 4)
	p.Sgemm(false, true, 2, 2, 3, 1, inp, 3, w, 3, 0, out, 2)
	fmt.Println(out)
	// Output: [1 5 4 11]
}

func ExamplePool_For() {
	p := kernels.NewPool(2)
	var sum atomic.Int64
	p.For(100, 10, func(lo, hi int) {
		s := 0
		for i := lo; i < hi; i++ {
			s += i
		}
		sum.Add(int64(s))
	})
	fmt.Println(sum.Load())
	// Output: 4950
}
