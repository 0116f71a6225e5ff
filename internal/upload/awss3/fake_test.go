package awss3_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/johannesboyne/gofakes3"
	"github.com/johannesboyne/gofakes3/backend/s3mem"

	"github.com/kib-project/kib/internal/upload/awss3"
)

// TestResumeUnit is the unit form of TestUploadResumesAfterCut, against
// gofakes3 in-process (the MinIO tests are the real-server ones): a cut
// at a fixed offset, a resume that sends only the missing parts, the
// object's bytes equal to the image's.
func TestResumeUnit(t *testing.T) {
	be := s3mem.New()
	hs := httptest.NewServer(gofakes3.New(be).Server())
	t.Cleanup(hs.Close)
	c := s3.New(s3.Options{Region: "us-east-1", BaseEndpoint: aws.String(hs.URL), UsePathStyle: true,
		Credentials: credentials.NewStaticCredentialsProvider("k", "s", "")})
	if _, err := c.CreateBucket(context.Background(), &s3.CreateBucketInput{Bucket: aws.String("unit")}); err != nil {
		t.Fatal(err)
	}
	a := image(t, 26<<20+7)
	state := t.TempDir()
	cfg := awss3.Config{Bucket: "unit", Endpoint: hs.URL, AccessKeyID: "k", SecretAccessKey: "s", PartSize: 5 << 20, Concurrency: 1, StateDir: state}
	ct := &cutTransport{}
	ct.budget.Store(17 << 20) // parts 1-3 arrive, part 4 is cut
	cfg.HTTPClient = &http.Client{Transport: ct}
	u, _ := awss3.New(cfg)
	if _, err := u.Upload(context.Background(), a, json.RawMessage(`{"region":"us-east-1"}`), nil); err == nil || !strings.Contains(err.Error(), "connection cut") {
		t.Fatalf("err = %v, want the cut", err)
	}
	rt := &cutTransport{}
	rt.budget.Store(1 << 62)
	cfg.HTTPClient = &http.Client{Transport: rt}
	u, _ = awss3.New(cfg)
	if _, err := u.Upload(context.Background(), a, json.RawMessage(`{"region":"us-east-1"}`), nil); err != nil {
		t.Fatal(err)
	}
	if got := rt.parts.Load(); got != 3 {
		t.Errorf("resume sent %d parts, want the 3 missing", got)
	}
	out, err := c.GetObject(context.Background(), &s3.GetObjectInput{Bucket: aws.String("unit"), Key: aws.String(u.Key(a))})
	if err != nil {
		t.Fatal(err)
	}
	h := sha256.New()
	_, _ = io.Copy(h, out.Body)
	out.Body.Close()
	if got := hex.EncodeToString(h.Sum(nil)); got != a.SHA256 {
		t.Fatalf("object sha256 %s, image %s", got, a.SHA256)
	}
	// Uploading the same image again sends nothing: the object has it.
	rt.parts.Store(0)
	if _, err := u.Upload(context.Background(), a, json.RawMessage(`{"region":"us-east-1"}`), nil); err != nil || rt.parts.Load() != 0 {
		t.Errorf("second upload: %v, %d parts sent", err, rt.parts.Load())
	}
}
