package composer_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/kib-project/kib/internal/artifacts"
	"github.com/kib-project/kib/internal/composer"
	"github.com/kib-project/kib/internal/distro"
	"github.com/kib-project/kib/internal/jobs"
	"github.com/kib-project/kib/internal/jobs/jobstest"
	"github.com/kib-project/kib/internal/koji"
	"github.com/kib-project/kib/internal/koji/kojitest"
	"github.com/kib-project/kib/internal/upload/s3test"
	"github.com/kib-project/kib/internal/worker"
)

// storeBundle is a kib serve with --remote-workers and --artifacts on a
// real S3 server, and one kib worker taking its builds.
type storeBundle struct {
	api   string
	q     *jobs.Queue
	store *artifacts.Store
}

// setupStore starts the service with the artifact store at
// s3://bucket/prefix, Koji composes going to kh (may be nil), and a remote
// worker that reaches the store with workerCfg and builds with b. A nil
// workerCfg makes the service build with b itself, with no remote worker.
func setupStore(t testing.TB, s3srv *s3test.Server, bucket string, kh *jobs.KojiHub, kojiServer string, workerCfg *artifacts.Config, b jobs.Builder) *storeBundle {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	loc, err := artifacts.ParseURL("s3://" + bucket + "/kib")
	if err != nil {
		t.Fatal(err)
	}
	st, err := artifacts.New(ctx, loc, artifacts.Config{Endpoint: s3srv.Endpoint, AccessKeyID: s3srv.AccessKey, SecretAccessKey: s3srv.SecretKey, StateDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Check(ctx); err != nil {
		t.Fatal(err)
	}
	var ki jobs.KojiImporter
	if kh != nil {
		kh.Artifacts = st
		ki = kh
	}
	d := worker.NewDispatcher(time.Minute)
	var qb jobs.Builder = d
	if workerCfg == nil {
		qb = b
	}
	q := jobstest.StartQueue(t, jobs.Config{Workers: 2, Builder: qb, Koji: ki, Artifacts: st, RetryDelay: 10 * time.Millisecond})
	cat, err := distro.Load("")
	if err != nil {
		t.Fatal(err)
	}
	h, err := composer.New(composer.Config{Queue: q, Distros: cat, KojiServer: kojiServer, Artifacts: st})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle(base+"/", h)
	mux.Handle(worker.BasePath+"/", &worker.Handler{Dispatcher: d, Artifacts: st, PollTimeout: 2 * time.Second})
	srv := httptest.NewServer(mux)

	done := make(chan struct{})
	if workerCfg != nil {
		wc := *workerCfg
		wc.StateDir = t.TempDir()
		w := &worker.Remote{Server: srv.URL, HTTP: srv.Client(), Arch: "x86_64", Builder: b, WorkDir: t.TempDir(), Heartbeat: 100 * time.Millisecond, Artifacts: wc}
		go func() {
			defer close(done)
			_ = w.Run(ctx)
		}()
	} else {
		close(done)
	}
	t.Cleanup(func() {
		cancel()
		<-done
		srv.Close()
	})
	return &storeBundle{api: srv.URL + base, q: q, store: st}
}

func (b *storeBundle) post(t testing.TB, body string) string {
	t.Helper()
	resp, err := http.Post(b.api+"/compose", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 201 {
		t.Fatalf("POST /compose: %d %s", resp.StatusCode, data)
	}
	var c struct{ ID string }
	_ = json.Unmarshal(data, &c)
	return c.ID
}

// wait returns the final compose status body.
func (b *storeBundle) wait(t testing.TB, id string) (string, []byte) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for {
		resp, err := http.Get(b.api + "/composes/" + id)
		if err != nil {
			t.Fatal(err)
		}
		data, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		var st struct{ Status string }
		_ = json.Unmarshal(data, &st)
		st.Status = strings.ToLower(st.Status)
		if st.Status != "pending" && st.Status != "" {
			return st.Status, data
		}
		if time.Now().After(deadline) {
			t.Fatalf("compose %s did not finish: %s", id, data)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func randomImage(n int) []byte {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return b
}

// imageBuilder is the stand-in builder making image as the image.
func imageBuilder(image []byte) *jobstest.Builder {
	b := &jobstest.Builder{}
	b.SetImageData(func(string) []byte { return image })
	return b
}

func hexSum(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

const storeCompose = `{"distribution":"debian-12","image_request":{"architecture":"x86_64","image_type":"tar","repositories":[{"baseurl":"http://deb.debian.org/debian"}]}}`

// TestArtifactsInObjectStorage: a remote worker puts its artifacts into the
// artifact store (MinIO) itself, none reach the server's disk, and
// /composes/{id}/download streams the worker's bytes from the store, with
// range requests; bytes changed in the store are not handed out whole.
func TestArtifactsInObjectStorage(t *testing.T) {
	s3srv := s3test.Start(t)
	bucket := s3srv.Bucket(t, "kib-artifacts")
	image := randomImage(12<<20 + 3)
	// Parts of 5 MiB: the image goes as a multipart upload.
	b := setupStore(t, s3srv, bucket, nil, "", &artifacts.Config{
		Endpoint: s3srv.Endpoint, AccessKeyID: s3srv.AccessKey, SecretAccessKey: s3srv.SecretKey, PartSize: 5 << 20,
	}, imageBuilder(image))
	id := b.post(t, storeCompose)
	if status, data := b.wait(t, id); status != "success" {
		t.Fatalf("compose: %s", data)
	}
	cj, err := b.q.Get(context.Background(), "", id)
	if err != nil {
		t.Fatal(err)
	}
	if ents, _ := os.ReadDir(b.q.ArtifactDir(cj.Builds[0].ID)); len(ents) != 0 {
		t.Errorf("the server's disk holds %d artifact files; want none", len(ents))
	}
	var res jobs.BuildJobResult
	if err := json.Unmarshal(cj.Builds[0].Result, &res); err != nil {
		t.Fatal(err)
	}
	var image0 jobs.Artifact
	for _, a := range res.Artifacts {
		if !b.store.Owns(a.Path) {
			t.Errorf("artifact %s at %s, not in the store", a.Name, a.Path)
		}
		if a.Kind == "image" {
			image0 = a
		}
	}
	if len(res.Artifacts) != 5 || image0.SHA256 != hexSum(image) {
		t.Fatalf("artifacts %+v", res.Artifacts)
	}

	get := func(rng string) (*http.Response, []byte, error) {
		req, _ := http.NewRequest("GET", b.api+"/composes/"+id+"/download", nil)
		if rng != "" {
			req.Header.Set("Range", rng)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return nil, nil, err
		}
		defer resp.Body.Close()
		data, err := io.ReadAll(resp.Body)
		return resp, data, err
	}
	resp, data, err := get("")
	if err != nil || resp.StatusCode != 200 || !bytes.Equal(data, image) {
		t.Fatalf("download: %v, %d bytes, err %v; want the worker's %d bytes", resp.Status, len(data), err, len(image))
	}
	resp, data, err = get("bytes=6291456-6291555")
	if err != nil || resp.StatusCode != 206 || !bytes.Equal(data, image[6291456:6291556]) {
		t.Fatalf("range download: %v, %d bytes, %v", resp.Status, len(data), err)
	}
	// SBOMs come from the store too.
	sresp, err := http.Get(b.api + "/composes/" + id + "/sboms")
	if err != nil {
		t.Fatal(err)
	}
	sb, _ := io.ReadAll(sresp.Body)
	sresp.Body.Close()
	if sresp.StatusCode != 200 || !strings.Contains(string(sb), "SPDX-2.3") {
		t.Errorf("sboms: %d %s", sresp.StatusCode, sb)
	}

	// Other bytes of the same size, under the same metadata, in the
	// store: the download breaks before its end instead of handing them
	// out.
	key := strings.TrimPrefix(image0.Path, "s3://"+bucket+"/")
	bad := bytes.Clone(image)
	bad[len(bad)-1] ^= 0xff
	if _, err := s3srv.Client().PutObject(context.Background(), &s3.PutObjectInput{
		Bucket: aws.String(bucket), Key: aws.String(key), Body: bytes.NewReader(bad), Metadata: map[string]string{"sha256": image0.SHA256},
	}); err != nil {
		t.Fatal(err)
	}
	resp, data, err = get("")
	if err == nil && bytes.Equal(data, bad) {
		t.Fatalf("download of changed bytes: %v, all %d bytes handed out", resp.Status, len(data))
	}

	// Deleting the compose deletes its artifacts from the store.
	req, _ := http.NewRequest("DELETE", b.api+"/composes/"+id, nil)
	dresp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	dresp.Body.Close()
	out, err := s3srv.Client().ListObjectsV2(context.Background(), &s3.ListObjectsV2Input{Bucket: aws.String(bucket), Prefix: aws.String("kib/jobs/" + cj.Builds[0].ID + "/")})
	if dresp.StatusCode != 200 || err != nil || len(out.Contents) != 0 {
		t.Errorf("after DELETE (%d): %d objects left, %v", dresp.StatusCode, len(out.Contents), err)
	}
}

// TestInProcessBuildStoresArtifacts: a build run by the service itself
// goes to the artifact store too, so another kib serve can serve it.
func TestInProcessBuildStoresArtifacts(t *testing.T) {
	s3srv := s3test.Start(t)
	bucket := s3srv.Bucket(t, "kib-artifacts")
	image := randomImage(1 << 20)
	b := setupStore(t, s3srv, bucket, nil, "", nil, imageBuilder(image))
	id := b.post(t, storeCompose)
	if status, data := b.wait(t, id); status != "success" {
		t.Fatalf("compose: %s", data)
	}
	cj, err := b.q.Get(context.Background(), "", id)
	if err != nil {
		t.Fatal(err)
	}
	var res jobs.BuildJobResult
	if err := json.Unmarshal(cj.Builds[0].Result, &res); err != nil {
		t.Fatal(err)
	}
	for _, a := range res.Artifacts {
		if !b.store.Owns(a.Path) {
			t.Errorf("artifact %s at %s, not in the store", a.Name, a.Path)
		}
	}
	if ents, _ := os.ReadDir(b.q.ArtifactDir(cj.Builds[0].ID)); len(ents) != 0 {
		t.Errorf("the server's disk still holds %d artifact files", len(ents))
	}
	resp, err := http.Get(b.api + "/composes/" + id + "/download")
	if err != nil {
		t.Fatal(err)
	}
	data, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || !bytes.Equal(data, image) {
		t.Fatalf("download: %d bytes, %v", len(data), err)
	}
}

const storeKojiCompose = `{"distribution":"debian-12",
 "koji":{"name":"Debian-Cloud","version":"12","release":"%s","server":"%s","task_id":7},
 "image_requests":[{"architecture":"x86_64","image_type":"tar","repositories":[{"baseurl":"http://deb.debian.org/debian"}]}]}`

// TestKojiImportFromObjectStorage: a Koji compose whose worker stored its
// artifacts in the store is imported into the kojitest hub, the files
// streamed from the store into the hub's chunked upload (the hub checks
// their digests); an upload to the store cut mid-part fails the compose
// with the store's error and the Koji reservation is refunded.
func TestKojiImportFromObjectStorage(t *testing.T) {
	s3srv := s3test.Start(t)
	bucket := s3srv.Bucket(t, "kib-artifacts")
	hub := kojitest.New(t, kojitest.Options{})
	hub.AddUser("kib", "pw")
	hub.AddContentGenerator("kib", "kib")
	reader, _ := koji.New(hub.URL, koji.Options{})
	image := randomImage(6<<20 + 11)
	creds := artifacts.Config{Endpoint: s3srv.Endpoint, AccessKeyID: s3srv.AccessKey, SecretAccessKey: s3srv.SecretKey, PartSize: 5 << 20}

	t.Run("import", func(t *testing.T) {
		b := setupStore(t, s3srv, bucket, &jobs.KojiHub{Server: hub.URL, Connect: hub.Connector("kib", "pw")}, hub.URL, &creds, imageBuilder(image))
		id := b.post(t, fmt.Sprintf(storeKojiCompose, "1", hub.URL))
		if status, data := b.wait(t, id); status != "success" {
			t.Fatalf("compose: %s", data)
		}
		build, err := reader.GetBuild(context.Background(), "Debian-Cloud-12-1")
		if err != nil || build == nil || build.State != koji.BuildComplete {
			t.Fatalf("build %+v, %v; want complete", build, err)
		}
		archives, err := reader.ListArchives(context.Background(), build.ID, "")
		if err != nil {
			t.Fatal(err)
		}
		found := false
		for _, a := range archives {
			if a.Filename == "Debian-Cloud-12-1.x86_64.tar.xz" {
				found = a.Checksum == hexSum(image) && a.Size == int64(len(image))
			}
		}
		if !found || len(archives) != 3 {
			t.Errorf("archives %+v; want the image (sha256 %s), its manifest and SBOM", archives, hexSum(image))
		}
	})

	t.Run("cut upload", func(t *testing.T) {
		cut := cuttingProxy(t, strings.TrimPrefix(s3srv.Endpoint, "http://"), 1<<20)
		bad := creds
		bad.Endpoint = "http://" + cut
		b := setupStore(t, s3srv, bucket, &jobs.KojiHub{Server: hub.URL, Connect: hub.Connector("kib", "pw")}, hub.URL, &bad, imageBuilder(image))
		id := b.post(t, fmt.Sprintf(storeKojiCompose, "2", hub.URL))
		status, data := b.wait(t, id)
		if status != "failure" || !strings.Contains(string(data), "storing artifact root.tar.xz in the artifact store") {
			t.Fatalf("compose %s: %s; want a failure naming the artifact store", status, data)
		}
		build, err := reader.GetBuild(context.Background(), "Debian-Cloud-12-2")
		if err != nil || build == nil || build.State != koji.BuildFailed {
			t.Fatalf("build %+v, %v; want the reservation refunded (failed)", build, err)
		}
	})
}

// cuttingProxy forwards TCP connections to target and cuts each one after
// limit bytes from the client: an S3 upload broken mid-part.
func cuttingProxy(t *testing.T, target string, limit int64) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() {
		ln.Close()
		wg.Wait()
	})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				up, err := net.Dial("tcp", target)
				if err != nil {
					return
				}
				defer up.Close()
				go func() { _, _ = io.Copy(c, up) }()
				_, _ = io.CopyN(up, c, limit)
			}()
		}
	}()
	return ln.Addr().String()
}
