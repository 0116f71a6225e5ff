package worker_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kib-project/kib/internal/artifacts"
	"github.com/kib-project/kib/internal/jobs"
	"github.com/kib-project/kib/internal/upload/s3test"
	"github.com/kib-project/kib/internal/worker"
)

// TestStoredArtifactsChecked: with an artifact store, each job names its own
// place in it; the server takes an artifact the worker put there only when
// the object has the size and sha256 the worker reports, and fails the
// build, saying why, otherwise.
func TestStoredArtifactsChecked(t *testing.T) {
	srv := s3test.Start(t)
	bucket := srv.Bucket(t, "kib-artifacts")
	ctx := context.Background()
	st, err := artifacts.New(ctx, artifacts.Location{Bucket: bucket, Prefix: "site/"}, artifacts.Config{
		Endpoint: srv.Endpoint, AccessKeyID: srv.AccessKey, SecretAccessKey: srv.SecretKey, StateDir: t.TempDir(),
	})
	if err != nil {
		t.Fatal(err)
	}
	d := worker.NewDispatcher(time.Minute)
	api := httptest.NewServer(&worker.Handler{Dispatcher: d, PollTimeout: 5 * time.Second, Artifacts: st})
	defer api.Close()

	image := []byte("the image bytes")
	sum := sha256.Sum256(image)
	real := hex.EncodeToString(sum[:])
	file := filepath.Join(t.TempDir(), "disk.raw")
	if err := os.WriteFile(file, image, 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, sha256, artifact, wantErr string
	}{
		{"true report", real, "disk.raw", ""},
		{"wrong sha256", strings.Repeat("0", 64), "disk.raw", "the artifact store holds sha256"},
		{"never stored", real, "other.raw", "other.raw: not in the artifact store"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			type out struct {
				res *jobs.BuildResult
				err error
			}
			done := make(chan out, 1)
			go func() {
				res, err := d.Build(ctx, &jobs.BuildArgs{JobID: "job-" + strings.ReplaceAll(tt.name, " ", "-"), Image: jobs.ImageRequest{Arch: "x86_64"}, OutputDir: t.TempDir()})
				done <- out{res, err}
			}()
			status, data := call(t, api, "POST", worker.BasePath+"/jobs", `{"types":["build"],"arch":"x86_64"}`)
			if status != 201 {
				t.Fatalf("POST /jobs: %d %s", status, data)
			}
			var job worker.JobResponse
			if err := json.Unmarshal(data, &job); err != nil {
				t.Fatal(err)
			}
			if !st.Owns(job.ArtifactStore) || !strings.HasSuffix(job.ArtifactStore, "/") {
				t.Fatalf("artifact_store = %q", job.ArtifactStore)
			}
			if err := st.Put(ctx, job.ArtifactStore+"disk.raw", file, real, int64(len(image))); err != nil {
				t.Fatal(err)
			}
			body := `{"result":{"artifacts":[{"kind":"image","name":"` + tt.artifact + `","sha256":"` + tt.sha256 + `","size":15}]}}`
			if status, data := call(t, api, "PATCH", job.Location, body); status != 200 {
				t.Fatalf("PATCH: %d %s", status, data)
			}
			o := <-done
			if tt.wantErr != "" {
				if o.err == nil || !strings.Contains(o.err.Error(), tt.wantErr) {
					t.Fatalf("build = %+v, %v; want an error mentioning %q", o.res, o.err, tt.wantErr)
				}
				return
			}
			if o.err != nil || len(o.res.Artifacts) != 1 || o.res.Artifacts[0].Path != job.ArtifactStore+"disk.raw" || o.res.Artifacts[0].SHA256 != real {
				t.Fatalf("build = %+v, %v", o.res, o.err)
			}
		})
	}
}
