package composer_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/kib-project/kib/internal/artifacts"
	"github.com/kib-project/kib/internal/jobs"
	"github.com/kib-project/kib/internal/upload/s3test"
)

// bigBuilder writes an image of size pseudo-random bytes, streaming, so
// that a 1 GiB image is never in memory.
type bigBuilder struct{ size int64 }

func (b *bigBuilder) Build(_ context.Context, a *jobs.BuildArgs) (*jobs.BuildResult, error) {
	p := filepath.Join(a.OutputDir, a.Image.Filename)
	f, err := os.Create(p)
	if err != nil {
		return nil, err
	}
	h := sha256.New()
	src := rand.NewChaCha8([32]byte{1})
	if _, err := io.CopyN(io.MultiWriter(f, h), src, b.size); err != nil {
		f.Close()
		return nil, err
	}
	if err := f.Close(); err != nil {
		return nil, err
	}
	return &jobs.BuildResult{Manifest: json.RawMessage(`{}`), Artifacts: []jobs.Artifact{{
		Kind: "image", Name: a.Image.Filename, Path: p, SHA256: hex.EncodeToString(h.Sum(nil)), Size: b.size,
	}}}, nil
}

// BenchmarkArtifactDownload (bench/artifacts.sh) times the download of a
// KIB_BENCH_ARTIFACT_MIB (default 1024) MiB image through
// /composes/{id}/download, streamed from the artifact store (MinIO) and
// checked against its sha256, against a direct GET of the same object
// from the store. Reported: MB/s of both and their ratio.
func BenchmarkArtifactDownload(b *testing.B) {
	mib := int64(1024)
	if v, err := strconv.ParseInt(os.Getenv("KIB_BENCH_ARTIFACT_MIB"), 10, 64); err == nil && v > 0 {
		mib = v
	}
	size := mib << 20
	s3srv := s3test.Start(b)
	bucket := s3srv.Bucket(b, "kib-artifacts")
	sb := setupStore(b, s3srv, bucket, nil, "", &artifacts.Config{Endpoint: s3srv.Endpoint, AccessKeyID: s3srv.AccessKey, SecretAccessKey: s3srv.SecretKey}, &bigBuilder{size: size})
	id := sb.post(b, storeCompose)
	if status, data := sb.wait(b, id); status != "success" {
		b.Fatalf("compose: %s", data)
	}
	cj, err := sb.q.Get(context.Background(), "", id)
	if err != nil {
		b.Fatal(err)
	}
	var res jobs.BuildJobResult
	if err := json.Unmarshal(cj.Builds[0].Result, &res); err != nil {
		b.Fatal(err)
	}
	key := strings.TrimPrefix(res.Artifacts[0].Path, "s3://"+bucket+"/")
	var api, direct time.Duration
	b.ResetTimer()
	for range b.N {
		start := time.Now()
		resp, err := http.Get(sb.api + "/composes/" + id + "/download")
		if err != nil {
			b.Fatal(err)
		}
		n, err := io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if err != nil || n != size || resp.StatusCode != 200 {
			b.Fatalf("API download: %d of %d bytes, %v (%s)", n, size, err, resp.Status)
		}
		api += time.Since(start)

		start = time.Now()
		out, err := s3srv.Client().GetObject(context.Background(), &s3.GetObjectInput{Bucket: aws.String(bucket), Key: aws.String(key)})
		if err != nil {
			b.Fatal(err)
		}
		n, err = io.Copy(io.Discard, out.Body)
		out.Body.Close()
		if err != nil || n != size {
			b.Fatalf("direct GET: %d of %d bytes, %v", n, size, err)
		}
		direct += time.Since(start)
	}
	b.StopTimer()
	mb := float64(size) / 1e6 * float64(b.N)
	b.ReportMetric(mb/api.Seconds(), "api-MB/s")
	b.ReportMetric(mb/direct.Seconds(), "direct-MB/s")
	b.ReportMetric(direct.Seconds()/api.Seconds(), "api/direct-throughput")
	b.ReportMetric(api.Seconds()/float64(b.N), "api-s")
	b.ReportMetric(direct.Seconds()/float64(b.N), "direct-s")
}
