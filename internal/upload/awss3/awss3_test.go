package awss3_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/kib-project/kib/internal/upload"
	"github.com/kib-project/kib/internal/upload/awss3"
	"github.com/kib-project/kib/internal/upload/s3test"
)

// image writes size random bytes and returns them as an artifact.
func image(t *testing.T, size int) upload.Artifact {
	t.Helper()
	b := make([]byte, size)
	r := rand.New(rand.NewPCG(1, uint64(size)))
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	p := filepath.Join(t.TempDir(), "disk.qcow2")
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(b)
	return upload.Artifact{Path: p, Filename: "disk.qcow2", ImageType: "qcow2", Arch: "x86_64", SHA256: hex.EncodeToString(sum[:]), Size: int64(size)}
}

func objectSHA(t *testing.T, srv *s3test.Server, bucket, key string) string {
	t.Helper()
	out, err := srv.Client().GetObject(context.Background(), &s3.GetObjectInput{Bucket: aws.String(bucket), Key: aws.String(key)})
	if err != nil {
		t.Fatal(err)
	}
	defer out.Body.Close()
	h := sha256.New()
	if _, err := io.Copy(h, out.Body); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(h.Sum(nil))
}

func TestUploadPresignedAndPublic(t *testing.T) {
	srv := s3test.Start(t)
	bucket := srv.Bucket(t, "images")
	a := image(t, 12<<20+123)
	u, err := awss3.New(awss3.Config{Bucket: bucket, Endpoint: srv.Endpoint, AccessKeyID: srv.AccessKey, SecretAccessKey: srv.SecretKey, PartSize: 5 << 20, StateDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	var last int64
	res, err := u.Upload(context.Background(), a, json.RawMessage(`{"region":"us-east-1"}`), func(sent, total int64) {
		if total != a.Size || sent < last {
			t.Errorf("progress %d/%d after %d", sent, total, last)
		}
		last = sent
	})
	if err != nil {
		t.Fatal(err)
	}
	if last != a.Size {
		t.Errorf("progress ended at %d, want %d", last, a.Size)
	}
	if res.Type != "aws.s3" {
		t.Errorf("type %q", res.Type)
	}
	link, _ := res.Options["url"].(string)
	if !strings.Contains(link, "X-Amz-Signature=") {
		t.Fatalf("url %q is not presigned", link)
	}
	// The presigned URL works without credentials and serves the image.
	resp, err := http.Get(link)
	if err != nil {
		t.Fatal(err)
	}
	h := sha256.New()
	_, _ = io.Copy(h, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || hex.EncodeToString(h.Sum(nil)) != a.SHA256 {
		t.Fatalf("GET presigned URL: %s, sha256 %x, want %s", resp.Status, h.Sum(nil), a.SHA256)
	}

	res, err = u.Upload(context.Background(), a, json.RawMessage(`{"region":"us-east-1","public":true}`), nil)
	if err != nil {
		t.Fatal(err)
	}
	want := srv.Endpoint + "/" + bucket + "/" + u.Key(a)
	if res.Options["url"] != want {
		t.Errorf("public url %v, want %s", res.Options["url"], want)
	}
}

// cutTransport fails the request that would carry the budget's last byte
// of part data, as a connection cut at that offset would.
type cutTransport struct {
	budget atomic.Int64
	parts  atomic.Int32
}

var errCut = errors.New("connection cut")

func (c *cutTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.Method == http.MethodPut && r.URL.Query().Has("partNumber") {
		c.parts.Add(1)
		if c.budget.Add(-r.ContentLength) < 0 {
			if r.Body != nil {
				r.Body.Close()
			}
			return nil, errCut
		}
	}
	return http.DefaultTransport.RoundTrip(r)
}

func TestUploadResumesAfterCut(t *testing.T) {
	srv := s3test.Start(t)
	bucket := srv.Bucket(t, "resume")
	a := image(t, 26<<20+7) // 6 parts of 5 MiB
	state := t.TempDir()
	for i, cut := range []int64{rand.Int64N(a.Size), rand.Int64N(a.Size)} {
		cfg := awss3.Config{Bucket: bucket, Endpoint: srv.Endpoint, AccessKeyID: srv.AccessKey, SecretAccessKey: srv.SecretKey,
			PartSize: 5 << 20, Concurrency: 2, StateDir: state, Prefix: string(rune('a'+i)) + "/"}
		ct := &cutTransport{}
		ct.budget.Store(cut)
		cfg.HTTPClient = &http.Client{Transport: ct}
		u, _ := awss3.New(cfg)
		_, err := u.Upload(context.Background(), a, json.RawMessage(`{"region":"us-east-1"}`), nil)
		if err == nil || !strings.Contains(err.Error(), "connection cut") {
			t.Fatalf("cut at %d: err = %v, want the cut", cut, err)
		}
		// Resume with a good connection: only the missing parts go.
		rt := &cutTransport{}
		rt.budget.Store(1 << 62)
		cfg.HTTPClient = &http.Client{Transport: rt}
		u, _ = awss3.New(cfg)
		res, err := u.Upload(context.Background(), a, json.RawMessage(`{"region":"us-east-1"}`), nil)
		if err != nil {
			t.Fatalf("resume after cut at %d: %v", cut, err)
		}
		done := int(cut / (5 << 20)) // parts wholly within the budget were sent
		if got := int(rt.parts.Load()); got > 6-done+1 && done > 1 {
			t.Errorf("cut at %d: resume sent %d parts, want at most %d", cut, got, 6-done+1)
		}
		if res.Options["url"] == "" {
			t.Error("no url")
		}
		if got := objectSHA(t, srv, bucket, u.Key(a)); got != a.SHA256 {
			t.Fatalf("cut at %d: object sha256 %s, image %s", cut, got, a.SHA256)
		}
		entries, _ := os.ReadDir(state)
		if len(entries) != 0 {
			t.Errorf("upload state left behind: %v", entries)
		}
	}
}

func TestBadCredentials(t *testing.T) {
	srv := s3test.Start(t)
	bucket := srv.Bucket(t, "creds")
	a := image(t, 1000)
	u, _ := awss3.New(awss3.Config{Bucket: bucket, Endpoint: srv.Endpoint, AccessKeyID: "nobody", SecretAccessKey: "wrong-secret", StateDir: t.TempDir()})
	_, err := u.Upload(context.Background(), a, json.RawMessage(`{"region":"us-east-1"}`), nil)
	if err == nil || !strings.Contains(err.Error(), "InvalidAccessKeyId") {
		t.Fatalf("err = %v, want the store's InvalidAccessKeyId", err)
	}
}

func TestParseOptions(t *testing.T) {
	for _, tc := range []struct {
		in, err string
	}{
		{`{"region":"eu-west-1"}`, ""},
		{`{"region":"eu-west-1","public":true}`, ""},
		{`{}`, "region: required"},
		{`{"region":"x","bucket":"y"}`, `unknown field "bucket"`},
		{`{"region":1}`, "cannot unmarshal"},
	} {
		_, err := awss3.ParseOptions(json.RawMessage(tc.in))
		if tc.err == "" && err != nil || tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)) {
			t.Errorf("ParseOptions(%s) = %v, want %q", tc.in, err, tc.err)
		}
	}
}
