package compare

import (
	"encoding/csv"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"

	"github.com/klring/klring/charts"
)

// Write puts compare.csv, compare.json and the plots of res into dir (Run
// does it; ReadResult and Write redraw a comparison).
func Write(res *Result, dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("compare: %w", err)
	}
	res.CSV, res.JSON = filepath.Join(dir, "compare.csv"), filepath.Join(dir, "compare.json")
	if err := writeCSV(res, res.CSV); err != nil {
		return err
	}
	plots := []struct {
		file, title, y string
		get            func(Point) (float64, bool)
	}{
		{"compare_kl.png", "held-out exact KL to the truth", "KL(truth || model), nats / token",
			func(p Point) (float64, bool) { return deref(p.KL) }},
		{"compare_ce.png", "held-out cross-entropy", "nats / token",
			func(p Point) (float64, bool) { return p.CE, true }},
		{"compare_entropy.png", "held-out entropy of the model", "nats / token",
			func(p Point) (float64, bool) { return deref(p.Entropy) }},
		{"compare_sample_kl.png", "reverse KL to the truth on the model's own samples", "KL(model || truth), nats / token",
			func(p Point) (float64, bool) { return deref(p.SampleKL) }},
	}
	res.Plots = nil
	for _, pl := range plots {
		title := pl.title
		if src := source(res.Rows); src != "" {
			title += " (" + src + ")"
		}
		c := charts.New(title, "tokens", pl.y)
		any := false
		maxX := 0.0
		for i, r := range res.Rows {
			var pts []charts.XY
			for _, p := range r.Curve {
				if y, ok := pl.get(p); ok {
					pts = append(pts, charts.XY{X: float64(p.Tokens), Y: y})
					maxX = max(maxX, float64(p.Tokens))
				}
			}
			any = any || len(pts) > 0
			if err := c.Add(charts.Line{Name: r.Setting, Points: pts, Color: i, Marks: true, Dashed: i%2 == 1}); err != nil {
				return err
			}
		}
		if !any {
			continue // no setting has this metric (the KL without synthetic data)
		}
		if f, ok := floor(res.Rows); ok && (pl.file == "compare_ce.png" || pl.file == "compare_entropy.png") && maxX > 0 {
			name := fmt.Sprintf("entropy floor %.3f", f)
			if pl.file == "compare_entropy.png" {
				name = fmt.Sprintf("entropy of the truth %.3f", f)
			}
			if err := c.HLine(name, f, 0, maxX); err != nil {
				return err
			}
		}
		c.P.Legend.Left = false
		path := filepath.Join(dir, pl.file)
		if err := c.Save(path); err != nil {
			return err
		}
		res.Plots = append(res.Plots, path)
	}
	b, err := json.MarshalIndent(res, "", "  ")
	if err != nil {
		return fmt.Errorf("compare: %w", err)
	}
	if err := os.WriteFile(res.JSON, append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("compare: %w", err)
	}
	return nil
}

func deref(p *float64) (float64, bool) {
	if p == nil {
		return 0, false
	}
	return *p, true
}

// source is the data source the runs share ("" if they differ).
func source(rows []Row) string {
	if len(rows) == 0 {
		return ""
	}
	for _, r := range rows {
		if r.Source != rows[0].Source {
			return ""
		}
	}
	return rows[0].Source
}

// floor is the entropy floor the runs share, if they share one.
func floor(rows []Row) (float64, bool) {
	var f *float64
	for _, r := range rows {
		if r.Floor == nil || f != nil && *f != *r.Floor {
			return 0, false
		}
		f = r.Floor
	}
	return deref(f)
}

func writeCSV(res *Result, path string) error {
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("compare: %w", err)
	}
	w := csv.NewWriter(f)
	head := []string{"setting"}
	for _, v := range res.Vary {
		head = append(head, v.Key)
	}
	head = append(head, "steps", "tokens", "val_kl_to_truth", "val_loss", "val_entropy", "entropy_floor", "val_sample_kl", "tokens_per_s", "seconds", "run_dir")
	w.Write(head)
	num := func(x float64) string { return strconv.FormatFloat(x, 'g', 8, 64) }
	opt := func(p *float64) string {
		if p == nil {
			return ""
		}
		return num(*p)
	}
	for _, r := range res.Rows {
		rec := []string{r.Setting}
		for _, v := range res.Vary {
			rec = append(rec, r.Values[v.Key])
		}
		rec = append(rec, strconv.FormatUint(r.Steps, 10), strconv.FormatInt(r.Tokens, 10), opt(r.KL), num(r.CE), num(r.Entropy),
			opt(r.Floor), opt(r.SampleKL), num(r.TokensPerS), num(r.Seconds), r.RunDir)
		w.Write(rec)
	}
	w.Flush()
	if err := w.Error(); err != nil {
		f.Close()
		return fmt.Errorf("compare: writing %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("compare: writing %s: %w", path, err)
	}
	return nil
}

// ReadResult reads the compare.json of a comparison in dir.
func ReadResult(dir string) (Result, error) {
	var res Result
	b, err := os.ReadFile(filepath.Join(dir, "compare.json"))
	if err != nil {
		return res, fmt.Errorf("compare: %w", err)
	}
	if err := json.Unmarshal(b, &res); err != nil {
		return res, fmt.Errorf("compare: %s: %w", filepath.Join(dir, "compare.json"), err)
	}
	return res, nil
}
