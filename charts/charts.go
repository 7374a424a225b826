// Package charts draws klring's line and bar charts into PNG files: the loss
// curves of a run, the plots of a scaling sweep and of a comparison. It is a
// thin layer over gonum/plot with one look (palette, sizes, legends) for all
// of them.
//
// charts knows nothing of training, runs or metrics: callers hand it points.
package charts

import (
	"fmt"
	"image/color"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
)

// Width and Height are the size of every chart.
const (
	Width  = 8 * vg.Inch
	Height = 5 * vg.Inch
)

// XY is one point of a line.
type XY = plotter.XY

// Line is one series of a chart.
type Line struct {
	Name   string
	Points []XY
	Color  int  // index into the palette
	Dashed bool // dashed, with other point marks
	Marks  bool // draw the points too
}

// Chart is a line chart under construction.
type Chart struct {
	P *plot.Plot
}

// New returns an empty chart with a title, axis labels and a grid; the
// legend sits at the top left.
func New(title, x, y string) *Chart {
	p := plot.New()
	p.Title.Text = title
	p.X.Label.Text = x
	p.Y.Label.Text = y
	p.Add(plotter.NewGrid())
	p.Legend.Top = true
	p.Legend.Left = true
	return &Chart{P: p}
}

// Color is the palette's color i.
func Color(i int) color.Color { return plotutil.Color(i) }

// Add draws a line (skipped when it has no points).
func (c *Chart) Add(l Line) error {
	if len(l.Points) == 0 {
		return nil
	}
	xy := plotter.XYs(l.Points)
	ln, err := plotter.NewLine(xy)
	if err != nil {
		return fmt.Errorf("charts: line %q: %w", l.Name, err)
	}
	ln.Color = plotutil.Color(l.Color)
	ln.Width = vg.Points(1.3)
	if l.Dashed {
		ln.Dashes = []vg.Length{vg.Points(5), vg.Points(3)}
	}
	thumbs := []plot.Thumbnailer{ln}
	c.P.Add(ln)
	if l.Marks {
		s, err := plotter.NewScatter(xy)
		if err != nil {
			return fmt.Errorf("charts: line %q: %w", l.Name, err)
		}
		s.Color = ln.Color
		if l.Dashed {
			s.Shape = plotutil.Shape(1)
		}
		c.P.Add(s)
		thumbs = append(thumbs, s)
	}
	if l.Name != "" {
		c.P.Legend.Add(l.Name, thumbs...)
	}
	return nil
}

// HLine draws a gray dashed horizontal line at y from x0 to x1.
func (c *Chart) HLine(name string, y, x0, x1 float64) error {
	l, err := plotter.NewLine(plotter.XYs{{X: x0, Y: y}, {X: x1, Y: y}})
	if err != nil {
		return fmt.Errorf("charts: line %q: %w", name, err)
	}
	l.Color = color.Gray{Y: 90}
	l.Dashes = []vg.Length{vg.Points(4), vg.Points(3)}
	c.P.Add(l)
	if name != "" {
		c.P.Legend.Add(name, l)
	}
	return nil
}

// Bars is one series of a stacked bar chart.
type Bars struct {
	Name   string
	Values []float64
}

// Stacked draws bars stacked from the first series up, one group per label.
func (c *Chart) Stacked(labels []string, series []Bars) error {
	var prev *plotter.BarChart
	top := make([]float64, len(labels))
	for i, s := range series {
		b, err := plotter.NewBarChart(plotter.Values(s.Values), vg.Points(30))
		if err != nil {
			return fmt.Errorf("charts: bars %q: %w", s.Name, err)
		}
		b.Color = plotutil.Color(i)
		if prev != nil {
			b.StackOn(prev)
		}
		c.P.Add(b)
		c.P.Legend.Add(s.Name, b)
		prev = b
		for j, v := range s.Values {
			top[j] += v
		}
	}
	m := 0.0
	for _, v := range top {
		m = max(m, v)
	}
	c.P.Y.Min, c.P.Y.Max = 0, m*1.4 // room for the legend above the bars
	c.P.Legend.Left = false
	c.P.NominalX(labels...)
	return nil
}

// Save writes the chart as a PNG.
func (c *Chart) Save(path string) error {
	if err := c.P.Save(Width, Height, path); err != nil {
		return fmt.Errorf("charts: saving %s: %w", path, err)
	}
	return nil
}
