package worker_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"reflect"
	"testing"
	"time"

	"github.com/kib-project/kib/internal/jobs"
	"github.com/kib-project/kib/internal/jobs/jobstest"
	"github.com/kib-project/kib/internal/worker"
)

// blockingBuilder never finishes on its own: it stands for a worker that
// dies mid-build.
type blockingBuilder struct{ started chan struct{} }

func (b *blockingBuilder) Build(ctx context.Context, _ *jobs.BuildArgs) (*jobs.BuildResult, error) {
	close(b.started)
	<-ctx.Done()
	return nil, ctx.Err()
}

// remoteQueue starts a queue whose two build slots hand builds to remote
// workers (lease as given) through a worker API server.
func remoteQueue(t *testing.T, lease time.Duration, cfg jobs.Config) (*jobs.Queue, *httptest.Server) {
	t.Helper()
	d := worker.NewDispatcher(lease)
	cfg.Workers, cfg.Builder, cfg.RetryDelay = 2, d, 10*time.Millisecond
	q := jobstest.StartQueue(t, cfg)
	srv := httptest.NewServer(&worker.Handler{Dispatcher: d, PollTimeout: 5 * time.Second})
	t.Cleanup(srv.Close)
	return q, srv
}

func TestRemoteWorkerLeaseExpiry(t *testing.T) {
	for _, backend := range jobstest.Backends {
		t.Run(backend, func(t *testing.T) {
			ctx := context.Background()
			koji := &jobstest.KojiRecorder{}
			q, srv := remoteQueue(t, 300*time.Millisecond, jobs.Config{Database: jobstest.Database(t, backend), Koji: koji})
			c := &jobs.Compose{
				Distribution: "debian-12", Seed: 1,
				Koji:   &jobs.KojiTarget{Server: "https://koji.example/kojihub", TaskID: 5, Name: "n", Version: "v", Release: "r"},
				Images: []jobs.ImageRequest{{Arch: "x86_64", ImageType: "tar", Filename: "root.tar.xz", Export: "archive"}},
			}
			id, err := q.Submit(ctx, c)
			if err != nil {
				t.Fatal(err)
			}

			// Worker A takes the build and dies: no heartbeat, no result.
			dying := &blockingBuilder{started: make(chan struct{})}
			actx, kill := context.WithCancel(ctx)
			a := &worker.Remote{Server: srv.URL, HTTP: srv.Client(), Arch: "x86_64", Builder: dying, WorkDir: t.TempDir(), Heartbeat: 50 * time.Millisecond}
			done := make(chan struct{})
			go func() {
				defer close(done)
				_, _ = a.RunOne(actx)
			}()
			<-dying.started
			kill()
			<-done

			// Worker B gets the retried build after the lease expired.
			good := &jobstest.Builder{}
			bw := &worker.Remote{Server: srv.URL, HTTP: srv.Client(), Arch: "x86_64", Builder: good, WorkDir: t.TempDir(), Heartbeat: 50 * time.Millisecond}
			for good.Builds() == 0 {
				if _, err := bw.RunOne(ctx); err != nil {
					t.Fatal(err)
				}
			}
			deadline := time.Now().Add(30 * time.Second)
			var st *jobs.ComposeStatus
			for time.Now().Before(deadline) {
				cj, err := q.Get(ctx, "", id)
				if err != nil {
					t.Fatal(err)
				}
				if st = jobs.Derive(cj); st.Status != jobs.StatusPending {
					break
				}
				time.Sleep(10 * time.Millisecond)
			}
			if st.Status != jobs.StatusSuccess {
				t.Fatalf("status = %+v", st)
			}
			if got, want := koji.Calls(), []string{"init n-v-r", "finalize 1001"}; !reflect.DeepEqual(got, want) {
				t.Errorf("koji calls = %q, want %q (one reservation, no refund)", got, want)
			}
			fin := koji.Finalized[0]
			if len(fin.Images) != 1 || len(fin.Images[0].Artifacts) != 5 || len(fin.Images[0].Manifest) == 0 {
				t.Errorf("finalize images = %+v", fin.Images)
			}
		})
	}
}

