package worker_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kib-project/kib/internal/composer"
	"github.com/kib-project/kib/internal/distro"
	"github.com/kib-project/kib/internal/jobs"
	"github.com/kib-project/kib/internal/koji"
	"github.com/kib-project/kib/internal/koji/kojitest"
	"github.com/kib-project/kib/internal/store"
	"github.com/kib-project/kib/internal/worker"
)

// TestRealKojiCompose is the one test that builds a real image: a Koji
// compose through the API, the queue and the engine, imported with the real
// Koji client into the kojitest hub.
func TestRealKojiCompose(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a real Debian image (one to two minutes); run without -short")
	}
	if os.Geteuid() != 0 {
		t.Fatal("this test builds an image and needs root (mmdebstrap root mode)")
	}
	ctx := context.Background()
	cat, err := distro.Load("")
	if err != nil {
		t.Fatal(err)
	}
	st, err := store.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	hub := kojitest.New(t, kojitest.Options{})
	hub.AddUser("kib", "pw")
	hub.AddContentGenerator("kib", "kib")
	kh := &jobs.KojiHub{Server: "https://koji.example.org/kojihub", Connect: hub.Connector("kib", "pw")}
	q, err := jobs.Open(ctx, jobs.Config{StateDir: t.TempDir(), Workers: 1, Builder: &worker.EngineBuilder{Distros: cat, Store: st, CacheDir: t.TempDir()}, Koji: kh})
	if err != nil {
		t.Fatal(err)
	}
	if err := q.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer func() {
		sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		_ = q.Stop(sctx)
		q.Close()
	}()
	h, err := composer.New(composer.Config{Queue: q, Distros: cat, KojiServer: kh.Server})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	defer srv.Close()
	api := srv.URL + "/api/image-builder-composer/v2"
	body := `{"distribution": "debian-12", "koji": {"name": "Debian-Container", "version": "12", "release": "1", "server": "https://koji.example.org/kojihub", "task_id": 7}, "image_requests": [{"architecture": "x86_64", "image_type": "container", "repositories": []}], "customizations": {"packages": ["ca-certificates"]}}`
	resp, err := http.Post(api+"/compose", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	var created struct{ ID string }
	_ = json.NewDecoder(resp.Body).Decode(&created)
	resp.Body.Close()
	if resp.StatusCode != 201 {
		t.Fatalf("POST /compose: %d", resp.StatusCode)
	}
	get := func(path string, v any) {
		resp, err := http.Get(api + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		data, _ := io.ReadAll(resp.Body)
		if err := json.Unmarshal(data, v); err != nil {
			t.Fatalf("%s: %v: %s", path, err, data)
		}
	}
	var status struct {
		Status        string
		ImageStatuses []struct {
			Status string
			Error  *jobs.JobError
		} `json:"image_statuses"`
		KojiStatus struct {
			BuildID int `json:"build_id"`
		} `json:"koji_status"`
	}
	deadline := time.Now().Add(8 * time.Minute)
	for status.Status != "success" && status.Status != "failure" {
		if time.Now().After(deadline) {
			t.Fatal("compose did not finish in 8 minutes")
		}
		time.Sleep(time.Second)
		get("/composes/"+created.ID, &status)
	}
	if status.Status != "success" || status.KojiStatus.BuildID == 0 {
		var logs struct {
			Koji json.RawMessage `json:"koji"`
		}
		get("/composes/"+created.ID+"/logs", &logs)
		t.Fatalf("status %+v; koji logs %.3000s", status, logs.Koji)
	}
	var mans struct{ Manifests []json.RawMessage }
	get("/composes/"+created.ID+"/manifests", &mans)
	if len(mans.Manifests) != 1 || !strings.Contains(string(mans.Manifests[0]), "ca-certificates") {
		t.Errorf("manifest does not pin ca-certificates: %.300s", mans.Manifests)
	}
	reader, _ := koji.New(hub.URL, koji.Options{})
	build, err := reader.GetBuild(ctx, "Debian-Container-12-1")
	if err != nil || build == nil || build.State != koji.BuildComplete || build.ID != int64(status.KojiStatus.BuildID) {
		t.Fatalf("hub build %+v (%v), want COMPLETE with id %d", build, err, status.KojiStatus.BuildID)
	}
	archives, err := reader.ListArchives(ctx, build.ID, "image")
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	for _, a := range archives {
		names[a.Filename] = true
	}
	for _, n := range []string{"Debian-Container-12-1.x86_64.tar", "Debian-Container-12-1.x86_64.tar.manifest.json", "Debian-Container-12-1.x86_64.tar.image-os.spdx.json"} {
		if !names[n] {
			t.Errorf("archive %s not imported (have %v)", n, names)
		}
	}
	// The image on the hub is the one built, byte for byte.
	var imagePath string
	for _, a := range archives {
		if a.Filename == "Debian-Container-12-1.x86_64.tar" {
			imagePath = filepath.Join(hub.Dir, "packages", "Debian-Container", "12", "1", "images", a.Filename)
		}
	}
	if fi, err := os.Stat(imagePath); err != nil || fi.Size() == 0 {
		t.Errorf("image file on the hub: %v", err)
	}
}
