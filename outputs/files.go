package outputs

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
)

// Run is the files a coordinator appends to while it runs.
type Run struct {
	Dir           string
	MetricsPath   string
	metrics       *jsonl
	ledger        *jsonl
	Rows          []StepMetrics // every committed step of the run, for the plot
	TotalTokens   int64
	TokensThisRun int64
	LastLoss      float64
}

// Open creates dir and opens metrics.jsonl and ledger.jsonl for appending,
// after dropping the lines of steps beyond keepThrough (a restart from an
// older checkpoint redoes them).
func Open(dir string, keepThrough uint64) (*Run, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("creating run.dir: %w", err)
	}
	o := &Run{Dir: dir, MetricsPath: filepath.Join(dir, "metrics.jsonl")}
	var err error
	if o.metrics, err = openJSONL(o.MetricsPath, keepThrough, false); err != nil {
		return nil, err
	}
	if o.ledger, err = openJSONL(filepath.Join(dir, "ledger.jsonl"), keepThrough, true); err != nil {
		o.metrics.close()
		return nil, err
	}
	rows, err := ReadMetrics(dir)
	if err != nil {
		o.Close()
		return nil, err
	}
	o.Rows = rows
	if len(rows) > 0 {
		o.TotalTokens = rows[len(rows)-1].TotalTok
		o.LastLoss = rows[len(rows)-1].Loss
	}
	return o, nil
}

// Close syncs and closes both logs.
func (o *Run) Close() error { return errors.Join(o.metrics.close(), o.ledger.close()) }

// AppendLedger appends a ledger line and syncs it to disk before it returns:
// a committed step is on disk before any replica is told to apply it.
func (o *Run) AppendLedger(e LedgerEntry) error { return o.ledger.append(e) }

// AppendMetrics appends a metrics line. Non-finite numbers are an error:
// nothing that is not a number reaches metrics.jsonl.
func (o *Run) AppendMetrics(m StepMetrics) error {
	for _, v := range []float64{m.Loss, m.TrainCE, m.LR, m.GradNorm, m.TokensPerS} {
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return fmt.Errorf("metrics of step %d: a value is %v", m.Step, v)
		}
	}
	if err := o.metrics.append(m); err != nil {
		return err
	}
	o.Rows = append(o.Rows, m)
	return nil
}

// ReadMetrics reads a run's metrics.jsonl (none: no rows).
func ReadMetrics(runDir string) ([]StepMetrics, error) {
	return readJSONL[StepMetrics](filepath.Join(runDir, "metrics.jsonl"))
}

// ReadLedger reads a run's ledger.jsonl (none: no rows).
func ReadLedger(runDir string) ([]LedgerEntry, error) {
	return readJSONL[LedgerEntry](filepath.Join(runDir, "ledger.jsonl"))
}

func readJSONL[T any](path string) ([]T, error) {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var rows []T
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 64<<20)
	for line := 1; sc.Scan(); line++ {
		var m T
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			return nil, fmt.Errorf("reading %s: line %d: %w", path, line, err)
		}
		rows = append(rows, m)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("reading %s: %w", path, err)
	}
	return rows, nil
}

// jsonl appends one JSON object per line.
type jsonl struct {
	f    *os.File
	sync bool // fsync after every line
}

// openJSONL opens path for appending after dropping every line whose "step"
// is greater than keepThrough, and a torn last line. The rewrite is atomic.
func openJSONL(path string, keepThrough uint64, sync bool) (*jsonl, error) {
	if err := truncateJSONL(path, keepThrough); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return nil, fmt.Errorf("opening %s: %w", path, err)
	}
	return &jsonl{f: f, sync: sync}, nil
}

func truncateJSONL(path string, keepThrough uint64) error {
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("reading %s: %w", path, err)
	}
	var out bytes.Buffer
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 1<<20), 64<<20)
	changed := len(data) > 0 && data[len(data)-1] != '\n'
	for sc.Scan() {
		var s struct {
			Step uint64 `json:"step"`
		}
		if json.Unmarshal(sc.Bytes(), &s) != nil || s.Step > keepThrough {
			changed = true
			continue
		}
		out.Write(sc.Bytes())
		out.WriteByte('\n')
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("reading %s: %w", path, err)
	}
	if !changed {
		return nil
	}
	return WriteFileAtomic(path, out.Bytes())
}

func (j *jsonl) append(v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("writing %s: %w", j.f.Name(), err)
	}
	b = append(b, '\n')
	if _, err := j.f.Write(b); err != nil {
		return fmt.Errorf("writing %s: %w", j.f.Name(), err)
	}
	if j.sync {
		if err := j.f.Sync(); err != nil {
			return fmt.Errorf("syncing %s: %w", j.f.Name(), err)
		}
	}
	return nil
}

func (j *jsonl) close() error {
	if j == nil {
		return nil
	}
	if err := j.f.Sync(); err != nil {
		j.f.Close()
		return err
	}
	return j.f.Close()
}

// WriteFileAtomic writes data to path through a temporary file in the same
// folder, fsync and rename, then syncs the folder: a crash leaves either the
// old file or the new one.
func WriteFileAtomic(path string, data []byte) error {
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
	return nil
}

// WriteJSON writes v as indented JSON, atomically.
func WriteJSON(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return WriteFileAtomic(path, append(b, '\n'))
}
