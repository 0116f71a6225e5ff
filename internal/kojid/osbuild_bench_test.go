package kojid_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/kib-project/kib/internal/composer"
	"github.com/kib-project/kib/internal/distro"
	"github.com/kib-project/kib/internal/jobs"
	"github.com/kib-project/kib/internal/jobs/jobstest"
	"github.com/kib-project/kib/internal/kojid"
	"github.com/kib-project/kib/internal/store"
	"github.com/kib-project/kib/internal/worker"
)

// BenchmarkOSBuildImageLatency measures, for remote osbuildImage tasks on
// kojitest + kib serve's compose service (stand-in builder), the time from
// the compose's last job finishing in the service (its finish time in the
// queue) to the Koji task
// closing (tagBuild subtask included), with kib's adaptive polling and with
// the builder plugin's fixed 2 s interval as the baseline.
func BenchmarkOSBuildImageLatency(b *testing.B) {
	for _, mode := range []struct {
		name             string
		min, max, finish time.Duration
	}{{"kib-adaptive", 0, 0, 0}, {"plugin-2s", 2 * time.Second, 2 * time.Second, 2 * time.Second}} {
		b.Run(mode.name, func(b *testing.B) {
			bb := osbSetup(b, false)
			h, err := kojid.NewOSBuildImage(kojid.OSBuildConfig{KojiServer: osbKojiServer, PollMin: mode.min, PollMax: mode.max,
				PollFinish: mode.finish, Composer: &kojid.ComposerConfig{Server: bb.api.URL}})
			if err != nil {
				b.Fatal(err)
			}
			bb.handler = h
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan struct{})
			go func() { defer close(done); bb.runHost(ctx, b) }()
			defer func() { cancel(); <-done }()
			n := max(b.N, 8)
			var lat []time.Duration
			b.ResetTimer()
			for i := 0; i < n; i++ {
				id := bb.submit(b, "bench", "1", "debian-12", "tar", "debian-12", []any{"x86_64"}, map[string]any{"repo": []any{"http://deb.example.org/debian"}})
				closed := bb.waitClosed(b, id, time.Minute)
				res, err := bb.user.GetTaskResult(ctx, id)
				if err != nil {
					b.Fatal(err)
				}
				cid, _ := res.(map[string]any)["composer"].(map[string]any)["id"].(string)
				cj, err := bb.q.Get(ctx, "", cid)
				if err != nil {
					b.Fatal(err)
				}
				lat = append(lat, closed.Sub(cj.Finalize.Finished))
			}
			b.StopTimer()
			b.Logf("in order: %v", lat)
			slices.Sort(lat)
			b.ReportMetric(float64(lat[len(lat)/2].Milliseconds()), "median-ms")
			b.ReportMetric(float64(lat[len(lat)*9/10].Milliseconds()), "p90-ms")
			b.Logf("%s: compose finished → task closed over %d tasks: median %v, p90 %v, max %v", mode.name, n, lat[len(lat)/2], lat[len(lat)*9/10], lat[len(lat)-1])
		})
	}
}

// waitClosed polls the hub every millisecond and returns when the task
// closed; it fails the test after timeout.
func (b *osbBundle) waitClosed(tb testing.TB, id int64, timeout time.Duration) time.Time {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		switch b.hub.TaskState(int(id)) {
		case 2:
			return time.Now()
		case 3, 5:
			_, err := b.user.GetTaskResult(context.Background(), id)
			tb.Fatalf("task %d: %v", id, err)
		}
		time.Sleep(time.Millisecond)
	}
	tb.Fatalf("task %d did not close", id)
	return time.Time{}
}

// BenchmarkOSBuildImageRealBuild builds a real tar image through a remote
// osbuildImage task (kib serve's compose service with the engine builder,
// fresh store) and reports its wall time; bench/kojid-osbuild.sh compares it
// with `kib build tar` run in the same way. Runs only with KIB_BENCH_REAL=1.
func BenchmarkOSBuildImageRealBuild(b *testing.B) {
	if os.Getenv("KIB_BENCH_REAL") == "" {
		b.Skip("KIB_BENCH_REAL=1 runs a real image build")
	}
	cat, err := distro.Load("")
	if err != nil {
		b.Fatal(err)
	}
	dir := b.TempDir()
	st, err := store.Open(filepath.Join(dir, "store"))
	if err != nil {
		b.Fatal(err)
	}
	bb := osbSetup(b, false)
	q := jobstest.StartQueue(b, jobs.Config{Workers: 1, Builder: &worker.EngineBuilder{Distros: cat, Store: st, CacheDir: filepath.Join(dir, "cache")},
		Koji: &jobs.KojiHub{Server: osbKojiServer, Connect: bb.hub.Connector("kib", "pw")}})
	api, err := composer.New(composer.Config{Queue: q, Distros: cat, KojiServer: osbKojiServer})
	if err != nil {
		b.Fatal(err)
	}
	srv := newLocalHTTP(b, api)
	h, err := kojid.NewOSBuildImage(kojid.OSBuildConfig{KojiServer: osbKojiServer, Composer: &kojid.ComposerConfig{Server: srv}, Deadline: time.Hour})
	if err != nil {
		b.Fatal(err)
	}
	bb.handler = h
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); bb.runHost(ctx, b) }()
	defer func() { cancel(); <-done }()
	mirror := os.Getenv("KIB_BENCH_MIRROR")
	if mirror == "" {
		mirror = "http://deb.debian.org/debian"
	}
	start := time.Now()
	id := bb.submit(b, "bench-real", "1", "debian-12", "tar", "debian-12", []any{"x86_64"}, map[string]any{"repo": []any{mirror}})
	bb.waitClosed(b, id, time.Hour)
	el := time.Since(start)
	b.ReportMetric(el.Seconds(), "task-s")
	fmt.Printf("KOJID_OSBUILD_TASK_SECONDS %.2f\n", el.Seconds())
}
