package outputs

import (
	"fmt"

	"github.com/klring/klring/charts"
)

// PlotLoss draws the training and held-out cross-entropy against tokens (the
// same quantity whatever loss is optimised, so the curves compare) and the
// entropy floor when it is known (floor >= 0) into a PNG at path.
func PlotLoss(path string, rows []StepMetrics, floor float64, title string) error {
	c := charts.New(title, "tokens", "nats / token")
	var train, val []charts.XY
	maxX := 0.0
	for _, r := range rows {
		x := float64(r.TotalTok)
		maxX = max(maxX, x)
		train = append(train, charts.XY{X: x, Y: r.TrainCE})
		if r.ValLoss != nil {
			val = append(val, charts.XY{X: x, Y: *r.ValLoss})
		}
	}
	if err := c.Add(charts.Line{Name: "train cross-entropy", Points: train}); err != nil {
		return err
	}
	if err := c.Add(charts.Line{Name: "held-out cross-entropy", Points: val, Color: 1, Marks: true}); err != nil {
		return err
	}
	if floor >= 0 && maxX > 0 {
		if err := c.HLine(fmt.Sprintf("entropy floor %.3f", floor), floor, 0, maxX); err != nil {
			return err
		}
	}
	c.P.Legend.Left = false
	return c.Save(path)
}
