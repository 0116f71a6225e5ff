package gcp

import (
	"context"
	"crypto/md5"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/kib-project/kib/internal/upload/gcp/computetest"
	"github.com/kib-project/kib/internal/upload/gcp/gcstest"
)

// cutProxy forwards requests to target and drops, once, the connection of
// the upload PUT that carries object byte cutAt: the server sees that
// request's body end at cutAt, the client a broken connection.
type cutProxy struct {
	target *url.URL
	cutAt  int64

	mu  sync.Mutex
	cut bool
}

var errCut = errors.New("cutProxy: connection dropped")

// cutReader passes n bytes, then fails.
type cutReader struct {
	r   io.Reader
	n   int64
	hit bool
}

func (c *cutReader) Read(p []byte) (int, error) {
	if c.n <= 0 {
		c.hit = true
		return 0, errCut
	}
	if int64(len(p)) > c.n {
		p = p[:c.n]
	}
	n, err := c.r.Read(p)
	c.n -= int64(n)
	return n, err
}

func (p *cutProxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	out := r.Clone(r.Context())
	out.RequestURI = ""
	out.URL.Scheme, out.URL.Host = p.target.Scheme, p.target.Host
	// The Host header stays the proxy's: session URIs come back through it.
	var cr *cutReader
	p.mu.Lock()
	if r.Method == http.MethodPut && !p.cut {
		var start, end, total int64
		if _, err := fmt.Sscanf(r.Header.Get("Content-Range"), "bytes %d-%d/%d", &start, &end, &total); err == nil && start <= p.cutAt && p.cutAt <= end {
			cr = &cutReader{r: r.Body, n: p.cutAt - start}
			out.Body = io.NopCloser(cr)
			p.cut = true
		}
	}
	p.mu.Unlock()
	resp, err := http.DefaultTransport.RoundTrip(out)
	if err != nil {
		if cr != nil && cr.hit {
			// Drop the client's connection too.
			c, _, herr := http.NewResponseController(w).Hijack()
			if herr == nil {
				c.Close()
			}
			return
		}
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	defer resp.Body.Close()
	for k, v := range resp.Header {
		w.Header()[k] = v
	}
	w.WriteHeader(resp.StatusCode)
	_, _ = io.Copy(w, resp.Body)
}

func (p *cutProxy) didCut() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.cut
}

