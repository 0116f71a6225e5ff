// Package metrics exposes kib's service metrics to Prometheus: queue depth,
// job durations and failures by kind.
package metrics

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/kib-project/kib/internal/jobs"
)

// Metrics collects job metrics; it implements jobs.Observer.
type Metrics struct {
	durations *prometheus.HistogramVec
	failures  *prometheus.CounterVec
}

var _ jobs.Observer = (*Metrics)(nil)

// Depth reports unfinished jobs by kind; *jobs.Queue is one.
type Depth interface {
	Pending(ctx context.Context) (map[string]int, error)
}

// New registers kib's metrics with reg. depth may be nil (a worker has no
// queue of its own).
func New(reg prometheus.Registerer, depth Depth) *Metrics {
	m := &Metrics{
		durations: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "kib", Name: "job_duration_seconds",
			Help:    "Duration of job attempts by kind.",
			Buckets: []float64{.01, .1, 1, 10, 60, 300, 900, 1800, 3600, 7200},
		}, []string{"kind"}),
		failures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "kib", Name: "job_failures_total",
			Help: "Failed job attempts by kind and error (a composer worker error id, or \"retry\").",
		}, []string{"kind", "error"}),
	}
	reg.MustRegister(m.durations, m.failures)
	if depth != nil {
		reg.MustRegister(&depthCollector{depth: depth, desc: prometheus.NewDesc("kib_queue_depth", "Jobs not finished, by kind.", []string{"kind"}, nil)})
	}
	if u, ok := depth.(Unrefunded); ok {
		reg.MustRegister(&unrefundedCollector{u: u, desc: prometheus.NewDesc("kib_koji_unrefunded_reservations",
			"Koji reservations of finished composes that were neither imported nor refunded yet (refunds owed are retried).", nil, nil)})
	}
	return m
}

// JobDone implements jobs.Observer.
func (m *Metrics) JobDone(kind string, d time.Duration, failure string) {
	m.durations.WithLabelValues(kind).Observe(d.Seconds())
	if failure != "" {
		m.failures.WithLabelValues(kind, failure).Inc()
	}
}

// Unrefunded counts Koji reservations still owed a refund; *jobs.Queue is
// one.
type Unrefunded interface {
	Unrefunded(ctx context.Context) (int, error)
}

type unrefundedCollector struct {
	u    Unrefunded
	desc *prometheus.Desc
}

func (c *unrefundedCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c *unrefundedCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	n, err := c.u.Unrefunded(ctx)
	if err != nil {
		ch <- prometheus.NewInvalidMetric(c.desc, err)
		return
	}
	ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, float64(n))
}

type depthCollector struct {
	depth Depth
	desc  *prometheus.Desc
}

func (c *depthCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c *depthCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	counts, err := c.depth.Pending(ctx)
	if err != nil {
		ch <- prometheus.NewInvalidMetric(c.desc, err)
		return
	}
	for _, k := range []string{jobs.KindKojiInit, jobs.KindBuild, jobs.KindKojiFinalize} {
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, float64(counts[k]), k)
	}
}
