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

// Distillation: a student's logits against a teacher's, at temperature 2
// with the T^2 scale, keeping the teacher's top 2 tokens (the rest spread
// evenly), mixed with the cross-entropy of the next tokens, as
// loss.temperature = 2, loss.scale_t2 = true, loss.teacher_top_k = 2,
// loss.teacher_tail = uniform, loss.hard_weight = 0.25.
func Example_distillation() {
	student := []float32{ // [rows x vocab]
		2, 1, 0, -1,
		0, 0, 1, 0,
	}
	target := loss.Target{
		TeacherLogits: []float32{
			3, 1, 0, 0,
			-1, 2, 2.5, 0,
		},
		Hard: []int32{0, 2}, // the next tokens
	}
	o := loss.DefaultOptions()
	o.Temperature, o.TeacherTemperature, o.ScaleT2 = 2, 2, true
	o.TeacherTopK, o.HardWeight = 2, 0.25
	if o.TeacherTail, _ = loss.ParseTail("uniform"); o.Validate() != nil {
		return
	}
	c := loss.NewComputer(kernels.NewPool(1))
	res, err := c.ForwardBackward(student, 2, 4, target, o, loss.GradScale(loss.BatchMean, 2, 4), nil)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Printf("mean loss %.4f = 0.75 * divergence %.4f + 0.25 * cross-entropy %.4f\n",
		loss.Reduce(res, loss.BatchMean, 4), res.Div/2, res.CE/2)
	fmt.Printf("teacher mass kept by its top 2: %.4f per row\n", res.Kept/2)
	fmt.Printf("gradient row 0 %.4f\n", student[0:4])
	// Output:
	// mean loss 0.3687 = 0.75 * divergence 0.2942 + 0.25 * cross-entropy 0.5919
	// teacher mass kept by its top 2: 0.7742 per row
	// gradient row 0 [-0.1166 0.0845 0.0442 -0.0121]
}
