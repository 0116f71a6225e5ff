package kojid

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/kib-project/kib/internal/koji"
	"github.com/kib-project/kib/internal/store"
)

// BenchmarkOpenLatency measures the time from the imageBuilderBuild call to
// the host opening the task (its handler starting, right after
// host.openTask), over 50 tasks, with the poll interval in
// KIB_BENCH_INTERVAL (default 1s). It reports the median and p90.
func BenchmarkOpenLatency(b *testing.B) {
	interval := time.Second
	if v := os.Getenv("KIB_BENCH_INTERVAL"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			b.Fatal(err)
		}
		interval = d
	}
	for i := 0; i < b.N; i++ {
		lat := openLatencies(b, interval, 50)
		slices.Sort(lat)
		b.ReportMetric(lat[len(lat)/2].Seconds(), "median-s")
		b.ReportMetric(lat[len(lat)*9/10].Seconds(), "p90-s")
		b.ReportMetric(interval.Seconds(), "poll-interval-s")
	}
}

func openLatencies(b *testing.B, interval time.Duration, n int) []time.Duration {
	e := newEnv(b)
	opened := make(chan time.Time, 1)
	h := HandlerFunc(func(ctx context.Context, t *Task) (any, error) {
		opened <- time.Now()
		return "ok", nil
	})
	e.hub.AddHost("builder1", "pw-builder1", []string{"x86_64"}, "image")
	c, err := e.hub.Connector("builder1", "pw-builder1")(context.Background())
	if err != nil {
		b.Fatal(err)
	}
	d := &Daemon{Hub: c, Handlers: map[string]Handler{"imageBuilderBuild": h}, WorkDir: b.TempDir(),
		Interval: interval, MinSpace: -1, MaxLoad: -1}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = d.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	var out []time.Duration
	for i := 0; i < n; i++ {
		// Submit at a random phase of the host's poll cycle.
		time.Sleep(time.Duration(i%7) * interval / 7)
		start := time.Now()
		if _, err := e.user.Call(ctx, "imageBuilderBuild", "debian-12", []any{}, []any{"tar"}, "bench", "1", map[string]any{}); err != nil {
			b.Fatal(err)
		}
		select {
		case at := <-opened:
			out = append(out, at.Sub(start))
		case <-time.After(time.Minute):
			b.Fatal("task not opened within a minute")
		}
	}
	return out
}

// BenchmarkTaskVsBuild builds a tar image twice from the same store state:
// `kib build` (the binary in KIB_BIN) and an imageBuilderBuild task run by a
// daemon with the engine builder against kojitest (resolve, build, upload,
// import, tag). Both start from an empty store and a warm apt cache, then
// both again from their warm stores. It reports task/build ratios.
func BenchmarkTaskVsBuild(b *testing.B) {
	bin := os.Getenv("KIB_BIN")
	if bin == "" {
		b.Skip("set KIB_BIN to a kib binary (bench/kojid.sh does)")
	}
	root := b.TempDir()
	cache := filepath.Join(root, "cache")
	if out, err := exec.Command(bin, "manifest", "tar", "--cache-dir", cache).CombinedOutput(); err != nil {
		b.Fatalf("warming the apt cache: %v\n%s", err, out)
	}
	e := newEnv(b)
	e.hub.AddHost("builder1", "pw-builder1", []string{"x86_64"}, "image")
	c, err := e.hub.Connector("builder1", "pw-builder1")(context.Background())
	if err != nil {
		b.Fatal(err)
	}
	st, err := store.Open(filepath.Join(root, "kojid-store"))
	if err != nil {
		b.Fatal(err)
	}
	d := &Daemon{Hub: c, Handlers: map[string]Handler{
		"imageBuilderBuild":     ImageBuilderBuild{},
		"imageBuilderBuildArch": ImageBuilderBuildArch{Builder: &EngineBuilder{Store: st, CacheDir: cache}},
		"tagBuild":              TagBuild{},
	}, WorkDir: filepath.Join(root, "work"), Interval: 200 * time.Millisecond, WaitPoll: time.Second, MinSpace: -1, MaxLoad: -1}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = d.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()

	for i, phase := range []string{"cold", "warm"} {
		t0 := time.Now()
		cmd := exec.Command(bin, "build", "tar", "--output-dir", filepath.Join(root, "out"+strconv.Itoa(i)),
			"--store", filepath.Join(root, "build-store"), "--cache-dir", cache)
		if out, err := cmd.CombinedOutput(); err != nil {
			b.Fatalf("kib build: %v\n%s", err, out)
		}
		build := time.Since(t0)
		t0 = time.Now()
		id, err := e.user.Call(ctx, "imageBuilderBuild", "debian-12", []any{"x86_64"}, []any{"tar"}, "bench", "1", map[string]any{})
		if err != nil {
			b.Fatal(err)
		}
		for {
			info, err := e.user.GetTaskInfo(ctx, id.(int64), false)
			if err != nil {
				b.Fatal(err)
			}
			if info.State == koji.TaskClosed {
				break
			}
			if info.State == koji.TaskFailed || info.State == koji.TaskCanceled {
				_, ferr := e.user.GetTaskResult(ctx, id.(int64))
				b.Fatalf("task failed: %v", ferr)
			}
			time.Sleep(100 * time.Millisecond)
		}
		task := time.Since(t0)
		b.ReportMetric(build.Seconds(), phase+"-build-s")
		b.ReportMetric(task.Seconds(), phase+"-task-s")
		b.ReportMetric(task.Seconds()/build.Seconds(), phase+"-task/build")
	}
}
