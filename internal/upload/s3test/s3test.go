// Package s3test runs a real S3 server, MinIO, on loopback for tests. The
// minio binary is found in PATH or in $(go env GOPATH)/bin (.ci/minio.sh
// installs it); without it tests are skipped, or fail when CI=true.
package s3test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/smithy-go"
)

// Server is a running MinIO.
type Server struct {
	Endpoint  string // http://127.0.0.1:port
	AccessKey string
	SecretKey string
	Region    string
}

// Binary returns the path of the minio binary, or "" if there is none.
func Binary() string {
	if p, err := exec.LookPath("minio"); err == nil {
		return p
	}
	gopath := os.Getenv("GOPATH")
	if gopath == "" {
		home, _ := os.UserHomeDir()
		gopath = filepath.Join(home, "go")
	}
	if p := filepath.Join(gopath, "bin", "minio"); fileExists(p) {
		return p
	}
	return ""
}

func fileExists(p string) bool {
	st, err := os.Stat(p)
	return err == nil && !st.IsDir()
}

// Start runs MinIO with its data in a test directory until the test ends.
func Start(t testing.TB) *Server {
	t.Helper()
	bin := Binary()
	if bin == "" {
		if os.Getenv("CI") == "true" {
			t.Fatal("minio is not installed: run .ci/minio.sh")
		}
		t.Skip("minio is not installed (run .ci/minio.sh)")
	}
	port := freePort(t)
	s := &Server{
		Endpoint:  fmt.Sprintf("http://127.0.0.1:%d", port),
		AccessKey: "kibtestaccess", SecretKey: "kibtestsecret0123", Region: "us-east-1",
	}
	cmd := exec.Command(bin, "server", "--quiet", "--address", fmt.Sprintf("127.0.0.1:%d", port),
		"--console-address", fmt.Sprintf("127.0.0.1:%d", freePort(t)), t.TempDir())
	cmd.Env = append(os.Environ(), "MINIO_ROOT_USER="+s.AccessKey, "MINIO_ROOT_PASSWORD="+s.SecretKey,
		"MINIO_BROWSER=off", "MINIO_UPDATE=off", "MINIO_CI_CD=1")
	log, err := os.Create(filepath.Join(t.TempDir(), "minio.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting minio: %v", err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	deadline := time.Now().Add(30 * time.Second)
	for {
		// The health check can pass before the S3 API is initialised, and
		// the root user's requests before IAM is: wait for a real request
		// to succeed and for unknown credentials to be refused as unknown
		// (MinIO answers 503 XMinioIAMNotInitialized until then).
		err := s.ready()
		if err == nil {
			return s
		}
		if time.Now().After(deadline) {
			b, _ := os.ReadFile(log.Name())
			t.Fatalf("minio did not become ready: %v\n%s", err, b)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// ready returns nil once the server serves its root user and refuses
// unknown credentials as such.
func (s *Server) ready() error {
	ctx := context.Background()
	if _, err := s.Client().ListBuckets(ctx, &s3.ListBucketsInput{}); err != nil {
		return err
	}
	stranger := s3.New(s3.Options{
		Region: s.Region, BaseEndpoint: aws.String(s.Endpoint), UsePathStyle: true, RetryMaxAttempts: 1,
		Credentials: credentials.NewStaticCredentialsProvider("kibteststranger", "kibteststrangersecret", ""),
	})
	_, err := stranger.ListBuckets(ctx, &s3.ListBucketsInput{})
	var apiErr smithy.APIError
	switch {
	case err == nil:
		return fmt.Errorf("minio accepted unknown credentials")
	case errors.As(err, &apiErr) && apiErr.ErrorCode() == "InvalidAccessKeyId":
		return nil
	default:
		return fmt.Errorf("unknown credentials: %w", err)
	}
}

// Client returns an S3 client of the server.
func (s *Server) Client() *s3.Client {
	return s3.New(s3.Options{
		Region: s.Region, BaseEndpoint: aws.String(s.Endpoint), UsePathStyle: true,
		Credentials: credentials.NewStaticCredentialsProvider(s.AccessKey, s.SecretKey, ""),
	})
}

// Bucket creates a bucket and returns its name.
func (s *Server) Bucket(t testing.TB, name string) string {
	t.Helper()
	if _, err := s.Client().CreateBucket(context.Background(), &s3.CreateBucketInput{Bucket: aws.String(name)}); err != nil {
		t.Fatalf("creating bucket %s: %v", name, err)
	}
	return name
}

func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}
