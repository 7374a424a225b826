package cluster

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// runOutputs are the files a coordinator appends to while it runs.
type runOutputs struct {
	metricsPath   string
	metrics       *jsonlFile
	ledger        *jsonlFile
	rows          []StepMetrics // every committed step of the run, for the plot
	totalTokens   int64
	tokensThisRun int64
	lastLoss      float64
}

// openRunOutputs creates dir and opens metrics.jsonl and ledger.jsonl for
// appending after dropping lines of steps beyond the committed step (a restart
// from an older checkpoint redoes them).
func openRunOutputs(dir string, step uint64) (*runOutputs, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("creating run.dir: %w", err)
	}
	o := &runOutputs{metricsPath: filepath.Join(dir, "metrics.jsonl")}
	var err error
	if o.metrics, err = openJSONL(o.metricsPath, step); err != nil {
		return nil, err
	}
	if o.ledger, err = openJSONL(filepath.Join(dir, "ledger.jsonl"), step); err != nil {
		o.metrics.Close()
		return nil, err
	}
	rows, err := readMetrics(o.metricsPath)
	if err != nil {
		o.Close()
		return nil, err
	}
	o.rows = rows
	if len(rows) > 0 {
		o.totalTokens = rows[len(rows)-1].TotalTok
		o.lastLoss = rows[len(rows)-1].Loss
	}
	return o, nil
}

func (o *runOutputs) Close() error {
	return errors.Join(o.metrics.Close(), o.ledger.Close())
}

// readMetrics reads metrics.jsonl.
func readMetrics(path string) ([]StepMetrics, error) {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var rows []StepMetrics
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 64<<20)
	for sc.Scan() {
		var m StepMetrics
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			return nil, fmt.Errorf("reading %s: %w", path, err)
		}
		rows = append(rows, m)
	}
	return rows, sc.Err()
}

// ReadMetrics reads a run's metrics.jsonl.
func ReadMetrics(runDir string) ([]StepMetrics, error) {
	return readMetrics(filepath.Join(runDir, "metrics.jsonl"))
}

// ReadLedger reads a run's ledger.jsonl.
func ReadLedger(runDir string) ([]LedgerEntry, error) {
	path := filepath.Join(runDir, "ledger.jsonl")
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var rows []LedgerEntry
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 64<<20)
	for sc.Scan() {
		var m LedgerEntry
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			return nil, fmt.Errorf("reading %s: %w", path, err)
		}
		rows = append(rows, m)
	}
	return rows, sc.Err()
}