// TestRemoteWorkerStopsWhenInitFails: a build runs on a remote worker beside
// koji-init; when Koji refuses the build, the server gives the job up and
// the worker, told so by its next heartbeat, stops building.
func TestRemoteWorkerStopsWhenInitFails(t *testing.T) {
	ctx := context.Background()
	koji := &jobstest.KojiRecorder{FailInit: true, InitDelay: 300 * time.Millisecond}
	q, srv := remoteQueue(t, time.Minute, jobs.Config{Koji: koji, InitWatch: 10 * time.Millisecond})
	id, err := q.Submit(ctx, &jobs.Compose{
		Distribution: "debian-12", Seed: 1,
		Koji:   &jobs.KojiTarget{Server: "https://koji.example/kojihub", TaskID: 5, Name: "n", Version: "v", Release: "r"},
		Images: []jobs.ImageRequest{{Arch: "x86_64", ImageType: "tar", Filename: "root.tar.xz", Export: "archive"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	b := &blockingBuilder{started: make(chan struct{})}
	w := &worker.Remote{Server: srv.URL, HTTP: srv.Client(), Arch: "x86_64", Builder: b, WorkDir: t.TempDir(), Heartbeat: 20 * time.Millisecond}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_, _ = w.RunOne(ctx)
	}()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("the remote worker still builds 30 s after koji-init failed")
	}
	select {
	case <-b.started:
	default:
		t.Fatal("the build never started beside koji-init; the test shows nothing")
	}
	cj, err := q.Get(ctx, "", id)
	if err != nil {
		t.Fatal(err)
	}
	st := jobs.Derive(cj)
	for deadline := time.Now().Add(30 * time.Second); st.Status == jobs.StatusPending && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
		if cj, err = q.Get(ctx, "", id); err != nil {
			t.Fatal(err)
		}
		st = jobs.Derive(cj)
	}
	if st.Status != jobs.StatusFailure || st.Images[0].Error == nil || st.Images[0].Error.ID != jobs.ErrIDKojiFailedDependency {
		t.Errorf("status = %s, image error = %+v; want failure with id %d", st.Status, st.Images[0].Error, jobs.ErrIDKojiFailedDependency)
	}
}

func TestWorkerAPIErrors(t *testing.T) {
	srv := httptest.NewServer(&worker.Handler{Dispatcher: worker.NewDispatcher(time.Minute), PollTimeout: 10 * time.Millisecond})
	defer srv.Close()
	tests := []struct {
		name, method, path, ct, body string
		status                       int
	}{
		{"no job waiting", "POST", "/api/worker/v1/jobs", "application/json", `{"types":["build"],"arch":"x86_64"}`, 204},
		{"wrong media type", "POST", "/api/worker/v1/jobs", "text/plain", `{}`, 415},
		{"job type", "POST", "/api/worker/v1/jobs", "application/json", `{"types":["koji-init"],"arch":"x86_64"}`, 400},
		{"bad body", "POST", "/api/worker/v1/jobs", "application/json", `{"types":`, 400},
		{"unknown token", "GET", "/api/worker/v1/jobs/abc", "", "", 404},
		{"finish unknown token", "PATCH", "/api/worker/v1/jobs/abc", "application/json", `{"result":{}}`, 404},
		{"unknown path", "GET", "/api/worker/v1/nope", "", "", 404},
	}
	locked := httptest.NewServer(&worker.Handler{Dispatcher: worker.NewDispatcher(time.Minute), Authorize: func(*http.Request) error { return errors.New("no client certificate") }})
	defer locked.Close()
	resp, err := locked.Client().Post(locked.URL+"/api/worker/v1/jobs", "application/json", stringsReader(`{"types":["build"],"arch":"x86_64"}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 401 {
		t.Errorf("unauthorized worker: status %d, want 401", resp.StatusCode)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, _ := http.NewRequest(tt.method, srv.URL+tt.path, stringsReader(tt.body))
			if tt.ct != "" {
				req.Header.Set("Content-Type", tt.ct)
			}
			resp, err := srv.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != tt.status {
				t.Errorf("status = %d, want %d", resp.StatusCode, tt.status)
			}
		})
	}
}
