package charts

import (
	"bytes"
	"image/png"
	"os"
	"path/filepath"
	"testing"
)

func TestChartsWritePNGs(t *testing.T) {
	dir := t.TempDir()
	c := New("loss", "tokens", "nats / token")
	if err := c.Add(Line{Name: "train", Points: []XY{{X: 0, Y: 3}, {X: 10, Y: 2}, {X: 20, Y: 1.5}}}); err != nil {
		t.Fatal(err)
	}
	if err := c.Add(Line{Name: "held-out", Points: []XY{{X: 0, Y: 3.1}, {X: 20, Y: 1.7}}, Color: 1, Dashed: true, Marks: true}); err != nil {
		t.Fatal(err)
	}
	if err := c.Add(Line{Name: "empty"}); err != nil {
		t.Fatal(err)
	}
	if err := c.HLine("floor 1.2", 1.2, 0, 20); err != nil {
		t.Fatal(err)
	}
	b := New("step", "workers", "ms")
	if err := b.Stacked([]string{"1", "2"}, []Bars{{"compute", []float64{10, 6}}, {"ring", []float64{0, 3}}}); err != nil {
		t.Fatal(err)
	}
	for name, ch := range map[string]*Chart{"lines.png": c, "bars.png": b} {
		path := filepath.Join(dir, name)
		if err := ch.Save(path); err != nil {
			t.Fatal(err)
		}
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		img, err := png.Decode(bytes.NewReader(data))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if r := img.Bounds(); r.Dx() < 500 || r.Dy() < 300 {
			t.Errorf("%s is %v; want a full-size chart", name, r)
		}
	}
	if err := c.Save(filepath.Join(dir, "no", "such", "dir.png")); err == nil {
		t.Error("saving into a missing folder succeeded")
	}
}
