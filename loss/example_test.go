package loss_test

import (
	"fmt"

	"github.com/klring/klring/kernels"
	"github.com/klring/klring/loss"
)

// Two rows over a vocabulary of 3: forward KL against soft targets, reduced
// as PyTorch's reduction="batchmean", with the gradient of that mean written
// over the logits.
func Example() {
	logits := []float32{ // [rows x vocab]
		2, 1, 0,
		0, 0, 0,
	}
	target := loss.Target{Probs: []float32{
		1, 0, 0,
		0.5, 0.25, 0.25,
	}}
	c := loss.NewComputer(kernels.NewPool(1))
	o := loss.DefaultOptions()
	res, err := c.ForwardBackward(logits, 2, 3, target, o, loss.GradScale(loss.BatchMean, 2, 3), nil)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Printf("batchmean KL %.4f over %d rows\n", loss.Reduce(res, loss.BatchMean, 3), res.Rows)
	fmt.Printf("gradient row 0 %.4f\n", logits[0:3])
	fmt.Printf("gradient row 1 %.4f\n", logits[3:6])

	// Bad data names its row.
	logits[4] = 1 / float32(len(logits)-6) // +Inf
	_, err = c.Forward(logits, 2, 3, target, o, nil)
	fmt.Println(err)
	// Output:
	// batchmean KL 0.2332 over 2 rows
	// gradient row 0 [-0.1674 0.1224 0.0450]
	// gradient row 1 [-0.0833 0.0417 0.0417]
	// loss: forward: row 1: non-finite logit: logit 1 = +Inf
}
