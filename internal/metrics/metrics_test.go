package metrics_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/kib-project/kib/internal/metrics"
)

type fixedDepth map[string]int

func (d fixedDepth) Pending(context.Context) (map[string]int, error) { return d, nil }

func TestMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := metrics.New(reg, fixedDepth{"build": 3})
	m.JobDone("build", 2*time.Second, "")
	m.JobDone("build", time.Second, "10")
	want := `
# HELP kib_job_failures_total Failed job attempts by kind and error (a composer worker error id, or "retry").
# TYPE kib_job_failures_total counter
kib_job_failures_total{error="10",kind="build"} 1
# HELP kib_queue_depth Jobs not finished, by kind.
# TYPE kib_queue_depth gauge
kib_queue_depth{kind="build"} 3
kib_queue_depth{kind="koji-finalize"} 0
kib_queue_depth{kind="koji-init"} 0
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "kib_job_failures_total", "kib_queue_depth"); err != nil {
		t.Error(err)
	}
	if n := testutil.CollectAndCount(reg, "kib_job_duration_seconds"); n != 1 {
		t.Errorf("duration series = %d, want 1", n)
	}
}

type queueWithRefunds struct{ fixedDepth }

func (queueWithRefunds) Unrefunded(context.Context) (int, error) { return 2, nil }

func TestUnrefundedReservations(t *testing.T) {
	reg := prometheus.NewRegistry()
	metrics.New(reg, queueWithRefunds{fixedDepth{}})
	want := `
# HELP kib_koji_unrefunded_reservations Koji reservations of finished composes that were neither imported nor refunded yet (refunds owed are retried).
# TYPE kib_koji_unrefunded_reservations gauge
kib_koji_unrefunded_reservations 2
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "kib_koji_unrefunded_reservations"); err != nil {
		t.Error(err)
	}
}
