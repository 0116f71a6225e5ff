package jobs_test

import (
	"context"
	"fmt"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/kib-project/kib/internal/jobs"
	"github.com/kib-project/kib/internal/jobs/jobstest"
)

// noopBuilder is the benchmark's stand-in build step: it records when each
// build started and returns at once.
type noopBuilder struct {
	mu      sync.Mutex
	started map[string]time.Time
	ch      chan string
}

func (n *noopBuilder) Build(_ context.Context, a *jobs.BuildArgs) (*jobs.BuildResult, error) {
	n.mu.Lock()
	if _, ok := n.started[a.ComposeID]; !ok {
		n.started[a.ComposeID] = time.Now()
	}
	n.mu.Unlock()
	select {
	case n.ch <- a.ComposeID:
	default:
	}
	return &jobs.BuildResult{}, nil
}

func percentile(d []time.Duration, p float64) time.Duration {
	sort.Slice(d, func(i, j int) bool { return d[i] < d[j] })
	return d[int(float64(len(d)-1)*p)]
}

// BenchmarkComposeQueue measures the queue, not builds: submit-to-start
// latency (one compose at a time, time from Submit to the build step
// starting) for plain and Koji composes, and sustained Koji composes per
// second with 1 and 4 workers for 1,000 composes submitted at once. Run it
// with bench/compose.sh.
func BenchmarkComposeQueue(b *testing.B) {
	const latencySamples, throughputComposes = 200, 1000
	for _, backend := range jobstest.Backends {
		for _, workers := range []int{1, 4} {
			b.Run(fmt.Sprintf("%s/workers=%d", backend, workers), func(b *testing.B) {
				ctx := context.Background()
				nb := &noopBuilder{started: map[string]time.Time{}, ch: make(chan string, 1)}
				q, err := jobs.Open(ctx, jobs.Config{Database: jobstest.Database(b, backend), StateDir: b.TempDir(), Workers: workers, Builder: nb, Koji: &jobstest.KojiRecorder{}, PollInterval: 20 * time.Millisecond})
				if err != nil {
					b.Fatal(err)
				}
				if err := q.Start(ctx); err != nil {
					b.Fatal(err)
				}
				defer func() {
					sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
					defer cancel()
					_ = q.Stop(sctx)
					q.Close()
				}()
				b.ResetTimer()
				for range b.N {
					for _, koji := range []bool{false, true} {
						var lat []time.Duration
						for range latencySamples {
							c := kojiCompose("x86_64")
							if !koji {
								c.Koji = nil
							}
							t0 := time.Now()
							id, err := q.Submit(ctx, c)
							if err != nil {
								b.Fatal(err)
							}
							for got := <-nb.ch; got != id; got = <-nb.ch {
							}
							nb.mu.Lock()
							lat = append(lat, nb.started[id].Sub(t0))
							nb.mu.Unlock()
						}
						name := "plain"
						if koji {
							name = "koji"
						}
						b.ReportMetric(float64(percentile(lat, 0.5).Microseconds())/1000, name+"-start-p50-ms")
						b.ReportMetric(float64(percentile(lat, 0.99).Microseconds())/1000, name+"-start-p99-ms")
					}
					ids := make([]string, 0, throughputComposes)
					t0 := time.Now()
					for range throughputComposes {
						id, err := q.Submit(ctx, kojiCompose("x86_64"))
						if err != nil {
							b.Fatal(err)
						}
						ids = append(ids, id)
					}
					for _, id := range ids {
						for {
							c, err := q.Get(ctx, "", id)
							if err != nil {
								b.Fatal(err)
							}
							if jobs.Derive(c).Status == jobs.StatusSuccess {
								break
							}
							time.Sleep(5 * time.Millisecond)
						}
					}
					b.ReportMetric(float64(throughputComposes)/time.Since(t0).Seconds(), "koji-composes/s")
				}
			})
		}
	}
}
