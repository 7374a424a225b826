package cluster

import (
	"fmt"
	"image/color"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
)

// plotLoss draws the training and held-out cross-entropy against tokens (the
// same quantity whatever loss is optimised, so the curves compare), and
// the entropy floor as a horizontal line when it is known (floor >= 0), into a
// PNG at path.
func plotLoss(path string, rows []StepMetrics, floor float64, title string) error {
	p := plot.New()
	p.Title.Text = title
	p.X.Label.Text = "tokens"
	p.Y.Label.Text = "nats / token"
	p.Add(plotter.NewGrid())

	var train, val plotter.XYs
	maxX := 0.0
	for _, r := range rows {
		x := float64(r.TotalTok)
		if x > maxX {
			maxX = x
		}
		train = append(train, plotter.XY{X: x, Y: r.TrainCE})
		if r.ValLoss != nil {
			val = append(val, plotter.XY{X: x, Y: *r.ValLoss})
		}
	}
	if len(train) > 0 {
		l, err := plotter.NewLine(train)
		if err != nil {
			return fmt.Errorf("plotting training loss: %w", err)
		}
		l.Color = color.RGBA{R: 31, G: 119, B: 180, A: 255}
		l.Width = vg.Points(1.2)
		p.Add(l)
		p.Legend.Add("train cross-entropy", l)
	}
	if len(val) > 0 {
		l, err := plotter.NewLine(val)
		if err != nil {
			return fmt.Errorf("plotting held-out loss: %w", err)
		}
		l.Color = color.RGBA{R: 214, G: 39, B: 40, A: 255}
		l.Width = vg.Points(1.5)
		p.Add(l)
		p.Legend.Add("held-out cross-entropy", l)
	}
	if floor >= 0 && maxX > 0 {
		l, err := plotter.NewLine(plotter.XYs{{X: 0, Y: floor}, {X: maxX, Y: floor}})
		if err != nil {
			return fmt.Errorf("plotting the entropy floor: %w", err)
		}
		l.Color = color.Gray{Y: 80}
		l.Dashes = []vg.Length{vg.Points(4), vg.Points(3)}
		p.Add(l)
		p.Legend.Add(fmt.Sprintf("entropy floor %.3f", floor), l)
	}
	p.Legend.Top = true
	if err := p.Save(8*vg.Inch, 5*vg.Inch, path); err != nil {
		return fmt.Errorf("saving %s: %w", path, err)
	}
	return nil
}
