package outputs

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Prom holds a coordinator's Prometheus series, on a registry of its own
// (never the process-wide default), so two runs in one process do not
// collide.
type Prom struct {
	reg       *prometheus.Registry
	Step      prometheus.Gauge
	Loss      prometheus.Gauge
	ValLoss   prometheus.Gauge
	Workers   prometheus.Gauge
	Tokens    prometheus.Counter
	TokPerS   prometheus.Gauge
	MFU       prometheus.Gauge
	Aborts    *prometheus.CounterVec
	Dropped   *prometheus.CounterVec
	Evictions prometheus.Counter
	StepTimes prometheus.Histogram
}

// NewProm returns the series, registered.
func NewProm() *Prom {
	m := &Prom{
		reg:       prometheus.NewRegistry(),
		Step:      prometheus.NewGauge(prometheus.GaugeOpts{Name: "klring_step", Help: "Last committed step."}),
		Loss:      prometheus.NewGauge(prometheus.GaugeOpts{Name: "klring_train_loss", Help: "Training loss of the last committed step, nats/token."}),
		ValLoss:   prometheus.NewGauge(prometheus.GaugeOpts{Name: "klring_val_loss", Help: "Held-out cross-entropy of the last evaluation, nats/token."}),
		Workers:   prometheus.NewGauge(prometheus.GaugeOpts{Name: "klring_workers", Help: "Workers in the current membership epoch."}),
		Tokens:    prometheus.NewCounter(prometheus.CounterOpts{Name: "klring_tokens_total", Help: "Tokens trained on."}),
		TokPerS:   prometheus.NewGauge(prometheus.GaugeOpts{Name: "klring_tokens_per_second", Help: "Throughput of the last committed step."}),
		MFU:       prometheus.NewGauge(prometheus.GaugeOpts{Name: "klring_mfu", Help: "Model FLOPs utilisation of the last committed step (training FLOPs per second over the peak)."}),
		Aborts:    prometheus.NewCounterVec(prometheus.CounterOpts{Name: "klring_step_aborts_total", Help: "Aborted step attempts, by kind (docs/protocol.md)."}, []string{"kind"}),
		Dropped:   prometheus.NewCounterVec(prometheus.CounterOpts{Name: "klring_dropped_messages_total", Help: "Control messages dropped as malformed, foreign, stale or out of bounds, by message."}, []string{"message"}),
		Evictions: prometheus.NewCounter(prometheus.CounterOpts{Name: "klring_evictions_total", Help: "Workers evicted for failing attempts in a row."}),
		StepTimes: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "klring_step_seconds", Help: "Wall time of committed steps.", Buckets: prometheus.ExponentialBuckets(0.01, 2, 14)}),
	}
	m.reg.MustRegister(m.Step, m.Loss, m.ValLoss, m.Workers, m.Tokens, m.TokPerS, m.MFU, m.Aborts, m.Dropped, m.Evictions, m.StepTimes)
	return m
}

// Serve starts the metrics endpoint on addr and returns the bound address
// and a stop function. An empty addr serves nothing.
func (m *Prom) Serve(addr string) (string, func(), error) {
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
