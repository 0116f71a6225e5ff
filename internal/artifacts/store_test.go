package artifacts_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/kib-project/kib/internal/artifacts"
	"github.com/kib-project/kib/internal/upload/s3test"
)

func sum(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func randomFile(t *testing.T, n int) (string, []byte) {
	t.Helper()
	data := make([]byte, n)
	_, _ = rand.Read(data)
	p := filepath.Join(t.TempDir(), "disk.raw")
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return p, data
}

// TestStoreAgainstMinIO puts artifacts into a real S3 server (one PUT and
// a multipart upload), reads them back every way the server reads them
// (streaming with seeks as http.ServeContent does, at offsets as Koji's
// chunked upload does), and deletes a job's artifacts.
func TestStoreAgainstMinIO(t *testing.T) {
	srv := s3test.Start(t)
	bucket := srv.Bucket(t, "kib-artifacts")
	ctx := context.Background()
	loc, err := artifacts.ParseURL("s3://" + bucket + "/site/a")
	if err != nil {
		t.Fatal(err)
	}
	st, err := artifacts.New(ctx, loc, artifacts.Config{
		Endpoint: srv.Endpoint, AccessKeyID: srv.AccessKey, SecretAccessKey: srv.SecretKey,
		PartSize: 5 << 20, StateDir: t.TempDir(),
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Check(ctx); err != nil {
		t.Fatal(err)
	}
	for _, size := range []int{1000, 12<<20 + 7} {
		path, data := randomFile(t, size)
		dir := st.NewDir("job-1")
		if !strings.HasPrefix(dir, "s3://"+bucket+"/site/a/jobs/job-1/") || !st.Owns(dir+"disk.raw") {
			t.Fatalf("NewDir = %s", dir)
		}
		where := dir + "disk.raw"
		if err := st.Put(ctx, where, path, sum(data), int64(size)); err != nil {
			t.Fatalf("Put %d bytes: %v", size, err)
		}
		info, err := st.Stat(ctx, where)
		if err != nil || info.Size != int64(size) || info.SHA256 != sum(data) {
			t.Fatalf("Stat = %+v, %v", info, err)
		}
		r, err := st.Open(ctx, where)
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(artifacts.NewVerifier(r, r.Size(), sum(data)))
		if err != nil || !bytes.Equal(got, data) {
			t.Fatalf("read %d of %d bytes: %v", len(got), size, err)
		}
		// A seek, then a read from there (a range request).
		if _, err := r.Seek(int64(size/2), io.SeekStart); err != nil {
			t.Fatal(err)
		}
		part := make([]byte, 100)
		if _, err := io.ReadFull(r, part); err != nil || !bytes.Equal(part, data[size/2:size/2+100]) {
			t.Fatalf("read after seek: %v", err)
		}
		// ReadAt, inside and across the end.
		if n, err := r.ReadAt(part, 10); n != 100 || err != nil || !bytes.Equal(part, data[10:110]) {
			t.Fatalf("ReadAt = %d, %v", n, err)
		}
		if n, err := r.ReadAt(part, int64(size-40)); n != 40 || !errors.Is(err, io.EOF) || !bytes.Equal(part[:40], data[size-40:]) {
			t.Fatalf("ReadAt at the end = %d, %v", n, err)
		}
		r.Close()
	}
	// A location outside the store is refused for writing.
	p, data := randomFile(t, 10)
	if err := st.Put(ctx, "s3://"+bucket+"/elsewhere/x", p, sum(data), 10); err == nil {
		t.Error("Put outside the store's prefix succeeded")
	}
	// A nil store opens local files.
	var none *artifacts.Store
	r, err := none.Open(ctx, p)
	if err != nil || r.Size() != 10 {
		t.Fatalf("local Open: %v", err)
	}
	r.Close()

	if err := st.DeleteJob(ctx, "job-1"); err != nil {
		t.Fatal(err)
	}
	out, err := srv.Client().ListObjectsV2(ctx, &s3.ListObjectsV2Input{Bucket: aws.String(bucket), Prefix: aws.String("site/a/jobs/job-1/")})
	if err != nil || len(out.Contents) != 0 {
		t.Errorf("after DeleteJob: %d objects, %v", len(out.Contents), err)
	}

	// A store whose bucket is missing is found out by Check.
	gone, _ := artifacts.New(ctx, artifacts.Location{Bucket: "no-such-bucket"}, artifacts.Config{Endpoint: srv.Endpoint, AccessKeyID: srv.AccessKey, SecretAccessKey: srv.SecretKey})
	if err := gone.Check(ctx); err == nil || !strings.Contains(err.Error(), "no-such-bucket") {
		t.Errorf("Check of a missing bucket: %v", err)
	}
}

// TestVerifier: a whole read of wrong bytes never yields them all; reads
// of a part (range requests) pass through.
func TestVerifier(t *testing.T) {
	data := bytes.Repeat([]byte("kib"), 100000)
	got, err := io.ReadAll(artifacts.NewVerifier(bytes.NewReader(data), int64(len(data)), sum(data)))
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("right bytes: %d, %v", len(got), err)
	}
	got, err = io.ReadAll(artifacts.NewVerifier(bytes.NewReader(data), int64(len(data)), strings.Repeat("0", 64)))
	if !errors.Is(err, artifacts.ErrChecksum) || len(got) >= len(data) {
		t.Fatalf("wrong bytes: read %d of %d, err %v; want fewer and ErrChecksum", len(got), len(data), err)
	}
	v := artifacts.NewVerifier(bytes.NewReader(data), int64(len(data)), strings.Repeat("0", 64))
	if _, err := v.Seek(5, io.SeekStart); err != nil {
		t.Fatal(err)
	}
	got, err = io.ReadAll(v)
	if err != nil || !bytes.Equal(got, data[5:]) {
		t.Fatalf("a range read: %d, %v", len(got), err)
	}
}
