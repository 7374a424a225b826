package cluster

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// StepMetrics is one line of metrics.jsonl: one committed step.
type StepMetrics struct {
	Step       uint64   `json:"step"`
	Epoch      uint64   `json:"epoch"`
	Workers    int      `json:"workers"`
	Loss       float64  `json:"loss"`     // the objective: mean loss per token
	TrainCE    float64  `json:"train_ce"` // mean cross-entropy of the batch's actual next tokens
	KLToTruth  *float64 `json:"kl_to_truth,omitempty"`
	LR         float64  `json:"lr"`
	GradNorm   float64  `json:"grad_norm"`
	Tokens     int64    `json:"tokens"`       // tokens of this step
	TotalTok   int64    `json:"tokens_total"` // tokens trained on so far
	TokensPerS float64  `json:"tokens_per_s"`
	ComputeS   float64  `json:"compute_s"`
	// ComputeCPUS is the slowest rank's compute in CPU seconds of its own
	// thread (scaling experiments); else its wall time.
	ComputeCPUS float64  `json:"compute_cpu_s"`
	Bytes       int64    `json:"allreduce_bytes"` // size of the reduced vector
	AllReduceS  float64  `json:"allreduce_s"`
	WaitS       float64  `json:"wait_s"`
	StepS       float64  `json:"step_s"`
	Attempts    int      `json:"attempts"`
	ValLoss     *float64 `json:"val_loss,omitempty"`
	ValKL       *float64 `json:"val_kl_to_truth,omitempty"`
}

// LedgerEntry is one line of ledger.jsonl: which windows each worker
// contributed to a committed step.
type LedgerEntry struct {
	Step  uint64        `json:"step"`
	Epoch uint64        `json:"epoch"`
	Batch []int32       `json:"batch"`
	Ranks []LedgerShare `json:"ranks"`
}

// LedgerShare is one worker's part of a committed step.
type LedgerShare struct {
	Worker  string  `json:"worker"`
	Windows []int32 `json:"windows"`
}

// jsonlFile appends one JSON object per line and syncs after each.
type jsonlFile struct {
	f *os.File
}

// openJSONL opens path for appending after dropping every line whose "step"
// is greater than keepThrough (lines of steps that were not checkpointed
// before a restart). The rewrite is atomic.
func openJSONL(path string, keepThrough uint64) (*jsonlFile, error) {
	if err := truncateJSONL(path, keepThrough); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return nil, fmt.Errorf("opening %s: %w", path, err)
	}
	return &jsonlFile{f: f}, nil
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
	changed := false
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
	return writeFileAtomic(path, out.Bytes())
}

func (j *jsonlFile) append(v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	b = append(b, '\n')
	if _, err := j.f.Write(b); err != nil {
		return fmt.Errorf("writing %s: %w", j.f.Name(), err)
	}
	return nil
}

func (j *jsonlFile) Close() error {
	if j == nil {
		return nil
	}
	if err := j.f.Sync(); err != nil {
		j.f.Close()
		return err
	}
	return j.f.Close()
}

// writeFileAtomic writes data to path through a temporary file, fsync and rename.
func writeFileAtomic(path string, data []byte) error {
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
	return nil
}

// promMetrics are the coordinator's Prometheus series, on a registry of its own
// (never the process-wide default), so two runs in one process do not collide.
type promMetrics struct {
	reg       *prometheus.Registry
	step      prometheus.Gauge
	loss      prometheus.Gauge
	valLoss   prometheus.Gauge
	workers   prometheus.Gauge
	tokens    prometheus.Counter
	tokPerS   prometheus.Gauge
	aborts    *prometheus.CounterVec
	dropped   prometheus.Counter
	stepTimes prometheus.Histogram
}

func newPromMetrics() *promMetrics {
	m := &promMetrics{
		reg:       prometheus.NewRegistry(),
		step:      prometheus.NewGauge(prometheus.GaugeOpts{Name: "klring_step", Help: "Last committed step."}),
		loss:      prometheus.NewGauge(prometheus.GaugeOpts{Name: "klring_train_loss", Help: "Training loss of the last committed step, nats/token."}),
		valLoss:   prometheus.NewGauge(prometheus.GaugeOpts{Name: "klring_val_loss", Help: "Held-out cross-entropy of the last evaluation, nats/token."}),
		workers:   prometheus.NewGauge(prometheus.GaugeOpts{Name: "klring_workers", Help: "Workers in the current membership epoch."}),
		tokens:    prometheus.NewCounter(prometheus.CounterOpts{Name: "klring_tokens_total", Help: "Tokens trained on."}),
		tokPerS:   prometheus.NewGauge(prometheus.GaugeOpts{Name: "klring_tokens_per_second", Help: "Throughput of the last committed step."}),
		aborts:    prometheus.NewCounterVec(prometheus.CounterOpts{Name: "klring_step_aborts_total", Help: "Aborted step attempts, by kind: deadline, heartbeat, left, worker_error, checksum, shard, segments."}, []string{"kind"}),
		dropped:   prometheus.NewCounter(prometheus.CounterOpts{Name: "klring_dropped_messages_total", Help: "Control messages dropped as malformed, foreign or stale."}),
		stepTimes: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "klring_step_seconds", Help: "Wall time of committed steps.", Buckets: prometheus.ExponentialBuckets(0.01, 2, 14)}),
	}
	m.reg.MustRegister(m.step, m.loss, m.valLoss, m.workers, m.tokens, m.tokPerS, m.aborts, m.dropped, m.stepTimes)
	return m
}

// serve starts the metrics endpoint on addr and returns the bound address and
// a stop function. An empty addr serves nothing.
func (m *promMetrics) serve(addr string) (string, func(), error) {
	if addr == "" {
		return "", func() {}, nil
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return "", nil, fmt.Errorf("run.metrics_addr %q: %w", addr, err)
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{}))
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go srv.Serve(ln)
	return ln.Addr().String(), func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
	}, nil
}
