package worker_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/kib-project/kib/internal/jobs"
	"github.com/kib-project/kib/internal/worker"
)

func call(t *testing.T, srv *httptest.Server, method, path, body string) (int, []byte) {
	t.Helper()
	req, _ := http.NewRequest(method, srv.URL+path, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, data
}

// The server keeps the checksum of the bytes it received, and refuses a
// result whose reported checksum differs from it.
func TestServerHashesUploads(t *testing.T) {
	d := worker.NewDispatcher(time.Minute)
	srv := httptest.NewServer(&worker.Handler{Dispatcher: d, PollTimeout: 5 * time.Second})
	defer srv.Close()
	type out struct {
		res *jobs.BuildResult
		err error
	}
	done := make(chan out, 1)
	go func() {
		res, err := d.Build(context.Background(), &jobs.BuildArgs{JobID: "j1", Image: jobs.ImageRequest{Arch: "x86_64"}, OutputDir: t.TempDir()})
		done <- out{res, err}
	}()
	status, data := call(t, srv, "POST", worker.BasePath+"/jobs", `{"types":["build"],"arch":"x86_64"}`)
	if status != 201 {
		t.Fatalf("POST /jobs: %d %s", status, data)
	}
	var job worker.JobResponse
	if err := json.Unmarshal(data, &job); err != nil {
		t.Fatal(err)
	}
	image := []byte("the image bytes")
	req, _ := http.NewRequest("PUT", srv.URL+job.ArtifactLocation+"disk.raw", bytes.NewReader(image))
	resp, err := srv.Client().Do(req)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("upload: %v %v", resp, err)
	}
	resp.Body.Close()
	sum := sha256.Sum256(image)
	real := hex.EncodeToString(sum[:])
	lie := strings.Repeat("0", 64)
	body := func(sum string) string {
		return `{"result":{"artifacts":[{"kind":"image","name":"disk.raw","sha256":"` + sum + `","size":15}]}}`
	}
	if status, data := call(t, srv, "PATCH", job.Location, body(lie)); status != 400 || !strings.Contains(string(data), "Error decoding") {
		t.Fatalf("a wrong reported checksum: %d %s", status, data)
	}
	if status, data := call(t, srv, "PATCH", job.Location, strings.Replace(body(real), "disk.raw", "other.raw", 1)); status != 400 {
		t.Fatalf("an artifact never uploaded: %d %s", status, data)
	}
	if status, data := call(t, srv, "PATCH", job.Location, body(real)); status != 200 {
		t.Fatalf("the true checksum: %d %s", status, data)
	}
	o := <-done
	if o.err != nil || len(o.res.Artifacts) != 1 || o.res.Artifacts[0].SHA256 != real {
		t.Fatalf("build result = %+v, %v", o.res, o.err)
	}
}

// POST /jobs answers 204 only when its poll timed out; a refusal from the
// authorizer is an error, not "no job".
func TestWorkerAPIRefusesWithoutIdentity(t *testing.T) {
	d := worker.NewDispatcher(time.Minute)
	srv := httptest.NewServer(&worker.Handler{Dispatcher: d, PollTimeout: 50 * time.Millisecond,
		Authorize: func(r *http.Request) error {
			if r.Header.Get("X-Test-Worker") != "yes" {
				return errors.New("not a worker")
			}
			return nil
		}})
	defer srv.Close()
	if status, _ := call(t, srv, "POST", worker.BasePath+"/jobs", `{"types":["build"],"arch":"x86_64"}`); status != 401 {
		t.Errorf("a caller without the worker identity: %d, want 401", status)
	}
	req, _ := http.NewRequest("POST", srv.URL+worker.BasePath+"/jobs", strings.NewReader(`{"types":["build"],"arch":"x86_64"}`))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Test-Worker", "yes")
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 204 {
		t.Errorf("a worker with no job waiting: %d, want 204", resp.StatusCode)
	}
}