// TestUploadResumesAfterCut cuts the connection in the middle of the
// staging object's upload, at a fixed offset inside the second chunk and at
// random offsets, between kib and a faithful test server of the resumable
// protocol (gcstest: fake-gcs-server commits an object when asked for a
// session's status). kib must stay in the session, ask it how much it has
// (Content-Range bytes */TOTAL) and resume from the acknowledged offset,
// which is inside the cut chunk; the object's bytes and MD5 are the image's.
func TestUploadResumesAfterCut(t *testing.T) {
	gcs := gcstest.New("kib-images")
	t.Cleanup(gcs.Close)
	gce := computetest.New("kib-images")
	t.Cleanup(gce.Close)
	keyFile := filepath.Join(t.TempDir(), "key.json")
	if err := os.WriteFile(keyFile, gce.KeyJSON(false), 0o600); err != nil {
		t.Fatal(err)
	}
	a := makeGCE(t, t.TempDir(), "hybrid", "disk.raw")
	data, err := os.ReadFile(a.Path)
	if err != nil {
		t.Fatal(err)
	}
	md5sum := md5.Sum(data)
	const chunk = 1 << 20
	if a.Size < 2*chunk+chunk/2 {
		t.Fatalf("test image of %d bytes is too small for three chunks", a.Size)
	}
	seed := rand.Uint64()
	t.Logf("random offsets from seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 0))
	offsets := []int64{chunk + 640<<10}
	for range 4 {
		offsets = append(offsets, 1+rng.Int64N(a.Size-1))
	}
	for i, cutAt := range offsets {
		t.Run(fmt.Sprintf("cut-at-%d", cutAt), func(t *testing.T) {
			target, _ := url.Parse(gcs.URL)
			proxy := &cutProxy{target: target, cutAt: cutAt}
			ps := httptest.NewServer(proxy)
			t.Cleanup(ps.Close)
			u := New(Config{CredentialsFile: keyFile, StorageEndpoint: ps.URL + "/storage/v1/", Logger: slog.New(slog.NewTextHandler(testWriter{t}, nil))})
			u.chunk = chunk
			creds, _, err := u.credentials(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			object := "cut-" + strconv.Itoa(i) + ".tar.gz"
			var last int64
			if err := u.uploadObject(context.Background(), creds, a, "kib-images", object, "cut", func(sent, total int64) { last = sent }); err != nil {
				t.Fatalf("uploadObject: %v", err)
			}
			if !proxy.didCut() {
				t.Fatal("the proxy never cut the upload")
			}
			if last != a.Size {
				t.Errorf("progress ended at %d of %d", last, a.Size)
			}
			sessions := gcs.Sessions(object)
			if len(sessions) != 1 {
				t.Fatalf("%d upload sessions, want the cut upload to go on in its one session", len(sessions))
			}
			ev := sessions[0]
			t.Logf("session: %+v", ev)
			ci := -1
			for j, e := range ev {
				if e.Kind == "cut" {
					ci = j
				}
			}
			if ci < 0 || ci+2 >= len(ev) {
				t.Fatalf("no cut followed by a query and a put in %+v", ev)
			}
			cut, q, next := ev[ci], ev[ci+1], ev[ci+2]
			if q.Kind != "query" {
				t.Fatalf("after the cut kib sent %+v, want a status query", q)
			}
			if next.Kind != "put" || next.Start != q.Persisted {
				t.Fatalf("after the server acknowledged %d bytes kib sent %+v, want a chunk from offset %d", q.Persisted, next, q.Persisted)
			}
			if i == 0 {
				// 640 KiB of the second chunk arrived: two whole units are
				// kept, so the resume point is inside the chunk, not at its
				// start.
				if want := int64(chunk + 2*gcstest.Unit); cut.Persisted != want {
					t.Errorf("the server kept %d bytes at the cut, want %d", cut.Persisted, want)
				}
			}
			o := gcs.Object("kib-images", object)
			if o == nil {
				t.Fatal("no object")
			}
			sum := sha256.Sum256(o.Data)
			if hex.EncodeToString(sum[:]) != a.SHA256 {
				t.Fatalf("object sha256 %x, image sha256 %s (%d of %d bytes)", sum, a.SHA256, len(o.Data), a.Size)
			}
			if o.MD5 != base64.StdEncoding.EncodeToString(md5sum[:]) {
				t.Errorf("object md5 %s", o.MD5)
			}
			if o.Metadata[metaSHA256] != a.SHA256 || o.ContentType != "application/gzip" {
				t.Errorf("object metadata %v, content type %q", o.Metadata, o.ContentType)
			}
		})
	}
}

// TestUploadThroughCutsEndToEnd runs the whole gcp upload (staging object,
// image import, staging object deleted) through a cut.
func TestUploadThroughCutsEndToEnd(t *testing.T) {
	gcs := gcstest.New("kib-images")
	t.Cleanup(gcs.Close)
	target, _ := url.Parse(gcs.URL)
	ps := httptest.NewServer(&cutProxy{target: target, cutAt: 2<<20 + 12345})
	t.Cleanup(ps.Close)
	gce := computetest.New("kib-images")
	t.Cleanup(gce.Close)
	gce.StorageURL = gcs.Endpoint()
	keyFile := filepath.Join(t.TempDir(), "key.json")
	if err := os.WriteFile(keyFile, gce.KeyJSON(false), 0o600); err != nil {
		t.Fatal(err)
	}
	a := makeGCE(t, t.TempDir(), "uefi", "disk.raw")
	u := New(Config{CredentialsFile: keyFile, Bucket: "kib-images", StorageEndpoint: ps.URL + "/storage/v1/", ComputeEndpoint: gce.URL})
	u.chunk = 1 << 20
	res, err := u.Upload(context.Background(), a, json.RawMessage(`{"region":"europe-west1","image_name":"debian-12-cut"}`), nil)
	if err != nil {
		t.Fatalf("Upload: %v", err)
	}
	if res.Options["image_name"] != "debian-12-cut" || gce.Image("debian-12-cut") == nil {
		t.Fatalf("result %+v, image %+v", res, gce.Image("debian-12-cut"))
	}
	if s := gcs.Sessions("debian-12-cut.tar.gz"); len(s) != 1 || !strings.Contains(fmt.Sprint(s[0]), "{query") {
		t.Errorf("sessions %+v, want one with a status query", s)
	}
	if gcs.Object("kib-images", "debian-12-cut.tar.gz") != nil {
		t.Error("staging object still there")
	}
}

// TestUploadSessionGone: a session that expired (404) fails the upload with
// the server's message instead of starting over silently.
func TestUploadSessionGone(t *testing.T) {
	gcs := gcstest.New("kib-images")
	t.Cleanup(gcs.Close)
	r := &resumable{client: http.DefaultClient, base: gcs.URL + "/upload/storage/v1/", chunk: gcstest.Unit, tries: 3, log: slog.New(slog.DiscardHandler)}
	session := gcs.URL + "/upload/storage/v1/b/kib-images/o?uploadType=resumable&upload_id=nope"
	_, err := r.upload(context.Background(), session, strings.NewReader(strings.Repeat("x", 1000)), 1000, nil)
	if err == nil || !strings.Contains(err.Error(), "the upload session is gone") || !strings.Contains(err.Error(), "No such upload session.") {
		t.Fatalf("upload to a gone session: %v", err)
	}
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}
