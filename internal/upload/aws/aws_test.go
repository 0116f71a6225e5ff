package aws_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	sdkaws "github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/kib-project/kib/internal/upload"
	"github.com/kib-project/kib/internal/upload/aws"
	"github.com/kib-project/kib/internal/upload/aws/ec2test"
	"github.com/kib-project/kib/internal/upload/awss3"
	"github.com/kib-project/kib/internal/upload/s3test"
)

type bundle struct {
	srv *s3test.Server
	ec2 *ec2test.Server
	cfg aws.Config
	a   upload.Artifact
}

func setup(t *testing.T) *bundle {
	t.Helper()
	srv := s3test.Start(t)
	bucket := srv.Bucket(t, "staging")
	e := &ec2test.Server{AccessKeyID: srv.AccessKey, Object: func(b, k string) (int64, error) {
		h, err := srv.Client().HeadObject(context.Background(), &s3.HeadObjectInput{Bucket: &b, Key: &k})
		if err != nil {
			return 0, err
		}
		return sdkaws.ToInt64(h.ContentLength), nil
	}}
	hs := httptest.NewServer(e)
	t.Cleanup(hs.Close)
	b := make([]byte, 3<<20)
	for i := range b {
		b[i] = byte(i * 7)
	}
	p := filepath.Join(t.TempDir(), "image.raw")
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(b)
	return &bundle{
		srv: srv, ec2: e,
		cfg: aws.Config{
			S3:          awss3.Config{Bucket: bucket, Endpoint: srv.Endpoint, AccessKeyID: srv.AccessKey, SecretAccessKey: srv.SecretKey, StateDir: t.TempDir()},
			EC2Endpoint: hs.URL, PollInterval: time.Millisecond,
		},
		a: upload.Artifact{Path: p, Filename: "image.raw", ImageType: "ami", Arch: "x86_64", BootMode: "hybrid", SHA256: hex.EncodeToString(sum[:]), Size: int64(len(b))},
	}
}

func TestUploadRegistersAndShares(t *testing.T) {
	b := setup(t)
	u, err := aws.New(b.cfg)
	if err != nil {
		t.Fatal(err)
	}
	res, err := u.Upload(context.Background(), b.a, json.RawMessage(`{"region":"eu-central-1","share_with_accounts":["123456789012"],"snapshot_name":"debian-12-test"}`), nil)
	if err != nil {
		t.Fatal(err)
	}
	ami, _ := res.Options["ami"].(string)
	if res.Type != "aws" || res.Options["region"] != "eu-central-1" || !strings.HasPrefix(ami, "ami-") {
		t.Fatalf("result %+v", res)
	}
	im, ok := b.ec2.Image(ami)
	if !ok {
		t.Fatalf("%s not registered", ami)
	}
	if im.Name != "debian-12-test" || im.BootMode != "uefi-preferred" || im.Arch != "x86_64" || im.State != "available" {
		t.Errorf("image %+v", im)
	}
	if !slices.Equal(im.LaunchUsers, []string{"123456789012"}) {
		t.Errorf("launch permission %v", im.LaunchUsers)
	}
	sn, _ := b.ec2.Snapshot(im.SnapshotID)
	if sn.Name != "debian-12-test" || sn.Format != "RAW" || sn.Size != b.a.Size || !slices.Equal(sn.CreateVolumeUsers, []string{"123456789012"}) {
		t.Errorf("snapshot %+v", sn)
	}
	// The staging object is gone after the import.
	out, err := b.srv.Client().ListObjectsV2(context.Background(), &s3.ListObjectsV2Input{Bucket: &b.cfg.S3.Bucket})
	if err != nil || len(out.Contents) != 0 {
		t.Errorf("staging bucket: %v, %d objects", err, len(out.Contents))
	}
}

func TestBootModes(t *testing.T) {
	for kib, want := range map[string]string{"hybrid": "uefi-preferred", "uefi": "uefi", "legacy": "legacy-bios"} {
		got, err := aws.BootMode(kib)
		if err != nil || string(got) != want {
			t.Errorf("BootMode(%s) = %s, %v; want %s", kib, got, err, want)
		}
	}
	if _, err := aws.BootMode("none"); err == nil {
		t.Error("BootMode(none) succeeded")
	}
}

func TestCloudErrors(t *testing.T) {
	for _, tc := range []struct {
		name   string
		action string
		fault  ec2test.Fault
		want   string
	}{
		{"import refused", "ImportSnapshot", ec2test.Fault{Code: "InvalidParameter", Message: "The service role vmimport provided does not exist or does not have sufficient permissions"}, "vmimport provided does not exist"},
		{"register throttled", "RegisterImage", ec2test.Fault{Status: 503, Code: "RequestLimitExceeded", Message: "Request limit exceeded."}, "Request limit exceeded."},
		{"share refused", "ModifyImageAttribute", ec2test.Fault{Code: "InvalidUserID.Malformed", Message: "User ID '1' is not valid"}, "User ID '1' is not valid"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := setup(t)
			b.ec2.Fail(tc.action, tc.fault)
			u, _ := aws.New(b.cfg)
			_, err := u.Upload(context.Background(), b.a, json.RawMessage(`{"region":"us-east-1","share_with_accounts":["123456789012"]}`), nil)
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), tc.fault.Code) {
				t.Fatalf("err = %v, want EC2's %s: %s", err, tc.fault.Code, tc.want)
			}
		})
	}
	t.Run("bad credentials", func(t *testing.T) {
		b := setup(t)
		b.ec2.AccessKeyID = "AKIAOTHER"
		u, _ := aws.New(b.cfg)
		_, err := u.Upload(context.Background(), b.a, json.RawMessage(`{"region":"us-east-1","share_with_accounts":[]}`), nil)
		if err == nil || !strings.Contains(err.Error(), "AuthFailure") || !strings.Contains(err.Error(), "AWS was not able to validate the provided access credentials") {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("import task fails", func(t *testing.T) {
		b := setup(t)
		b.ec2.Object = func(string, string) (int64, error) { return 0, nil }
		u, _ := aws.New(b.cfg)
		_, err := u.Upload(context.Background(), b.a, json.RawMessage(`{"region":"us-east-1","share_with_accounts":[]}`), nil)
		if err == nil || !strings.Contains(err.Error(), "ClientError: Disk validation failed") {
			t.Fatalf("err = %v", err)
		}
	})
}

func TestParseOptions(t *testing.T) {
	for _, tc := range []struct{ in, err string }{
		{`{"region":"us-east-1","share_with_accounts":[]}`, ""},
		{`{"region":"us-east-1","share_with_accounts":["123456789012"],"snapshot_name":"x"}`, ""},
		{`{"region":"us-east-1"}`, "share_with_accounts: required"},
		{`{"share_with_accounts":[]}`, "region: required"},
		{`{"region":"us-east-1","share_with_accounts":["12"]}`, "share_with_accounts[0]"},
		{`{"region":"us-east-1","share_with_accounts":[],"bucket":"x"}`, `unknown field "bucket"`},
	} {
		_, err := aws.ParseOptions(json.RawMessage(tc.in))
		if tc.err == "" && err != nil || tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)) {
			t.Errorf("ParseOptions(%s) = %v, want %q", tc.in, err, tc.err)
		}
	}
}
